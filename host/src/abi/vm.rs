//! One instance of the filter: a wasmtime store and instance driven through the proxy-wasm
//! callbacks in Envoy's order. [`Runtime`] compiles the module once per process; each worker
//! thread owns one [`Vm`] and interleaves its streams on it, like Envoy's per-worker VMs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use wasmtime::{Config, Engine, InstancePre, Linker, Module, Store, StoreLimitsBuilder, TypedFunc};

use super::imports;
use super::state::{
    HostState, HttpCallRequest, HttpCallResponse, Phase, PluginShared, StreamInfo, StreamState,
};
use super::types::Action;

/// How often the epoch advances; guest call deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Resource bounds of one VM, and how its code is compiled.
#[derive(Clone, Debug)]
pub struct VmLimits {
    /// Linear memory one VM may grow to; beyond it allocations fail and the guest traps.
    pub memory_bytes: usize,
    /// Wall time one guest call may take before it is interrupted (a trap: the request fails
    /// open and the VM is replaced), or `None` for no limit.
    ///
    /// The limit is wasmtime's epoch interruption: the compiled guest checks a counter at every
    /// function entry and loop back-edge. Those checks cost about a quarter of the filter's
    /// time on a compressing request (BENCHMARKS.md). Without a limit the host runs the filter
    /// the way Envoy's runtimes do, which have none: the filter bounds its own work (every
    /// compressor is linear with deterministic limits), and the limit only guards against a
    /// bug in it, or in another module loaded with `--filter`.
    pub call_timeout: Option<Duration>,
    /// Whether wasmtime writes `/tmp/perf-PID.map`, naming the filter's compiled functions so
    /// `perf report` attributes the guest's time (for profiling; off by default). Names are
    /// those the module carries: the built-in filter is stripped to `wasm[0]::function[N]`,
    /// a `--plugin` built with `CARGO_PROFILE_WASM_RELEASE_STRIP=none` keeps Rust's.
    pub perf_map: bool,
}

impl Default for VmLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            call_timeout: Some(Duration::from_secs(10)),
            perf_map: false,
        }
    }
}

/// A guest call failed: the VM trapped (or was interrupted) and must be replaced.
#[derive(Debug, Clone)]
pub struct GuestTrap {
    /// What happened, with the guest's last log line when there was one.
    pub message: String,
}

impl std::fmt::Display for GuestTrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The compiled filter and everything needed to make VMs of it.
pub struct Runtime {
    engine: Engine,
    pre: InstancePre<HostState>,
    plugin: Arc<PluginShared>,
    limits: VmLimits,
}

impl Runtime {
    /// Compiles (or loads from `cache_dir`) the module and links the ABI.
    pub fn new(
        wasm: &[u8],
        plugin: PluginShared,
        limits: VmLimits,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<Arc<Self>> {
        let mut config = Config::new();
        // Compiled in only when calls are limited: the checks are not free (see VmLimits).
        config.epoch_interruption(limits.call_timeout.is_some());
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        if limits.perf_map {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| anyhow!("{e:#}"))?;
        let module = super::module_cache::load(&engine, wasm, cache_dir)?;
        check_abi(&module)?;
        let mut linker = Linker::new(&engine);
        imports::link(&mut linker, &module)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| anyhow!("linking the filter's imports: {e:#}"))?;
        if limits.call_timeout.is_some() {
            let ticker = engine.weak();
            std::thread::Builder::new()
                .name("headroom-epoch".into())
                .spawn(move || {
                    while let Some(engine) = ticker.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })?;
        }
        Ok(Arc::new(Self {
            engine,
            pre,
            plugin: Arc::new(plugin),
            limits,
        }))
    }

    /// State shared by every VM (shared data, metrics, settings).
    pub fn plugin(&self) -> &Arc<PluginShared> {
        &self.plugin
    }

