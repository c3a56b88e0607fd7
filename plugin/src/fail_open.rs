//! Why a provider request was forwarded unchanged: the surprises the filter counts instead of
//! failing the request.

use std::fmt;

/// A reason to forward the original request bytes untouched. Each is counted in
/// `headroom_fail_open_total` under its [`FailOpen::as_str`] label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailOpen {
    /// The body is not strict JSON (or too deeply nested, or holds an undecodable string).
    NotJson,
    /// The JSON does not have the shape of the API it was sent to.
    UnexpectedShape,
    /// The body is larger than `max_body_bytes`.
    TooLarge,
    /// The request is not plain JSON (content type or content encoding); it is not buffered.
    ContentType,
    /// A host call failed or the filter broke one of its own invariants.
    Internal,
}

impl FailOpen {
    /// Every reason, in metric-definition order.
    pub const ALL: [FailOpen; 5] = [
        Self::NotJson,
        Self::UnexpectedShape,
        Self::TooLarge,
        Self::ContentType,
        Self::Internal,
    ];

    /// The metric label value of this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotJson => "not_json",
            Self::UnexpectedShape => "unexpected_shape",
            Self::TooLarge => "too_large",
            Self::ContentType => "content_type",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for FailOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
