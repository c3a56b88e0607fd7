//! The root context: parses the plugin configuration, defines the metrics and hands both to
//! every HTTP context.

use std::rc::Rc;

use log::{error, info};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::counters::Counters;
use super::http::HeadroomHttp;
use super::shared::Shared;
use super::shared_store::{SharedStore, SharedStores};
use crate::config::Config;
use crate::credential::{Scope, ScopedStore};
use crate::pricing::PriceTable;

/// The plugin's root context.
#[derive(Debug, Default)]
pub struct HeadroomRoot {
    /// `None` until `on_configure` succeeds; HTTP contexts without it pass everything through.
    shared: Option<Rc<Shared>>,
    /// Defined once per root and kept across reconfigurations.
    counters: Option<Rc<Counters>>,
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
        let counters = Rc::clone(
            self.counters
                .get_or_insert_with(|| Rc::new(Counters::define())),
        );
        info!(
            "headroom: configured ({} path prefix(es), max_body_bytes={}, compress={})",
            config.path_prefixes.len(),
            config.max_body_bytes,
            config.compress
        );
        let stores = SharedStores {
            omitted: ScopedStore {
                store: SharedStore::omitted(config.omitted_store_bytes),
                scope: Scope::of(&config.pipeline.marker_key, [None; 3]),
            },
            replay: SharedStore::replay(config.replay_store_bytes),
            timed: Vec::new(),
        };
        // Config::from_bytes has validated the overrides.
        let prices = PriceTable::builtin()
            .with_overrides(&config.prices)
            .unwrap_or_else(|_| PriceTable::builtin());
        let responses = config
            .response_cache
            .map(|cache| SharedStore::responses(cache.max_bytes));
        let traces = super::traces::Traces::start(config.langfuse.as_ref());
        let shared = Rc::new(Shared {
            config,
            counters,
            stores,
            responses,
            prices,
            budget_warned: std::cell::Cell::new(0),
            cache_models_seen: Default::default(),
            traces,
            started: hostcalls::get_current_time().unwrap_or(std::time::UNIX_EPOCH),
        });
        // A ledger the host restored counts in the persistent counters once per process.
        if let Some(lifetime) = crate::savings::claim_metrics_seed(&super::shared_store::ProxyKv) {
            super::http::add_lifetime(&shared, &lifetime);
        }
        self.shared = Some(shared);
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
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
