//! The root context: parses the plugin configuration, defines the metrics and hands both to
//! every HTTP context.

use std::rc::Rc;

use log::{error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::http::HeadroomHttp;
use super::proxy_host::ProxyHost;
use super::shared::Shared;
use crate::config::Config;
use crate::exchange;
use crate::exchange::deferred::{SETTLE_BYTES_PER_TICK, SETTLE_TICK};

/// The plugin's root context.
#[derive(Debug, Default)]
pub struct HeadroomRoot {
    /// `None` until `on_configure` succeeds; HTTP contexts without it pass everything through.
    shared: Option<Rc<Shared>>,
    /// The host, with the metrics it defined: once per root, kept across reconfigurations.
    host: Option<Rc<ProxyHost>>,
}

impl Context for HeadroomRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        _body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(shared) = &self.shared {
            super::traces::on_response(shared, token_id);
        }
    }
}

impl RootContext for HeadroomRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(raw) => raw.unwrap_or_default(),
            Err(status) => {
                error!("headroom: cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        let config = match Config::from_bytes(&raw) {
            Ok(config) => config,
            Err(err) => {
                error!("headroom: {err}");
                return false;
            }
        };
        let host = Rc::clone(
            self.host
                .get_or_insert_with(|| Rc::new(ProxyHost::define())),
        );
        info!(
            "headroom: configured ({} path prefix(es), max_body_bytes={}, compress={})",
            config.path_prefixes.len(),
            config.max_body_bytes,
            config.compress
        );
        let mut traces = super::traces::Traces::start(config.langfuse.as_ref());
        // The tick settles waiting runs (when compressing) and flushes traces (when on).
        let settle = config.compress.then_some(SETTLE_TICK);
        let flush = traces.as_ref().map(super::traces::Traces::flush_interval);
        let tick = match (settle, flush) {
            (Some(settle), Some(flush)) => Some(settle.min(flush)),
            (settle, flush) => settle.or(flush),
        };
        match hostcalls::set_tick_period(tick.unwrap_or_default()) {
            Ok(()) => {
                if let (Some(traces), Some(tick)) = (&traces, tick) {
                    traces.ticks_at(tick);
                }
            }
            Err(status) if tick.is_some() => {
                warn!(
                    "headroom: cannot set the tick period ({status:?}): runs settle when their \
                     exchanges end{}",
                    if traces.is_some() {
                        "; langfuse traces off"
                    } else {
                        ""
                    }
                );
                traces = None;
            }
            Err(_) => {}
        }
        let shared = Rc::new(Shared {
            core: exchange::Shared::configure(config, host),
            traces,
        });
        self.shared = Some(shared);
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            // Runs settled now are not paid for when their responses end (the host holds a
            // response's last bytes until that callback returns).
            shared.core.settle_queue.settle_some(SETTLE_BYTES_PER_TICK);
            super::traces::flush(shared);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Must never be None: the SDK panics on None.
        Some(Box::new(HeadroomHttp::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
