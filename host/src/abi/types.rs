//! The proxy-wasm ABI 0.2.1 enumerations, as numbers on the wire.
//!
//! Values follow the spec (`abi-versions/v0.2.1`); where Envoy deviates, the host follows Envoy,
//! because the same `.wasm` must behave identically in both.

/// `proxy_status_t`: what every host function returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The key, header, metric or buffer does not exist (or is not available now).
    NotFound = 1,
    /// An argument is out of range or not allowed in the current phase.
    BadArgument = 2,
    /// A value could not be serialised.
    SerializationFailure = 3,
    /// A value could not be parsed.
    ParseFailure = 4,
    /// A pointer or length points outside the guest's memory.
    InvalidMemoryAccess = 6,
    /// A queue is empty.
    Empty = 7,
    /// A shared-data compare-and-swap lost.
    CasMismatch = 8,
    /// The host failed internally.
    InternalFailure = 10,
    /// The host does not implement this call.
    Unimplemented = 12,
}

impl Status {
    /// The status as the `i32` a host function returns.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// `proxy_buffer_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferType {
    /// The request body being buffered.
    HttpRequestBody,
    /// The response body being buffered.
    HttpResponseBody,
    /// The body of an `http_call` response, during its callback.
    HttpCallResponseBody,
    /// The VM configuration, during `proxy_on_vm_start`.
    VmConfiguration,
    /// The plugin configuration, during `proxy_on_configure`.
    PluginConfiguration,
    /// A type this host has no buffer for (TCP data, gRPC, foreign functions).
    Unsupported,
}

impl BufferType {
    /// Decodes the wire value; `None` for values outside the enumeration.
    pub fn from_raw(raw: i32) -> Option<Self> {
        Some(match raw {
            0 => Self::HttpRequestBody,
            1 => Self::HttpResponseBody,
            4 => Self::HttpCallResponseBody,
            6 => Self::VmConfiguration,
            7 => Self::PluginConfiguration,
            2 | 3 | 5 | 8 => Self::Unsupported,
            _ => return None,
        })
    }
}

/// `proxy_map_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    /// Request headers, pseudo-headers (`:method`, `:path`, …) included.
    RequestHeaders,
    /// Request trailers.
    RequestTrailers,
    /// Response headers, `:status` included.
    ResponseHeaders,
    /// Response trailers.
    ResponseTrailers,
    /// Response headers of an `http_call`, during its callback.
    HttpCallResponseHeaders,
    /// Response trailers of an `http_call`, during its callback.
    HttpCallResponseTrailers,
    /// gRPC metadata, which this host does not support.
    Unsupported,
}

impl MapType {
    /// Decodes the wire value; `None` for values outside the enumeration.
    pub fn from_raw(raw: i32) -> Option<Self> {
        Some(match raw {
            0 => Self::RequestHeaders,
            1 => Self::RequestTrailers,
            2 => Self::ResponseHeaders,
            3 => Self::ResponseTrailers,
            6 => Self::HttpCallResponseHeaders,
            7 => Self::HttpCallResponseTrailers,
            4 | 5 => Self::Unsupported,
            _ => return None,
        })
    }
}

/// `proxy_stream_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamType {
    /// The request direction of an HTTP stream.
    HttpRequest,
    /// The response direction of an HTTP stream.
    HttpResponse,
}

impl StreamType {
    /// Decodes the wire value; TCP stream types (2, 3) are `None`: this host serves HTTP only.
    pub fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::HttpRequest),
            1 => Some(Self::HttpResponse),
            _ => None,
        }
    }
}

/// `proxy_metric_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Monotonic; increments must be positive.
    Counter,
    /// Set or moved freely (u64, wraps like Envoy's).
    Gauge,
    /// Records samples.
    Histogram,
}

impl MetricType {
    /// Decodes the wire value.
    pub fn from_raw(raw: i32) -> Option<Self> {
        match raw {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }

    /// The low bits Envoy stores the type in, inside a metric id.
    pub fn tag(self) -> u32 {
        match self {
            Self::Counter => 0,
            Self::Gauge => 1,
            Self::Histogram => 2,
        }
    }
}

/// What a header or body callback returned (`proxy_action_t`), as Envoy reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Let the data through.
    Continue,
    /// Stop here: headers wait for `proxy_continue_stream`, body chunks are buffered.
    Pause,
}

impl Action {
    /// Envoy casts the returned `i32` to its own enums: 0 continues and anything else stops.
    pub fn from_raw(raw: i32) -> Self {
        if raw == 0 {
            Self::Continue
        } else {
            Self::Pause
        }
    }
}

/// `proxy_log_level_t` mapped onto `tracing` levels.
pub fn log_level(raw: i32) -> tracing::Level {
    match raw {
        0 => tracing::Level::TRACE,
        1 => tracing::Level::DEBUG,
        2 => tracing::Level::INFO,
        3 => tracing::Level::WARN,
        _ => tracing::Level::ERROR,
    }
}
