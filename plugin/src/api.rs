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

/// A billed provider endpoint whose body the filter does not rewrite: budgets check it,
/// nothing compresses it. Only `POST`s qualify (reading a batch or a job is free), at exactly
/// these paths below a mount prefix (so `…/cancel` and other free calls do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Billed {
    /// `POST /v1/completions` (legacy text completions).
    OpenAiCompletions,
    /// `POST /v1/embeddings`
    OpenAiEmbeddings,
    /// `POST /v1/batches` (creates a batch: billed as it runs).
    OpenAiBatches,
    /// `POST /v1/images/{generations,edits,variations}`
    OpenAiImages,
    /// `POST /v1/audio/speech`
    OpenAiSpeech,
    /// `POST /v1/audio/transcriptions`
    OpenAiTranscriptions,
    /// `POST /v1/audio/translations`
    OpenAiTranslations,
    /// `POST /v1/fine_tuning/jobs`
    OpenAiFineTuning,
    /// `POST /v1/messages/batches`
    AnthropicBatches,
    /// `POST /v1/complete` (legacy text completions).
    AnthropicComplete,
}

impl Billed {
    /// Every billed endpoint.
    pub const ALL: [Billed; 10] = [
        Self::OpenAiCompletions,
        Self::OpenAiEmbeddings,
        Self::OpenAiBatches,
        Self::OpenAiImages,
        Self::OpenAiSpeech,
        Self::OpenAiTranscriptions,
        Self::OpenAiTranslations,
        Self::OpenAiFineTuning,
        Self::AnthropicBatches,
        Self::AnthropicComplete,
    ];

    /// The paths below the gateway's mount prefix.
    pub fn paths(self) -> &'static [&'static str] {
        match self {
            Self::OpenAiCompletions => &["/v1/completions"],
            Self::OpenAiEmbeddings => &["/v1/embeddings"],
            Self::OpenAiBatches => &["/v1/batches"],
            Self::OpenAiImages => &[
                "/v1/images/generations",
                "/v1/images/edits",
                "/v1/images/variations",
            ],
            Self::OpenAiSpeech => &["/v1/audio/speech"],
            Self::OpenAiTranscriptions => &["/v1/audio/transcriptions"],
            Self::OpenAiTranslations => &["/v1/audio/translations"],
            Self::OpenAiFineTuning => &["/v1/fine_tuning/jobs"],
            Self::AnthropicBatches => &["/v1/messages/batches"],
            Self::AnthropicComplete => &["/v1/complete"],
        }
    }

    /// The provider that serves this endpoint.
    pub fn provider(self) -> Provider {
        match self {
            Self::AnthropicBatches | Self::AnthropicComplete => Provider::Anthropic,
            _ => Provider::OpenAi,
        }
    }

    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAiCompletions => "openai_completions",
            Self::OpenAiEmbeddings => "openai_embeddings",
            Self::OpenAiBatches => "openai_batches",
            Self::OpenAiImages => "openai_images",
            Self::OpenAiSpeech => "openai_speech",
            Self::OpenAiTranscriptions => "openai_transcriptions",
            Self::OpenAiTranslations => "openai_translations",
            Self::OpenAiFineTuning => "openai_fine_tuning",
            Self::AnthropicBatches => "anthropic_batches",
            Self::AnthropicComplete => "anthropic_complete",
        }
    }

    /// The API whose usage reader reads this endpoint's responses, when they report usage:
    /// OpenAI's reader takes `prompt_tokens`/`completion_tokens` and `input_tokens`/
    /// `output_tokens` alike (completions and embeddings; `gpt-image-1` and the `gpt-4o-*`
    /// transcription models). Speech answers audio, batches and jobs answer their object,
    /// Anthropic's text completions report no usage.
    pub fn usage_api(self) -> Option<Api> {
        match self {
            Self::OpenAiCompletions
            | Self::OpenAiEmbeddings
            | Self::OpenAiImages
            | Self::OpenAiTranscriptions
            | Self::OpenAiTranslations => Some(Api::OpenAiChat),
            _ => None,
        }
    }

    /// Whether the request's model and size price it per token ([`Billed::generates`]
    /// telling whether output is priced too); batches, images, audio and fine-tuning cannot
    /// be priced from the request.
    pub fn priced_per_token(self) -> bool {
        matches!(
            self,
            Self::OpenAiCompletions | Self::OpenAiEmbeddings | Self::AnthropicComplete
        )
    }

    /// Whether it generates output tokens (embeddings do not).
    pub fn generates(self) -> bool {
        self != Self::OpenAiEmbeddings
    }

    /// The billed endpoint a request targets: a `POST` to one of its paths (query string
    /// ignored) below one of `prefixes`.
    pub fn classify(method: &[u8], path: &[u8], prefixes: &[String]) -> Option<Billed> {
        if method != b"POST" {
            return None;
        }
        let path = strip_query(path);
        Self::ALL.into_iter().find(|billed| {
            prefixes.iter().any(|prefix| {
                path.strip_prefix(prefix.as_bytes())
                    .is_some_and(|rest| billed.paths().iter().any(|p| rest == p.as_bytes()))
            })
        })
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
    fn classifies_billed_paths_and_leaves_free_ones() {
        let mounted = prefixes(&["", "/llm"]);
        for (path, billed) in [
            (&b"/v1/completions"[..], Billed::OpenAiCompletions),
            (b"/v1/embeddings?x=1", Billed::OpenAiEmbeddings),
            (b"/v1/batches", Billed::OpenAiBatches),
            (b"/v1/images/generations", Billed::OpenAiImages),
            (b"/v1/images/edits", Billed::OpenAiImages),
            (b"/v1/images/variations", Billed::OpenAiImages),
            (b"/v1/audio/speech", Billed::OpenAiSpeech),
            (b"/v1/audio/transcriptions", Billed::OpenAiTranscriptions),
            (b"/v1/audio/translations", Billed::OpenAiTranslations),
            (b"/v1/fine_tuning/jobs", Billed::OpenAiFineTuning),
            (b"/v1/messages/batches", Billed::AnthropicBatches),
            (b"/llm/v1/complete", Billed::AnthropicComplete),
        ] {
            assert_eq!(
                Billed::classify(b"POST", path, &mounted),
                Some(billed),
                "{path:?}"
            );
            assert_eq!(Api::classify(b"POST", path, &mounted), None, "{path:?}");
        }
        for (method, path) in [
            (&b"GET"[..], &b"/v1/batches"[..]),
            (b"GET", b"/v1/fine_tuning/jobs"),
            (b"POST", b"/v1/batches/batch_1/cancel"),
            (b"POST", b"/v1/fine_tuning/jobs/ft_1/cancel"),
            (b"POST", b"/v1/messages/batches/mb_1/cancel"),
            (b"POST", b"/v1/moderations"),
            (b"POST", b"/v1/messages/count_tokens"),
            (b"POST", b"/v1/images"),
            (b"POST", b"/v1/chat/completions"),
            (b"POST", b"/other/v1/completions"),
        ] {
            assert_eq!(Billed::classify(method, path, &mounted), None, "{path:?}");
        }
        assert_eq!(Billed::AnthropicBatches.provider(), Provider::Anthropic);
        assert_eq!(Billed::OpenAiImages.provider(), Provider::OpenAi);
        assert!(Billed::OpenAiEmbeddings.priced_per_token());
        assert!(!Billed::OpenAiEmbeddings.generates());
        assert!(!Billed::OpenAiBatches.priced_per_token());
        assert_eq!(Billed::OpenAiSpeech.usage_api(), None);
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