    /// Makes a VM and starts it the way Envoy does: `_initialize`, root context creation,
    /// `proxy_on_vm_start`, `proxy_on_configure`. A `false` from either is an error.
    pub fn instantiate(&self) -> Result<Vm> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .trap_on_grow_failure(false)
            .build();
        let state = HostState {
            plugin: self.plugin.clone(),
            streams: Default::default(),
            root_context_id: ROOT_CONTEXT_ID,
            effective_context: ROOT_CONTEXT_ID,
            phase: Phase::Other,
            tick_period_ms: 0,
            http_calls: Vec::new(),
            next_token: 0,
            http_call_response: None,
            wakeups: Vec::new(),
            limits,
            last_log: None,
            guest: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let deadline = self.deadline_ticks();
        if let Some(ticks) = deadline {
            store.set_epoch_deadline(ticks);
            store.epoch_deadline_trap();
        }
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| anyhow!("instantiating the filter: {e:#}"))?;
        let exports = Exports::find(&instance, &mut store)?;
        store.data_mut().guest = super::memory::Guest::of_instance(&instance, &mut store);
        let mut vm = Vm {
            store,
            exports,
            next_context_id: ROOT_CONTEXT_ID + 1,
            deadline,
        };
        if let Some(init) = vm.exports.initialize.clone() {
            vm.call(ROOT_CONTEXT_ID, Phase::Other, |s| init.call(s, ()))
                .map_err(|t| anyhow!("_initialize: {t}"))?;
        }
        let create = vm.exports.context_create.clone();
        vm.call(ROOT_CONTEXT_ID, Phase::Other, |s| {
            create.call(s, (ROOT_CONTEXT_ID as i32, 0))
        })
        .map_err(|t| anyhow!("root context: {t}"))?;
        if let Some(start) = vm.exports.vm_start.clone() {
            let size = self.plugin.vm_configuration.len() as i32;
            let ok = vm
                .call(ROOT_CONTEXT_ID, Phase::VmStart, |s| {
                    start.call(s, (ROOT_CONTEXT_ID as i32, size))
                })
                .map_err(|t| anyhow!("proxy_on_vm_start: {t}"))?;
            if ok == 0 {
                return Err(anyhow!(
                    "the filter refused to start (proxy_on_vm_start returned false)"
                ));
            }
        }
        if let Some(configure) = vm.exports.configure.clone() {
            let size = self.plugin.configuration.len() as i32;
            let ok = vm
                .call(ROOT_CONTEXT_ID, Phase::Configure, |s| {
                    configure.call(s, (ROOT_CONTEXT_ID as i32, size))
                })
                .map_err(|t| anyhow!("proxy_on_configure: {t}"))?;
            if ok == 0 {
                let why = vm
                    .store
                    .data()
                    .last_log
                    .as_ref()
                    .map(|l| l.message.clone())
                    .unwrap_or_default();
                return Err(anyhow!(
                    "the filter rejected its configuration (proxy_on_configure returned false): {why}"
                ));
            }
        }
        Ok(vm)
    }

    /// The call limit in epoch ticks, when calls are limited.
    fn deadline_ticks(&self) -> Option<u64> {
        self.limits
            .call_timeout
            .map(|limit| (limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64)
    }
}

/// The root context's id; stream ids follow it.
pub const ROOT_CONTEXT_ID: u32 = 1;

fn check_abi(module: &Module) -> Result<()> {
    let exports: Vec<_> = module.exports().map(|e| e.name().to_string()).collect();
    if exports
        .iter()
        .any(|e| e == "proxy_abi_version_0_2_1" || e == "proxy_abi_version_0_2_0")
    {
        Ok(())
    } else {
        Err(anyhow!(
            "not a proxy-wasm 0.2.x module (no proxy_abi_version_0_2_1 export)"
        ))
    }
}

type F2 = TypedFunc<(i32, i32), i32>;
type F3 = TypedFunc<(i32, i32, i32), i32>;
type F5 = TypedFunc<(i32, i32, i32, i32, i32), ()>;

/// The callbacks a module exports (all optional but context creation).
#[derive(Clone)]
struct Exports {
    initialize: Option<TypedFunc<(), ()>>,
    context_create: TypedFunc<(i32, i32), ()>,
    vm_start: Option<F2>,
    configure: Option<F2>,
    tick: Option<TypedFunc<i32, ()>>,
    request_headers: Option<F3>,
    request_body: Option<F3>,
    response_headers: Option<F3>,
    response_body: Option<F3>,
    http_call_response: Option<F5>,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
}

