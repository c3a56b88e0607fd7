//! A worker thread's share of the proxy: its VM (replaced after a trap, like Envoy's
//! `FAIL_RELOAD`), the streams waiting on that VM, and the asynchronous work the guest asks for
//! (ticks, `http_call`s), all delivered from the event loop and never from inside a guest call.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::Notify;

use super::body::{ChannelBody, UpstreamBody};
use super::upstream::Upstreams;
use crate::abi::memory::{HeaderMap, HeaderMapExt};
use crate::abi::state::{HttpCallRequest, HttpCallResponse};
use crate::abi::vm::{GuestTrap, Runtime, Vm};
use crate::metrics::HostMetrics;

/// Why a VM call did not happen or did not finish.
#[derive(Debug)]
pub enum VmError {
    /// The guest trapped during this call; the VM has been replaced.
    Trapped(GuestTrap),
    /// The stream's VM is gone (it trapped earlier); the stream continues without the filter.
    Gone,
}

/// One worker's VM and the streams that use it.
pub struct Worker {
    runtime: Arc<Runtime>,
    vm: RefCell<Option<Vm>>,
    generation: Cell<u64>,
    wakers: RefCell<HashMap<u32, Rc<Notify>>>,
    tick_changed: Notify,
    /// Upstreams and the HTTP client.
    pub upstreams: Arc<Upstreams>,
    /// Host metrics (traps, reloads).
    pub metrics: Arc<HostMetrics>,
}

impl Worker {
    /// A worker running `vm`.
    pub fn new(
        runtime: Arc<Runtime>,
        vm: Option<Vm>,
        upstreams: Arc<Upstreams>,
        metrics: Arc<HostMetrics>,
    ) -> Rc<Self> {
        Rc::new(Self {
            runtime,
            vm: RefCell::new(vm),
            generation: Cell::new(0),
            wakers: RefCell::new(HashMap::new()),
            tick_changed: Notify::new(),
            upstreams,
            metrics,
        })
    }

    /// The current VM generation, making a VM first if the last one could not be replaced.
    pub fn generation(&self) -> Option<u64> {
        if self.vm.borrow().is_none() {
            self.reload();
        }
        self.vm.borrow().as_ref().map(|_| self.generation.get())
    }

    fn reload(&self) {
        match self.runtime.instantiate() {
            Ok(vm) => {
                *self.vm.borrow_mut() = Some(vm);
                self.metrics.vm_reloads.inc();
                tracing::info!("filter VM replaced");
            }
            Err(e) => tracing::error!("could not replace the filter VM: {e:#}"),
        }
    }

    /// Runs `f` on the VM of generation `generation`. After the call, `http_call`s the guest
    /// made are dispatched and streams it woke are notified. A trap replaces the VM.
    pub fn with_vm<R>(
        self: &Rc<Self>,
        generation: u64,
        f: impl FnOnce(&mut Vm) -> Result<R, GuestTrap>,
    ) -> Result<R, VmError> {
        if generation != self.generation.get() {
            return Err(VmError::Gone);
        }
        let (result, calls, wakeups, tick) = {
            let mut slot = self.vm.borrow_mut();
            let Some(vm) = slot.as_mut() else {
                return Err(VmError::Gone);
            };
            let before = vm.tick_period();
            let result = f(vm);
            (
                result,
                vm.take_http_calls(),
                vm.take_wakeups(),
                vm.tick_period() != before,
            )
        };
        if tick {
            self.tick_changed.notify_one();
        }
        for call in calls {
            self.dispatch_http_call(generation, call);
        }
        for id in wakeups {
            if let Some(waker) = self.wakers.borrow().get(&id) {
                waker.notify_one();
            }
        }
        result.map_err(|trap| {
            self.metrics.vm_traps.inc();
            tracing::error!("filter VM trapped, failing open and replacing it: {trap}");
            *self.vm.borrow_mut() = None;
            self.generation.set(self.generation.get() + 1);
            self.reload();
            self.wakers.borrow().values().for_each(|w| w.notify_one());
            VmError::Trapped(trap)
        })
    }

    /// A notifier that fires when the guest resumes, answers or closes stream `id`.
    pub fn waker(&self, id: u32) -> Rc<Notify> {
        self.wakers
            .borrow_mut()
            .entry(id)
            .or_insert_with(|| Rc::new(Notify::new()))
            .clone()
    }

    /// Forgets stream `id`'s notifier.
    pub fn forget(&self, id: u32) {
        self.wakers.borrow_mut().remove(&id);
    }

    /// Delivers `proxy_on_tick` at the period the root context asked for, forever.
    pub async fn run_ticks(self: Rc<Self>) {
        loop {
            let period = self.vm.borrow().as_ref().and_then(Vm::tick_period);
            match period {
                Some(period) => {
                    tokio::select! {
                        _ = tokio::time::sleep(period) => {
                            let generation = self.generation.get();
                            let _ = self.with_vm(generation, Vm::on_tick);
                        }
                        _ = self.tick_changed.notified() => {}
                    }
                }
                None => self.tick_changed.notified().await,
            }
        }
    }

    fn dispatch_http_call(self: &Rc<Self>, generation: u64, call: HttpCallRequest) {
        let worker = self.clone();
        tokio::task::spawn_local(async move {
            let (context, token) = (call.context_id, call.token);
            let response = worker.perform_http_call(call).await.unwrap_or_else(|e| {
                tracing::debug!("http_call failed: {e:#}");
                HttpCallResponse::default()
            });
            let _ = worker.with_vm(generation, |vm| {
                vm.on_http_call_response(context, token, response)
            });
        });
    }

    async fn perform_http_call(&self, call: HttpCallRequest) -> anyhow::Result<HttpCallResponse> {
        let path = call
            .headers
            .first(b":path")
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let base = super::upstream::Upstream::parse("http_call", &call.base_url)?;
        let mut builder = http::Request::builder()
            .method(call.headers.first(b":method").unwrap_or(b"GET"))
            .uri(base.uri(&path)?);
        for (name, value) in call.headers.iter().filter(|(n, _)| !n.starts_with(b":")) {
            builder = builder.header(name.as_slice(), value.as_slice());
        }
        if let Some(authority) = call.headers.first(b":authority") {
            builder = builder.header(http::header::HOST, authority);
        }
        let body = if call.body.is_empty() {
            UpstreamBody::Empty
        } else {
            let (tx, body) = ChannelBody::new();
            let _ = tx.try_send(Ok(http_body::Frame::data(Bytes::from(call.body))));
            UpstreamBody::Channel(body)
        };
        let request = builder.body(body)?;
        let timeout = Duration::from_millis(u64::from(call.timeout_ms.max(1)));
        let response = tokio::time::timeout(timeout, async {
            let response = self.upstreams.client.request(request).await?;
            let (parts, body) = response.into_parts();
            let collected = body.collect().await?;
            anyhow::Ok((parts, collected))
        })
        .await??;
        let (parts, collected) = response;
        let mut headers: HeaderMap = vec![(
            b":status".to_vec(),
            parts.status.as_str().as_bytes().to_vec(),
        )];
        headers.extend(
            parts
                .headers
                .iter()
                .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec())),
        );
        let trailers = collected
            .trailers()
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(HttpCallResponse {
            headers,
            body: collected.to_bytes().to_vec(),
            trailers,
        })
    }
}
