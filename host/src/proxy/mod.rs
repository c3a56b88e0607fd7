//! The standalone proxy: one listening socket, a worker thread per core, each with its own
//! event loop and its own filter VM (Envoy's threading model), graceful shutdown.
//!
//! Built on [`crate::abi`]; what is built on it reaches requests through hooks: the
//! embedder's own endpoints ([`HostEndpoints`], `headroom`'s record endpoints) and, for each
//! finished stream, [`crate::abi::state::StreamEndHook`] (the binary hands the filter's record
//! to the record writer and the OTLP exporter).

pub mod body;
pub mod hardening;
pub mod stream;
pub mod upstream;
pub mod worker;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::watch;

use crate::abi::shared::SharedData;
use crate::abi::state::PluginShared;
use crate::abi::vm::{Runtime, VmLimits};
use crate::metrics::HostMetrics;
use body::{ClientBody, full};
use hardening::{Activity, Hardening, Tracked};
use stream::ConnInfo;
use upstream::Upstreams;
use worker::Worker;

/// Everything `headroom proxy` needs to run.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// OpenAI-compatible upstream URL.
    pub openai_url: String,
    /// Anthropic upstream URL.
    pub anthropic_url: String,
    /// The filter module.
    pub plugin_wasm: Vec<u8>,
    /// The filter's configuration (JSON; empty = defaults).
    pub plugin_config: Vec<u8>,
    /// Worker threads, each with its own VM.
    pub workers: usize,
    /// Per-VM limits.
    pub vm_limits: VmLimits,
    /// Where compiled modules are cached (`None` = compile every start).
    pub cache_dir: Option<PathBuf>,
    /// The level `proxy_get_log_level` reports (`proxy_log_level_t`).
    pub guest_log_level: i32,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// The shared data every VM sees; the caller may restore state into it first.
    pub shared_data: Arc<SharedData>,
    /// The connection limit and the client and upstream timeouts.
    pub hardening: Hardening,
    /// More `http_call` clusters (name, base URL) beside `openai` and `anthropic`: `langfuse`.
    pub clusters: Vec<(String, String)>,
    /// Endpoints the embedder answers before the filter (operator endpoints: the filter's
    /// access rule applies to them).
    pub endpoints: Option<Arc<dyn HostEndpoints>>,
}

/// Endpoints the embedder answers itself, before the filter (`headroom`'s record endpoints):
/// the hook through which the proxy reaches what is built on it.
pub trait HostEndpoints: Send + Sync + std::fmt::Debug {
    /// The exact paths it answers; they are operator endpoints (the filter's rule decides who
    /// may call them).
    fn paths(&self) -> &[&'static str];
    /// The answer to a request for one of [`Self::paths`]; `None` passes it to the filter.
    fn answer<'a>(
        &'a self,
        method: &'a Method,
        uri: &'a Uri,
    ) -> Pin<Box<dyn Future<Output = Option<Response<ClientBody>>> + 'a>>;
}

/// The host's own endpoints and the filter's rule for who may call them.
#[derive(Debug)]
struct OperatorSurface {
    /// The filter's configuration (its operator access rule).
    rule: headroom_plugin::config::Config,
    /// The embedder's endpoints.
    endpoints: Option<Arc<dyn HostEndpoints>>,
}

impl OperatorSurface {
    /// Whether `path` is an operator endpoint the host answers.
    fn covers(&self, path: &str) -> bool {
        path == "/metrics"
            || self
                .endpoints
                .as_ref()
                .is_some_and(|e| e.paths().contains(&path))
    }
}

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    metrics: Arc<HostMetrics>,
}

