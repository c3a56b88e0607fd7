//! What a VM's host functions read and write: per-stream state, the current call, and the work
//! the guest asked for that the host carries out after the call returns (Envoy defers it too).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use wasmtime::StoreLimits;

use super::memory::HeaderMap;
use super::shared::{Metrics, SharedData};

/// Process-wide settings and state every VM of a plugin shares.
pub struct PluginShared {
    /// `plugin_name` property.
    pub name: String,
    /// `plugin_root_id` property.
    pub root_id: String,
    /// `plugin_vm_id` property.
    pub vm_id: String,
    /// The plugin configuration (`proxy_on_configure`).
    pub configuration: Vec<u8>,
    /// The VM configuration (`proxy_on_vm_start`).
    pub vm_configuration: Vec<u8>,
    /// Named upstream clusters for `proxy_http_call`: name → base URL.
    pub clusters: HashMap<String, String>,
    /// The log level reported by `proxy_get_log_level`.
    pub log_level: i32,
    /// Shared data, across every VM (and the host's savings persistence).
    pub shared_data: Arc<SharedData>,
    /// Guest-defined metrics, across every VM.
    pub metrics: Arc<Metrics>,
}

impl PluginShared {
    /// The Headroom filter as both `headroom proxy` and `headroom validate` run it: named
    /// `headroom`, with the `openai` and `anthropic` clusters and fresh metrics.
    pub fn headroom(
        configuration: Vec<u8>,
        openai_url: &str,
        anthropic_url: &str,
        log_level: i32,
        shared_data: Arc<SharedData>,
    ) -> Self {
        PluginShared {
            name: "headroom".into(),
            root_id: "headroom".into(),
            vm_id: "headroom".into(),
            configuration,
            vm_configuration: Vec::new(),
            clusters: HashMap::from([
                ("openai".to_string(), openai_url.to_owned()),
                ("anthropic".to_string(), anthropic_url.to_owned()),
            ]),
            log_level,
            shared_data,
            metrics: Arc::new(Metrics::default()),
        }
    }
}

/// Facts about a stream the guest can read as properties.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    /// The downstream peer.
    pub source: Option<SocketAddr>,
    /// The local address the request arrived on.
    pub destination: Option<SocketAddr>,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
    /// A unique id for the request (`request.id`).
    pub request_id: String,
    /// When the request started.
    pub start: SystemTime,
}

/// A local response the guest asked for with `proxy_send_local_response`.
#[derive(Clone, Debug)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers to send (besides the framing ones).
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
    /// Why (Envoy's `response.code_details`).
    pub details: String,
}

/// One HTTP stream's state, as the guest sees it through the ABI.
#[derive(Default)]
pub struct StreamState {
    /// Facts for properties; `None` only in tests.
    pub info: Option<StreamInfo>,
    /// Request headers, pseudo-headers first; `None` before they arrive.
    pub request_headers: Option<HeaderMap>,
    /// Request trailers.
    pub request_trailers: HeaderMap,
    /// Response headers with `:status`; `None` before they arrive.
    pub response_headers: Option<HeaderMap>,
    /// Response trailers.
    pub response_trailers: HeaderMap,
    /// The request body buffered so far (or the chunk being delivered).
    pub request_body: Vec<u8>,
    /// The response body buffered so far (or the chunk being delivered).
    pub response_body: Vec<u8>,
    /// The response status once known (`response.code`).
    pub response_code: Option<u16>,
    /// Why the response is what it is (`response.code_details`), e.g. `via_upstream`.
    pub response_code_details: String,
    /// A local response requested by the guest, carried out after the call.
    pub local_response: Option<LocalResponse>,
    /// The guest called `proxy_continue_stream(HTTP_REQUEST)`.
    pub resume_request: bool,
    /// The guest called `proxy_continue_stream(HTTP_RESPONSE)`.
    pub resume_response: bool,
    /// The guest called `proxy_close_stream`.
    pub close: bool,
    /// Properties the guest set with `proxy_set_property` (filter state in Envoy).
    pub properties: Properties,
}

