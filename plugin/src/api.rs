//! The provider APIs the filter handles: which request paths they live at and which content
//! types carry their JSON bodies.

/// An LLM provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// OpenAI (Chat Completions and Responses).
    OpenAi,
    /// Anthropic (Messages).
    Anthropic,
}

impl Provider {
    /// Every provider, in metric-definition order.
    pub const ALL: [Provider; 2] = [Self::OpenAi, Self::Anthropic];

    /// The metric label value: `openai` or `anthropic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
        }
    }
}

/// A provider API whose request bodies the filter rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    /// `POST /v1/chat/completions`
    OpenAiChat,
    /// `POST /v1/responses`
    OpenAiResponses,
    /// `POST /v1/messages`
    AnthropicMessages,
}

impl Api {
    /// Every API.
    pub const ALL: [Api; 3] = [
        Self::OpenAiChat,
        Self::OpenAiResponses,
        Self::AnthropicMessages,
    ];

    /// The API's path below the gateway's mount prefix.
    pub fn path(self) -> &'static str {
        match self {
            Self::OpenAiChat => "/v1/chat/completions",
            Self::OpenAiResponses => "/v1/responses",
            Self::AnthropicMessages => "/v1/messages",
        }
    }

    /// The provider that serves this API.
    pub fn provider(self) -> Provider {
        match self {
            Self::OpenAiChat | Self::OpenAiResponses => Provider::OpenAi,
            Self::AnthropicMessages => Provider::Anthropic,
        }
    }

    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAiChat => "openai_chat",
            Self::OpenAiResponses => "openai_responses",
            Self::AnthropicMessages => "anthropic_messages",
        }
    }

    /// The API at `path` (query string ignored): the path must equal `prefix + api path` for
    /// one of `prefixes`. Matching is exact and case-sensitive, as routing is.
    pub fn from_path(path: &[u8], prefixes: &[String]) -> Option<Api> {
        let path = strip_query(path);
        Self::ALL.into_iter().find(|api| {
            prefixes.iter().any(|prefix| {
                path.strip_prefix(prefix.as_bytes())
                    .is_some_and(|rest| rest == api.path().as_bytes())
            })
        })
    }

    /// The API a request targets: only `POST` requests to an API path qualify.
    pub fn classify(method: &[u8], path: &[u8], prefixes: &[String]) -> Option<Api> {
        if method == b"POST" {
            Self::from_path(path, prefixes)
        } else {
            None
        }
    }
}

/// The path without its query string.
pub fn strip_query(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?') {
        Some(end) => path.get(..end).unwrap_or(path),
        None => path,
    }
}

/// Whether a `content-type` value is JSON: `application/json` or any `type/subtype+json`,
/// case-insensitive, with optional parameters (`; charset=utf-8`).
pub fn is_json_content_type(value: &[u8]) -> bool {
    let media_type = value
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let mut parts = media_type.splitn(2, |&b| b == b'/');
    let (Some(kind), Some(subtype)) = (parts.next(), parts.next()) else {
        return false;
    };
    let is_token =
        |part: &[u8]| !part.is_empty() && part.iter().all(|&b| b.is_ascii_graphic() && b != b'/');
    if !is_token(kind) || !is_token(subtype) {
        return false;
    }
    if kind.eq_ignore_ascii_case(b"application") && subtype.eq_ignore_ascii_case(b"json") {
        return true;
    }
    // A structured-syntax suffix needs a non-empty name before it: "+json" alone is not one.
    subtype.len() > 5
        && subtype
            .get(subtype.len() - 5..)
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case(b"+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes(list: &[&str]) -> Vec<String> {
        list.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn classifies_provider_paths() {
        let root = prefixes(&[""]);
        assert_eq!(
            Api::classify(b"POST", b"/v1/chat/completions", &root),
            Some(Api::OpenAiChat)
        );
        assert_eq!(
            Api::classify(b"POST", b"/v1/responses", &root),
            Some(Api::OpenAiResponses)
        );
        assert_eq!(
            Api::classify(b"POST", b"/v1/messages", &root),
            Some(Api::AnthropicMessages)
        );
        assert_eq!(
            Api::classify(b"POST", b"/v1/messages?beta=true", &root),
            Some(Api::AnthropicMessages)
        );
        for (method, path) in [
            (&b"GET"[..], &b"/v1/chat/completions"[..]),
            (b"post", b"/v1/chat/completions"),
            (b"POST", b"/v1/chat/completions/"),
            (b"POST", b"/V1/messages"),
            (b"POST", b"/v1/messages/count_tokens"),
            (b"POST", b"/v1/responses/resp_1/cancel"),
            (b"POST", b"/llm/v1/messages"),
            (b"POST", b""),
            (b"POST", b"/v1/models"),
        ] {
            assert_eq!(Api::classify(method, path, &root), None, "{path:?}");
        }
    }

    #[test]
    fn honours_mount_prefixes() {
        let mounted = prefixes(&["/llm", "/gw/openai"]);
        assert_eq!(
            Api::from_path(b"/llm/v1/messages", &mounted),
            Some(Api::AnthropicMessages)
        );
        assert_eq!(
            Api::from_path(b"/gw/openai/v1/responses?x=1", &mounted),
            Some(Api::OpenAiResponses)
        );
        assert_eq!(Api::from_path(b"/v1/messages", &mounted), None);
        assert_eq!(Api::from_path(b"/llmx/v1/messages", &mounted), None);
        assert_eq!(Api::from_path(b"/v1/messages", &[]), None);
    }

    #[test]
    fn names_providers_and_apis() {
        assert_eq!(Provider::OpenAi.as_str(), "openai");
        assert_eq!(Provider::Anthropic.as_str(), "anthropic");
        assert_eq!(Api::OpenAiResponses.provider(), Provider::OpenAi);
        assert_eq!(Api::AnthropicMessages.provider(), Provider::Anthropic);
        assert_eq!(strip_query(b"/a?b?c"), b"/a");
    }

    #[test]
    fn recognises_json_content_types() {
        for value in [
            &b"application/json"[..],
            b"Application/JSON",
            b"application/json; charset=utf-8",
            b" application/json ;charset=UTF-8",
            b"application/vnd.api+json",
            b"application/merge-patch+JSON; x=y",
        ] {
            assert!(is_json_content_type(value), "{value:?}");
        }
        for value in [
            &b""[..],
            b"text/plain",
            b"application/jsonx",
            b"application/x-ndjson",
            b"application/+json",
            b"json",
            b"/json",
            b"application/",
            b"multipart/form-data; boundary=x",
            b"application/json/extra",
            b"application/ json",
        ] {
            assert!(!is_json_content_type(value), "{value:?}");
        }
    }
}