impl Exports {
    fn find(instance: &wasmtime::Instance, store: &mut Store<HostState>) -> Result<Self> {
        macro_rules! opt {
            ($name:literal) => {
                instance.get_typed_func(&mut *store, $name).ok()
            };
        }
        Ok(Self {
            initialize: opt!("_initialize"),
            context_create: instance
                .get_typed_func(&mut *store, "proxy_on_context_create")
                .map_err(|e| {
                    anyhow!("the module exports no usable proxy_on_context_create: {e:#}")
                })?,
            vm_start: opt!("proxy_on_vm_start"),
            configure: opt!("proxy_on_configure"),
            tick: opt!("proxy_on_tick"),
            request_headers: opt!("proxy_on_request_headers"),
            request_body: opt!("proxy_on_request_body"),
            response_headers: opt!("proxy_on_response_headers"),
            response_body: opt!("proxy_on_response_body"),
            http_call_response: opt!("proxy_on_http_call_response"),
            done: opt!("proxy_on_done"),
            log: opt!("proxy_on_log"),
            delete: opt!("proxy_on_delete"),
        })
    }
}

/// One running instance of the filter.
pub struct Vm {
    store: Store<HostState>,
    exports: Exports,
    next_context_id: u32,
    /// Epoch ticks one call may take, when calls are limited.
    deadline: Option<u64>,
}

impl Vm {
    fn call<R>(
        &mut self,
        context: u32,
        phase: Phase,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestTrap> {
        {
            let state = self.store.data_mut();
            state.effective_context = context;
            state.phase = phase;
        }
        if let Some(ticks) = self.deadline {
            self.store.set_epoch_deadline(ticks);
        }
        let result = f(&mut self.store);
        let state = self.store.data_mut();
        state.phase = Phase::Other;
        state.effective_context = ROOT_CONTEXT_ID;
        result.map_err(|e| {
            let mut message = match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => "guest call exceeded its time limit".to_string(),
                Some(trap) => format!("guest trapped: {trap}"),
                None => format!("guest call failed: {e:#}"),
            };
            if let Some(log) = &state.last_log
                && log.level >= 4
            {
                message.push_str(&format!(" (last guest error: {})", log.message));
            }
            GuestTrap { message }
        })
    }