impl Proxy {
    /// Compiles the filter, starts one VM per worker (a filter that refuses its configuration
    /// stops the start here), binds the listener and starts serving.
    pub fn start(config: ProxyConfig) -> Result<Self> {
        let mut plugin = PluginShared::headroom(
            config.plugin_config.clone(),
            &config.openai_url,
            &config.anthropic_url,
            config.guest_log_level,
            config.shared_data.clone(),
        );
        plugin.clusters.extend(config.clusters.iter().cloned());
        let runtime = Runtime::new(
            &config.plugin_wasm,
            plugin,
            config.vm_limits.clone(),
            config.cache_dir.as_deref(),
        )?;
        let metrics = Arc::new(HostMetrics::new(runtime.plugin().metrics.clone())?);
        // The host's operator endpoints ask the filter's rule, configured as the filter is (a
        // configuration this build cannot read leaves them to loopback clients only).
        let operator = Arc::new(OperatorSurface {
            rule: headroom_plugin::config::Config::from_bytes(&config.plugin_config)
                .unwrap_or_default(),
            endpoints: config.endpoints.clone(),
        });
        let upstreams = Arc::new(Upstreams::with_connect_timeout(
            &config.openai_url,
            &config.anthropic_url,
            config.hardening.upstream_connect_timeout,
        )?);
        let hardening = config.hardening;
        // One limit for the process: every worker takes its permits from the same semaphore
        // (0 = no limit).
        let connections = Arc::new(tokio::sync::Semaphore::new(
            match hardening.max_connections {
                0 => tokio::sync::Semaphore::MAX_PERMITS,
                n => n.min(tokio::sync::Semaphore::MAX_PERMITS),
            },
        ));
        let workers = config.workers.max(1);
        let mut vms = Vec::with_capacity(workers);
        for _ in 0..workers {
            vms.push(runtime.instantiate()?);
        }

        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers);
        for (index, vm) in vms.into_iter().enumerate() {
            let listener = listener.try_clone()?;
            let (runtime, upstreams, metrics, operator) = (
                runtime.clone(),
                upstreams.clone(),
                metrics.clone(),
                operator.clone(),
            );
            let shutdown_rx = shutdown_rx.clone();
            let grace = config.shutdown_grace;
            let connections = connections.clone();
            let thread = std::thread::Builder::new()
                .name(format!("headroom-worker-{index}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!("worker {index}: {e}");
                            return;
                        }
                    };
                    let local = tokio::task::LocalSet::new();
                    let worker = Worker::new(runtime, Some(vm), upstreams, metrics);
                    let serving = Serving {
                        worker,
                        operator,
                        hardening,
                        connections,
                    };
                    local.block_on(&rt, serve(serving, listener, shutdown_rx, grace));
                })?;
            threads.push(thread);
        }
        tracing::info!(%addr, workers, "headroom listening on http://{addr}");
        Ok(Self {
            addr,
            shutdown,
            threads,
            metrics,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host's metrics registry.
    pub fn metrics(&self) -> &Arc<HostMetrics> {
        &self.metrics
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period) and returns.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// What one worker's accept loop serves with.
struct Serving {
    worker: Rc<Worker>,
    operator: Arc<OperatorSurface>,
    hardening: Hardening,
    connections: Arc<tokio::sync::Semaphore>,
}

async fn serve(
    serving: Serving,
    listener: std::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("worker listener: {e}");
            return;
        }
    };
    let Serving {
        worker,
        operator,
        hardening,
        connections,
    } = serving;
    tokio::task::spawn_local(worker.clone().run_ticks());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    worker.metrics.connections_rejected.inc();
                    tracing::debug!(%remote, "connection limit reached; answering 503");
                    tokio::task::spawn_local(hardening::refuse(stream));
                    continue;
                };
                let local = stream.local_addr().unwrap_or(remote);
                let conn_info = ConnInfo { remote, local };
                let activity = Activity::new();
                let (worker, operator) = (worker.clone(), operator.clone());
                let metrics = worker.metrics.clone();
                let service_activity = activity.clone();
                let service = service_fn(move |request| {
                    let (worker, operator) = (worker.clone(), operator.clone());
                    let in_flight = service_activity.request();
                    async move {
                        let response = route(worker, &operator, request, conn_info, &hardening).await;
                        let (parts, body) = response.into_parts();
                        let body = hardening::hold_until_sent(body, in_flight);
                        Ok::<_, Infallible>(Response::from_parts(parts, body))
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(hardening.header_read_timeout)
                    .serve_connection(TokioIo::new(Tracked::new(stream, activity.clone())), service);
                let connection = graceful.watch(connection);
                let idle = hardening.idle_timeout;
                tokio::task::spawn_local(async move {
                    let _permit = permit;
                    let mut connection = std::pin::pin!(connection);
                    loop {
                        // While a request is in flight the idle clock does not run; look again
                        // one idle period later.
                        let deadline = activity
                            .idle_deadline(idle)
                            .unwrap_or_else(|| tokio::time::Instant::now() + idle);
                        tokio::select! {
                            result = &mut connection => {
                                if let Err(e) = result {
                                    if e.is_timeout() {
                                        metrics.client_timeouts.with_label_values(&["header"]).inc();
                                        tracing::debug!(%remote, "client headers timed out; connection closed");
                                    } else {
                                        tracing::debug!("connection: {e}");
                                    }
                                }
                                return;
                            }
                            _ = tokio::time::sleep_until(deadline) => {
                                if activity
                                    .idle_deadline(idle)
                                    .is_some_and(|d| d <= tokio::time::Instant::now())
                                {
                                    metrics.client_timeouts.with_label_values(&["idle"]).inc();
                                    tracing::debug!(%remote, "idle connection closed");
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
}

/// The refusal of a request for one of the host's operator endpoints that the filter's rule
/// ([`headroom_plugin::operator`]) does not allow; `None`: answer it.
fn operator_refusal(
    operator: &OperatorSurface,
    request: &Request<Incoming>,
    conn: ConnInfo,
) -> Option<Response<ClientBody>> {
    if !operator.covers(request.uri().path()) {
        return None;
    }
    let (source, destination) = (conn.remote.to_string(), conn.local.to_string());
    let host = request
        .headers()
        .get(http::header::HOST)
        .map(http::HeaderValue::as_bytes)
        .or_else(|| request.uri().authority().map(|a| a.as_str().as_bytes()));
    let decision = headroom_plugin::operator::decide(
        &operator.rule.operator_access(),
        &headroom_plugin::operator::Request {
            source: Some(source.as_bytes()),
            destination: Some(destination.as_bytes()),
            host,
            authorization: request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(http::HeaderValue::as_bytes),
        },
    );
    let body = decision.error_body()?;
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(decision.status() as u16).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (name, value) in decision.headers() {
        headers.insert(*name, http::HeaderValue::from_static(value));
    }
    Some(response)
}

/// The host's own endpoints; everything else goes through the filter.
async fn route(
    worker: Rc<Worker>,
    operator: &OperatorSurface,
    request: Request<Incoming>,
    conn: ConnInfo,
    hardening: &Hardening,
) -> Response<ClientBody> {
    if let Some(refusal) = operator_refusal(operator, &request, conn) {
        return refusal;
    }
    if request.method() == Method::GET && request.uri().path() == "/metrics" {
        let mut response = Response::new(full(worker.metrics.render()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        *response.status_mut() = StatusCode::OK;
        return response;
    }
    if let Some(endpoints) = &operator.endpoints
        && endpoints.paths().contains(&request.uri().path())
        && let Some(response) = endpoints.answer(request.method(), request.uri()).await
    {
        return response;
    }
    stream::serve(worker, request, conn, hardening).await
}