/// What the embedder does with a stream's properties when the stream's state is discarded
/// (after `proxy_on_log` and `proxy_on_delete`, or with its VM): the hook through which this
/// layer reaches its embedder (the proxy hands the filter's record to the record writer).
pub trait StreamEndHook: Send + Sync {
    /// Takes what it wants of the properties the guest set.
    fn stream_ended(&self, properties: &mut HashMap<String, Vec<u8>>);
}

/// The installed [`StreamEndHook`]. Process-wide, like the panic hook: states are discarded
/// deep inside a VM, far from any configuration.
static STREAM_END_HOOK: std::sync::RwLock<Option<Arc<dyn StreamEndHook>>> =
    std::sync::RwLock::new(None);

/// Installs `hook` for every stream that ends from now on (replacing any earlier one).
pub fn set_stream_end_hook(hook: Arc<dyn StreamEndHook>) {
    *STREAM_END_HOOK.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
}

/// A stream's properties; the [`StreamEndHook`] sees them when they are discarded.
#[derive(Default)]
pub struct Properties(pub HashMap<String, Vec<u8>>);

impl std::ops::Deref for Properties {
    type Target = HashMap<String, Vec<u8>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Properties {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let hook = STREAM_END_HOOK
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook.stream_ended(&mut self.0);
        }
    }
}

/// The callback being run, which decides what the guest may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `proxy_on_vm_start`.
    VmStart,
    /// `proxy_on_configure`.
    Configure,
    /// `proxy_on_request_headers`.
    RequestHeaders,
    /// `proxy_on_request_body`.
    RequestBody,
    /// `proxy_on_response_headers`.
    ResponseHeaders,
    /// `proxy_on_response_body`.
    ResponseBody,
    /// `proxy_on_http_call_response`.
    HttpCallResponse,
    /// Anything else (context create, tick, log, done, delete).
    Other,
}

/// An `http_call` the guest issued, dispatched by the host after the call returns.
#[derive(Debug)]
pub struct HttpCallRequest {
    /// The token returned to the guest.
    pub token: u32,
    /// The context that issued it.
    pub context_id: u32,
    /// The cluster's base URL.
    pub base_url: String,
    /// Request headers, pseudo-headers included.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// Timeout in milliseconds.
    pub timeout_ms: u32,
}

/// The response of an `http_call`, visible during `proxy_on_http_call_response`.
#[derive(Default)]
pub struct HttpCallResponse {
    /// Response headers with `:status` (empty when the call failed).
    pub headers: HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
    /// Response trailers.
    pub trailers: HeaderMap,
}

/// A guest log line, kept so a trap can be reported with the guest's last words.
#[derive(Clone, Debug)]
pub struct GuestLog {
    /// `proxy_log_level_t`.
    pub level: i32,
    /// The message.
    pub message: String,
}

/// The data of a VM's `wasmtime::Store`.
pub struct HostState {
    /// Settings and cross-VM state.
    pub plugin: Arc<PluginShared>,
    /// Live streams by context id.
    pub streams: HashMap<u32, StreamState>,
    /// The root context id.
    pub root_context_id: u32,
    /// The context host functions act on (changed by `proxy_set_effective_context`).
    pub effective_context: u32,
    /// The callback being run.
    pub phase: Phase,
    /// Tick period the root context asked for, in milliseconds (0 = none).
    pub tick_period_ms: u32,
    /// `http_call`s waiting to be dispatched.
    pub http_calls: Vec<HttpCallRequest>,
    /// Next `http_call` token.
    pub next_token: u32,
    /// The `http_call` response being delivered.
    pub http_call_response: Option<HttpCallResponse>,
    /// Contexts the guest resumed or closed from another context, to wake after the call.
    pub wakeups: Vec<u32>,
    /// Memory limits of this VM.
    pub limits: StoreLimits,
    /// The last guest log line.
    pub last_log: Option<GuestLog>,
    /// The guest's memory and allocator, found once when the instance is made (every host
    /// call needs them; looking them up by name per call was about 1 % of a worker's time on
    /// a later turn). `None` until then.
    pub guest: Option<super::memory::Guest>,
}

impl HostState {
    /// The state of the stream the guest is acting on, if it is a stream.
    pub fn stream(&mut self) -> Option<&mut StreamState> {
        self.streams.get_mut(&self.effective_context)
    }
}