    /// Size of the guest's linear memory in bytes (it only grows): what this VM costs.
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .guest
            .as_ref()
            .map_or(0, |guest| guest.memory_bytes(&self.store))
    }

    /// Creates an HTTP stream context under the root context.
    pub fn create_stream(&mut self, info: StreamInfo) -> Result<u32, GuestTrap> {
        let id = self.next_context_id;
        self.next_context_id = self
            .next_context_id
            .wrapping_add(1)
            .max(ROOT_CONTEXT_ID + 1);
        self.store.data_mut().streams.insert(
            id,
            StreamState {
                info: Some(info),
                ..StreamState::default()
            },
        );
        let create = self.exports.context_create.clone();
        self.call(id, Phase::Other, |s| {
            create.call(s, (id as i32, ROOT_CONTEXT_ID as i32))
        })?;
        Ok(id)
    }

    /// The state of stream `id`, to hand it headers and bodies and read back what the guest did.
    pub fn stream(&mut self, id: u32) -> Option<&mut StreamState> {
        self.store.data_mut().streams.get_mut(&id)
    }

    fn header_call(
        &mut self,
        id: u32,
        phase: Phase,
        f: Option<F3>,
        count: usize,
        eos: bool,
    ) -> Result<Action, GuestTrap> {
        let Some(f) = f else {
            return Ok(Action::Continue);
        };
        let raw = self.call(id, phase, |s| {
            f.call(s, (id as i32, count as i32, i32::from(eos)))
        })?;
        Ok(Action::from_raw(raw))
    }

    /// `proxy_on_request_headers`, with the headers already in the stream state.
    pub fn on_request_headers(&mut self, id: u32, eos: bool) -> Result<Action, GuestTrap> {
        let count = self
            .stream(id)
            .and_then(|s| s.request_headers.as_ref().map(Vec::len))
            .unwrap_or(0);
        let f = self.exports.request_headers.clone();
        self.header_call(id, Phase::RequestHeaders, f, count, eos)
    }

    /// `proxy_on_request_body`, with the buffered body (cumulative) in the stream state.
    pub fn on_request_body(&mut self, id: u32, eos: bool) -> Result<Action, GuestTrap> {
        let size = self.stream(id).map(|s| s.request_body.len()).unwrap_or(0);
        let f = self.exports.request_body.clone();
        self.header_call(id, Phase::RequestBody, f, size, eos)
    }

    /// `proxy_on_response_headers`, with the headers already in the stream state.
    pub fn on_response_headers(&mut self, id: u32, eos: bool) -> Result<Action, GuestTrap> {
        let count = self
            .stream(id)
            .and_then(|s| s.response_headers.as_ref().map(Vec::len))
            .unwrap_or(0);
        let f = self.exports.response_headers.clone();
        self.header_call(id, Phase::ResponseHeaders, f, count, eos)
    }

    /// `proxy_on_response_body`, with the buffered body (cumulative) in the stream state.
    pub fn on_response_body(&mut self, id: u32, eos: bool) -> Result<Action, GuestTrap> {
        let size = self.stream(id).map(|s| s.response_body.len()).unwrap_or(0);
        let f = self.exports.response_body.clone();
        self.header_call(id, Phase::ResponseBody, f, size, eos)
    }

    /// Ends stream `id`: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`, then forgets it.
    pub fn finish_stream(&mut self, id: u32) -> Result<(), GuestTrap> {
        if !self.store.data().streams.contains_key(&id) {
            return Ok(());
        }
        let result = (|| {
            if let Some(done) = self.exports.done.clone() {
                self.call(id, Phase::Other, |s| done.call(s, id as i32))?;
            }
            if let Some(log) = self.exports.log.clone() {
                self.call(id, Phase::Other, |s| log.call(s, id as i32))?;
            }
            if let Some(delete) = self.exports.delete.clone() {
                self.call(id, Phase::Other, |s| delete.call(s, id as i32))?;
            }
            Ok(())
        })();
        self.store.data_mut().streams.remove(&id);
        result
    }

    /// `proxy_on_tick` on the root context.
    pub fn on_tick(&mut self) -> Result<(), GuestTrap> {
        match self.exports.tick.clone() {
            Some(tick) => self.call(ROOT_CONTEXT_ID, Phase::Other, |s| {
                tick.call(s, ROOT_CONTEXT_ID as i32)
            }),
            None => Ok(()),
        }
    }

    /// The tick period the root context asked for.
    pub fn tick_period(&self) -> Option<Duration> {
        match self.store.data().tick_period_ms {
            0 => None,
            ms => Some(Duration::from_millis(u64::from(ms))),
        }
    }

    /// Delivers an `http_call` response (`headers` empty = the call failed).
    pub fn on_http_call_response(
        &mut self,
        context: u32,
        token: u32,
        response: HttpCallResponse,
    ) -> Result<(), GuestTrap> {
        let Some(f) = self.exports.http_call_response.clone() else {
            return Ok(());
        };
        // The caller may be gone; Envoy then delivers nothing.
        if context != ROOT_CONTEXT_ID && !self.store.data().streams.contains_key(&context) {
            return Ok(());
        }
        let args = (
            context as i32,
            token as i32,
            response.headers.len() as i32,
            response.body.len() as i32,
            response.trailers.len() as i32,
        );
        self.store.data_mut().http_call_response = Some(response);
        let result = self.call(context, Phase::HttpCallResponse, |s| f.call(s, args));
        self.store.data_mut().http_call_response = None;
        result
    }

    /// `http_call`s the guest issued since the last look.
    pub fn take_http_calls(&mut self) -> Vec<HttpCallRequest> {
        std::mem::take(&mut self.store.data_mut().http_calls)
    }

    /// Streams the guest resumed, closed or answered from another context since the last look.
    pub fn take_wakeups(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.store.data_mut().wakeups)
    }
}
