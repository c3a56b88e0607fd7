//! Which budgets a request is counted against: the global one, its API key's (when `per_key`
//! is configured) and its project's (when `X-Headroom-Project` names a configured project, or
//! any project with `default_project`).
//!
//! An API key is identified by a keyed hash of the credential headers
//! ([`CREDENTIAL_HEADERS`], [`crate::credential::hash_credentials`]): HMAC-SHA256 with the
//! secret over a domain tag and the header values, truncated to 64 bits and written as 16 hex
//! digits. The credential itself is never stored.
//! The secret is `budget.key_secret` when configured (stable ids across restarts and
//! replicas), else a random secret drawn once per process.
//!
//! Tracked keys and default-project projects are bounded (`max_keys`, `max_projects`): the
//! first ones seen are tracked separately, every later one shares a single budget with the
//! id [`OVERFLOW`] and the same limit. So a flood of new keys cannot grow shared data, and
//! the keys it brings are still limited together (never left unlimited).

use super::{BudgetConfig, Limit};

pub use crate::credential::CREDENTIAL_HEADERS;

/// The id of the budget shared by keys or projects beyond the tracked bound.
pub const OVERFLOW: &str = "overflow";

/// Longest project id, in characters.
const MAX_PROJECT_ID: usize = 64;

/// The kind of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The gateway's.
    Global,
    /// An API key's.
    Key,
    /// A project's.
    Project,
}

impl Kind {
    /// The metric label value and `/stats` name: `global`, `key` or `project`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Key => "key",
            Self::Project => "project",
        }
    }
}

/// One budget that applies to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// Its kind.
    pub kind: Kind,
    /// Its id: `global`, a key hash, a project id, or [`OVERFLOW`].
    pub id: String,
    /// Its limit.
    pub limit: Limit,
}

impl Scope {
    /// The shared-data key its [`super::BudgetState`] lives under (the global one keeps the
    /// first version's key).
    pub fn state_key(&self) -> String {
        match self.kind {
            Kind::Global => "headroom.budget".to_owned(),
            Kind::Key => format!("headroom.budget.key.{}", self.id),
            Kind::Project => format!("headroom.budget.project.{}", self.id),
        }
    }

    /// For people (429 messages): `global`, `API key 0123…`, `project x`.
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Global => "global".to_owned(),
            Kind::Key => format!("API key {}", self.id),
            Kind::Project => format!("project {}", self.id),
        }
    }
}

/// The id of the API key whose [`CREDENTIAL_HEADERS`] have `values` (same order, `None` where
/// absent), keyed with `secret`; `None` when the request carries no credential.
pub fn key_id(secret: &[u8], values: [Option<&[u8]>; 3]) -> Option<String> {
    if values.iter().all(Option::is_none) {
        return None;
    }
    let key = crate::pipeline::MarkerKey::new(secret);
    Some(crate::credential::hash_credentials(&key, b"headroom-budget-key-v1", values).to_hex())
}

/// The id of a project name: `[a-z0-9_-]` (others become `_`, upper case is lowered), at most
/// 64 characters, so it is a valid metric label value.
pub fn project_id(name: &str) -> String {
    crate::metrics::sanitize_label_value(name)
        .chars()
        .take(MAX_PROJECT_ID)
        .collect()
}

/// The project budget of `name`: `(id, limit, configured)`; `None` when no limit applies.
/// Configured projects match by exact name; others get `default_project`, if any.
pub fn project_limit(config: &BudgetConfig, name: &str) -> Option<(String, Limit, bool)> {
    if name.is_empty() {
        return None;
    }
    if let Some(limit) = config.projects.get(name) {
        return Some((project_id(name), *limit, true));
    }
    config
        .default_project
        .map(|limit| (project_id(name), limit, false))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::budget::Period;

    #[test]
    fn key_ids_are_keyed_hashes_never_the_credential() {
        let a = key_id(b"s", [Some(b"Bearer sk-one"), None, None]).unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!a.contains("sk"));
        assert_eq!(
            key_id(b"s", [Some(b"Bearer sk-one"), None, None]).unwrap(),
            a
        );
        assert_ne!(
            key_id(b"s", [Some(b"Bearer sk-two"), None, None]).unwrap(),
            a
        );
        assert_ne!(
            key_id(b"t", [Some(b"Bearer sk-one"), None, None]).unwrap(),
            a
        );
        // The same value in another header is another key.
        assert_ne!(
            key_id(b"s", [None, Some(b"Bearer sk-one"), None]).unwrap(),
            a
        );
        assert_ne!(
            key_id(b"s", [Some(b""), None, None]),
            key_id(b"s", [None, None, Some(b"")])
        );
        assert_eq!(key_id(b"s", [None, None, None]), None);
    }

    #[test]
    fn projects_get_their_own_limit_or_the_default() {
        let mut config = BudgetConfig::global_only(10.0, Period::Daily);
        let alpha = Limit {
            limit_usd: 1.0,
            period: Period::Hourly,
        };
        config.projects.insert("Alpha Team".to_owned(), alpha);
        assert_eq!(
            project_limit(&config, "Alpha Team"),
            Some(("alpha_team".to_owned(), alpha, true))
        );
        assert_eq!(project_limit(&config, "beta"), None);
        assert_eq!(project_limit(&config, ""), None);
        let default = Limit {
            limit_usd: 2.0,
            period: Period::Weekly,
        };
        config.default_project = Some(default);
        assert_eq!(
            project_limit(&config, "beta"),
            Some(("beta".to_owned(), default, false))
        );
        assert_eq!(project_id(&"x".repeat(100)).len(), 64);
        assert_eq!(project_id("a.b/c"), "a_b_c");
    }

    #[test]
    fn state_keys_and_descriptions() {
        let limit = Limit {
            limit_usd: 1.0,
            period: Period::Daily,
        };
        let scope = |kind, id: &str| Scope {
            kind,
            id: id.to_owned(),
            limit,
        };
        assert_eq!(scope(Kind::Global, "global").state_key(), "headroom.budget");
        assert_eq!(
            scope(Kind::Key, "00ff").state_key(),
            "headroom.budget.key.00ff"
        );
        assert_eq!(scope(Kind::Project, "a").describe(), "project a");
        assert_eq!(scope(Kind::Key, "00ff").describe(), "API key 00ff");
    }
}
