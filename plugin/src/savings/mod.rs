//! The savings ledger (docs/upstream.md §2): lifetime totals, the display session, per-project
//! totals and cumulative checkpoints over time, and the update each request makes to them.
//!
//! The ledger lives in proxy-wasm shared data so that every VM of a process updates the same
//! figures: a small [`Head`] (totals, session, projects, the sequence numbers of the stored
//! checkpoints) under one key, updated with compare-and-swap, and one key per [`Checkpoint`]
//! (written once, never rewritten). [`Ledger`] is the whole thing in memory: what a host loads
//! from and saves to `proxy_savings.json` ([`file`]) and what `/stats-history` is computed from
//! ([`history`]). Nothing here reads a clock: every function takes the time in unix seconds.

pub mod file;
pub mod history;
pub mod time;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Checkpoints kept: the newest this many (spec: `max_history_points`).
pub const MAX_HISTORY_POINTS: u64 = 5000;
/// Checkpoints older than this many days before the newest are dropped (`max_history_age_days`).
pub const MAX_HISTORY_AGE_DAYS: u64 = 365;
/// Points `/stats-history` returns in `compact` mode (`max_response_history_points`).
pub const MAX_RESPONSE_HISTORY_POINTS: usize = 500;
/// Projects kept; beyond it the least useful is evicted (`projects_limit`).
pub const MAX_PROJECTS: usize = 50;
/// The display session restarts after this much inactivity (minutes, strictly greater).
pub const SESSION_ROLLOVER_MINUTES: u64 = 60;
/// The file format version written (the spec's; older and newer files are read).
pub const SCHEMA_VERSION: u64 = 3;
/// Longest project name kept, in characters.
const MAX_PROJECT_NAME_CHARS: usize = 128;

/// The request header naming a request's project (removed before the request goes upstream,
/// like every `x-headroom-*` header).
pub const PROJECT_HEADER: &str = "x-headroom-project";

/// Shared-data key of the [`Head`].
pub const HEAD_KEY: &str = "headroom.savings.v1.head";
/// Shared-data key under which a host publishes [`StorageInfo`] for `/stats`.
pub const STORAGE_KEY: &str = "headroom.savings.v1.storage";

/// Shared-data key of checkpoint number `seq`.
pub fn checkpoint_key(seq: u64) -> String {
    format!("headroom.savings.v1.cp.{seq}")
}

/// Rounds USD to the 6 decimals the file keeps. Amounts of 2^53 micro-dollars (about $9
/// billion) and more have no 6th decimal to round, and scaling them could overflow to infinity
/// or change their last bit on every save: they are kept as they are, so rounding is idempotent.
pub fn usd6(amount: f64) -> f64 {
    const EXACT_MICROS: f64 = 9_007_199_254_740_992.0; // 2^53
    if !amount.is_finite() {
        0.0
    } else if (amount * 1e6).abs() >= EXACT_MICROS {
        amount
    } else {
        (amount * 1e6).round() / 1e6
    }
}

/// What one request adds to the ledger.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestSavings {
    /// `openai` / `anthropic`.
    pub provider: String,
    /// The model label (`unknown` when not known).
    pub model: String,
    /// The project the request belongs to (`X-Headroom-Project`), unsanitised.
    pub project: Option<String>,
    /// Input tokens the provider billed (after compression).
    pub input_tokens: u64,
    /// Tokens the pipeline removed.
    pub tokens_saved: u64,
    /// `tokens_saved` priced at the model's input price (0 when unpriced).
    pub savings_usd: f64,
    /// The input side's cost (cache-aware; 0 when unpriced).
    pub input_cost_usd: f64,
    /// The output's cost (0 when unpriced).
    pub output_cost_usd: f64,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: u64,
}

impl RequestSavings {
    /// The request's contribution to the lifetime totals.
    pub fn lifetime_delta(&self) -> Lifetime {
        Lifetime {
            requests: 1,
            tokens_saved: self.tokens_saved,
            compression_savings_usd: self.savings_usd,
            total_input_tokens: self.input_tokens,
            total_input_cost_usd: self.input_cost_usd,
            cache_read_tokens: self.cache_read_tokens,
            total_output_cost_usd: self.output_cost_usd,
        }
    }
}

/// Lifetime totals: the spec's five fields plus cache reads and output cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lifetime {
    /// Requests recorded.
    pub requests: u64,
    /// Tokens the pipeline removed.
    pub tokens_saved: u64,
    /// USD those tokens would have cost.
    pub compression_savings_usd: f64,
    /// Input tokens sent upstream.
    pub total_input_tokens: u64,
    /// USD spent on input.
    pub total_input_cost_usd: f64,
    /// Input tokens served from provider prompt caches.
    pub cache_read_tokens: u64,
    /// USD spent on output.
    pub total_output_cost_usd: f64,
}

/// The display session: totals since the last gap of more than an hour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Session {
    /// Requests in the session.
    pub requests: u64,
    /// Tokens saved in the session.
    pub tokens_saved: u64,
    /// USD saved in the session.
    pub compression_savings_usd: f64,
    /// Input tokens in the session.
    pub total_input_tokens: u64,
    /// Input USD in the session.
    pub total_input_cost_usd: f64,
    /// `tokens_saved / (tokens_saved + total_input_tokens)`, percent, 2 decimals.
    pub savings_percent: f64,
    /// When the session started (unix seconds).
    #[serde(with = "time::opt_rfc3339")]
    pub started_at: Option<u64>,
    /// The session's last request (unix seconds).
    #[serde(with = "time::opt_rfc3339")]
    pub last_activity_at: Option<u64>,
}

/// One project's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    /// Requests of the project.
    pub requests: u64,
    /// Tokens saved.
    pub tokens_saved: u64,
    /// USD saved.
    pub compression_savings_usd: f64,
    /// Input tokens.
    pub total_input_tokens: u64,
    /// Input USD.
    pub total_input_cost_usd: f64,
    /// The project's last request (unix seconds).
    #[serde(with = "time::opt_rfc3339")]
    pub last_activity_at: Option<u64>,
}

/// A cumulative checkpoint: the lifetime totals right after a request that saved tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Checkpoint {
    /// When (unix seconds, UTC).
    #[serde(with = "time::rfc3339")]
    pub timestamp: u64,
    /// Provider of the request.
    pub provider: String,
    /// Model of the request.
    pub model: String,
    /// Lifetime tokens saved.
    pub total_tokens_saved: u64,
    /// Lifetime USD saved.
    pub compression_savings_usd: f64,
    /// Lifetime input tokens.
    pub total_input_tokens: u64,
    /// Lifetime input USD.
    pub total_input_cost_usd: f64,
}

/// The part of the ledger every request rewrites (one shared-data value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Head {
    /// Lifetime totals.
    pub lifetime: Lifetime,
    /// The display session.
    pub display_session: Session,
    /// Per-project totals (at most [`MAX_PROJECTS`]).
    pub projects: BTreeMap<String, Project>,
    /// Sequence number of the oldest stored checkpoint.
    pub first_seq: u64,
    /// Sequence number the next checkpoint gets.
    pub next_seq: u64,
    /// Whether the process's `headroom_persistent_savings_*` counters already include
    /// `lifetime` (a VM claims it once per process; every update after that adds its deltas).
    pub metrics_seeded: bool,
}

/// What [`Head::record`] asks the caller to store after its compare-and-swap succeeded.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The new checkpoint and its sequence number, when the request saved tokens.
    pub checkpoint: Option<(u64, Checkpoint)>,
    /// Checkpoints that fell out of the count limit: delete their keys.
    pub evicted: std::ops::Range<u64>,
}

impl Head {
    /// Decodes a shared-data value; anything unreadable is an empty head.
    pub fn decode(bytes: &[u8]) -> Head {
        serde_json::from_slice(bytes).unwrap_or_default()
    }

    /// The shared-data value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Stored checkpoints.
    pub fn history_points(&self) -> u64 {
        self.next_seq.saturating_sub(self.first_seq)
    }

    /// Applies one request (the spec's `record_request`): lifetime, session, project and, when
    /// tokens were saved, a new checkpoint, evicting the oldest beyond [`MAX_HISTORY_POINTS`].
    pub fn record(&mut self, request: &RequestSavings, now: u64) -> Recorded {
        self.metrics_seeded = true;
        let l = &mut self.lifetime;
        l.requests += 1;
        l.tokens_saved += request.tokens_saved;
        l.compression_savings_usd = usd6(l.compression_savings_usd + request.savings_usd);
        l.total_input_tokens += request.input_tokens;
        l.total_input_cost_usd = usd6(l.total_input_cost_usd + request.input_cost_usd);
        l.cache_read_tokens += request.cache_read_tokens;
        l.total_output_cost_usd = usd6(l.total_output_cost_usd + request.output_cost_usd);

        let s = &mut self.display_session;
        if s.current(now).is_none() {
            *s = Session {
                started_at: Some(now),
                ..Session::default()
            };
        }
        s.requests += 1;
        s.tokens_saved += request.tokens_saved;
        s.compression_savings_usd = usd6(s.compression_savings_usd + request.savings_usd);
        s.total_input_tokens += request.input_tokens;
        s.total_input_cost_usd = usd6(s.total_input_cost_usd + request.input_cost_usd);
        s.savings_percent = savings_percent(s.tokens_saved, s.total_input_tokens);
        s.last_activity_at = Some(now);

        if let Some(name) = request.project.as_deref().and_then(sanitize_project) {
            let p = self.projects.entry(name.clone()).or_default();
            p.requests += 1;
            p.tokens_saved += request.tokens_saved;
            p.compression_savings_usd = usd6(p.compression_savings_usd + request.savings_usd);
            p.total_input_tokens += request.input_tokens;
            p.total_input_cost_usd = usd6(p.total_input_cost_usd + request.input_cost_usd);
            p.last_activity_at = Some(now);
            limit_projects(&mut self.projects, Some(&name));
        }

        let mut recorded = Recorded {
            checkpoint: None,
            evicted: self.first_seq..self.first_seq,
        };
        if request.tokens_saved > 0 {
            let seq = self.next_seq;
            self.next_seq += 1;
            recorded.checkpoint = Some((seq, self.checkpoint(request, now)));
            let keep_from = self.next_seq.saturating_sub(MAX_HISTORY_POINTS);
            if keep_from > self.first_seq {
                recorded.evicted = self.first_seq..keep_from;
                self.first_seq = keep_from;
            }
        }
        recorded
    }

    /// A checkpoint of the current lifetime totals.
    fn checkpoint(&self, request: &RequestSavings, now: u64) -> Checkpoint {
        let or_unknown = |s: &str| {
            if s.trim().is_empty() {
                "unknown".to_owned()
            } else {
                s.to_owned()
            }
        };
        Checkpoint {
            timestamp: now,
            provider: or_unknown(&request.provider),
            model: or_unknown(&request.model),
            total_tokens_saved: self.lifetime.tokens_saved,
            compression_savings_usd: self.lifetime.compression_savings_usd,
            total_input_tokens: self.lifetime.total_input_tokens,
            total_input_cost_usd: self.lifetime.total_input_cost_usd,
        }
    }
}

impl Session {
    /// The session as of `now`: `None` when it never started or expired (rollover is lazy).
    pub fn current(&self, now: u64) -> Option<&Session> {
        let last = self.last_activity_at?;
        self.started_at?;
        (now.saturating_sub(last) <= SESSION_ROLLOVER_MINUTES * 60).then_some(self)
    }
}

/// `saved / (saved + input)` in percent, 2 decimals; 0 when both are 0.
pub fn savings_percent(saved: u64, input: u64) -> f64 {
    let whole = saved + input;
    if whole == 0 {
        0.0
    } else {
        (saved as f64 * 10_000.0 / whole as f64).round() / 100.0
    }
}

/// A project name as the spec keeps it: URL-decoded, non-printable characters dropped,
/// trimmed, at most 128 characters; `None` when nothing is left.
pub fn sanitize_project(raw: &str) -> Option<String> {
    clean_project_name(&percent_decode(raw))
}

/// A project name as stored: control characters removed, trimmed, at most
/// [`MAX_PROJECT_NAME_CHARS`]. Idempotent, so the savings file's names are read back with it,
/// never decoded a second time (a stored `%41` stays `%41`).
pub(crate) fn clean_project_name(name: &str) -> Option<String> {
    let kept: String = name.chars().filter(|c| !c.is_control()).collect();
    let name: String = kept.trim().chars().take(MAX_PROJECT_NAME_CHARS).collect();
    let name = name.trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// `%XX` decoding (invalid escapes kept as they are; invalid UTF-8 replaced).
pub(crate) fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Keeps at most [`MAX_PROJECTS`], evicting the smallest `(tokens_saved, last_activity_at)`
/// other than `keep`.
fn limit_projects(projects: &mut BTreeMap<String, Project>, keep: Option<&str>) {
    while projects.len() > MAX_PROJECTS {
        let victim = projects
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != keep)
            .min_by_key(|(_, p)| (p.tokens_saved, p.last_activity_at))
            .map(|(name, _)| name.clone());
        match victim {
            Some(name) => projects.remove(&name),
            None => break,
        };
    }
}

/// The whole ledger in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ledger {
    /// Totals, session, projects (its sequence numbers describe `history`).
    pub head: Head,
    /// Checkpoints, oldest first.
    pub history: Vec<Checkpoint>,
}

impl Ledger {
    /// Sorts the checkpoints and applies the retention rules ([`Ledger::retain`]), keeps at
    /// most [`MAX_PROJECTS`] projects, and renumbers the head's sequence.
    pub fn normalize(&mut self) {
        Self::retain(&mut self.history);
        limit_projects(&mut self.head.projects, None);
        self.head.first_seq = 0;
        self.head.next_seq = self.history.len() as u64;
    }

    /// Sorts checkpoints by time (stable) and applies the retention rules with the newest as the
    /// reference: older than [`MAX_HISTORY_AGE_DAYS`] dropped (the newest always kept), then at
    /// most [`MAX_HISTORY_POINTS`].
    pub fn retain(history: &mut Vec<Checkpoint>) {
        history.sort_by_key(|c| c.timestamp);
        if let Some(newest) = history.last().map(|c| c.timestamp) {
            let cutoff = newest.saturating_sub(MAX_HISTORY_AGE_DAYS * 86_400);
            history.retain(|c| c.timestamp >= cutoff);
        }
        let excess = history.len().saturating_sub(MAX_HISTORY_POINTS as usize);
        history.drain(..excess);
    }

    /// The checkpoints as the views use them: [`Ledger::retain`] applied to a copy (the
    /// shared-data layout evicts by count only).
    pub fn retained(history: &[Checkpoint]) -> Vec<Checkpoint> {
        let mut history = history.to_vec();
        Self::retain(&mut history);
        history
    }
}

/// A key-value store with compare-and-swap: proxy-wasm shared data, seen from the filter or
/// from a host. One implementation of the ledger's layout serves both.
pub trait KeyValue {
    /// The value and CAS token of `key`.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if `cas` is `None` or still current; false on a CAS mismatch or error.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// How often a conflicting update is retried before the request's figures are dropped.
const CAS_ATTEMPTS: usize = 32;

/// Records one request in the shared ledger. False when every attempt lost its CAS race.
pub fn record_shared(store: &dyn KeyValue, request: &RequestSavings, now: u64) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (mut head, cas) = match store.get(HEAD_KEY) {
            Some((bytes, cas)) => (Head::decode(&bytes), Some(cas)),
            None => (Head::default(), None),
        };
        let recorded = head.record(request, now);
        // A missing key ignores the CAS in Envoy; 0 would make the write unconditional.
        if !store.set(HEAD_KEY, &head.encode(), Some(cas.unwrap_or(0))) {
            continue;
        }
        if let Some((seq, checkpoint)) = recorded.checkpoint
            && let Ok(bytes) = serde_json::to_vec(&checkpoint)
        {
            store.set(&checkpoint_key(seq), &bytes, None);
        }
        for seq in recorded.evicted {
            store.set(&checkpoint_key(seq), b"", None);
        }
        return true;
    }
    false
}

/// Claims the seeding of the process's persistent counters: returns the lifetime totals to add
/// to them when this caller is the first since the ledger was restored, `None` otherwise.
pub fn claim_metrics_seed(store: &dyn KeyValue) -> Option<Lifetime> {
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = store.get(HEAD_KEY)?;
        let mut head = Head::decode(&bytes);
        if head.metrics_seeded {
            return None;
        }
        head.metrics_seeded = true;
        if store.set(HEAD_KEY, &head.encode(), Some(cas)) {
            return Some(head.lifetime);
        }
    }
    None
}

/// Reads the whole ledger from shared data (a checkpoint whose key is not written yet is
/// skipped).
pub fn read_shared(store: &dyn KeyValue) -> Ledger {
    read_shared_tail(store, u64::MAX)
}

/// Reads the head and at most the newest `points` checkpoints: what `/stats` shows, without
/// reading and parsing thousands of checkpoints it does not.
pub fn read_shared_tail(store: &dyn KeyValue, points: u64) -> Ledger {
    let head = store
        .get(HEAD_KEY)
        .map(|(bytes, _)| Head::decode(&bytes))
        .unwrap_or_default();
    let from = head.next_seq.saturating_sub(points).max(head.first_seq);
    let history = (from..head.next_seq)
        .filter_map(|seq| store.get(&checkpoint_key(seq)))
        .filter_map(|(bytes, _)| serde_json::from_slice::<Checkpoint>(&bytes).ok())
        .collect();
    Ledger { head, history }
}

/// Replaces the shared ledger with `ledger` (a host restoring it before the first request).
pub fn write_shared(store: &dyn KeyValue, ledger: &Ledger) {
    let mut ledger = ledger.clone();
    ledger.normalize();
    for (seq, checkpoint) in ledger.history.iter().enumerate() {
        if let Ok(bytes) = serde_json::to_vec(checkpoint) {
            store.set(&checkpoint_key(seq as u64), &bytes, None);
        }
    }
    store.set(HEAD_KEY, &ledger.head.encode(), None);
}

/// Where the ledger is kept, as a host reports it (shared-data key [`STORAGE_KEY`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageInfo {
    /// The savings file, `None` when nothing persists the ledger (Envoy).
    pub storage_path: Option<String>,
    /// In memory only (`--stateless`).
    pub stateless: bool,
    /// Where an unreadable savings file was moved at start, if it was.
    pub corrupt_file_moved_to: Option<String>,
    /// Why it was unreadable.
    pub load_error: Option<String>,
    /// Whether the file came from the Python proxy (a schema other than 3).
    pub imported_schema: Option<u64>,
    /// When the file was last written (unix seconds).
    #[serde(with = "time::opt_rfc3339")]
    pub last_saved_at: Option<u64>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// Shared data as Envoy implements it: a missing key ignores the CAS.
    #[derive(Default)]
    pub(crate) struct MemoryKv(pub RefCell<HashMap<String, (Vec<u8>, u32)>>);

    impl KeyValue for MemoryKv {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let mut map = self.0.borrow_mut();
            match map.get_mut(key) {
                Some((v, token)) => {
                    if matches!(cas, Some(c) if c != 0 && c != *token) {
                        return false;
                    }
                    *v = value.to_vec();
                    *token += 1;
                }
                None => {
                    map.insert(key.to_owned(), (value.to_vec(), 1));
                }
            }
            true
        }
    }

    fn request(saved: u64, input: u64) -> RequestSavings {
        RequestSavings {
            provider: "openai".into(),
            model: "gpt-4o".into(),
            input_tokens: input,
            tokens_saved: saved,
            savings_usd: saved as f64 * 2.5e-6,
            input_cost_usd: input as f64 * 2.5e-6,
            ..RequestSavings::default()
        }
    }

    #[test]
    fn checkpoints_only_when_tokens_were_saved() {
        let mut head = Head::default();
        assert_eq!(head.record(&request(0, 100), 1000).checkpoint, None);
        let (seq, cp) = head
            .record(&request(40, 60), 1001)
            .checkpoint
            .unwrap_or_default();
        assert_eq!(seq, 0);
        assert_eq!(cp.total_tokens_saved, 40);
        assert_eq!(cp.total_input_tokens, 160);
        assert_eq!(head.lifetime.requests, 2);
        assert_eq!(head.display_session.savings_percent, 20.0);
    }

    #[test]
    fn persistent_counters_are_seeded_once() {
        let kv = MemoryKv::default();
        assert_eq!(claim_metrics_seed(&kv), None, "nothing restored");
        let mut ledger = Ledger::default();
        ledger.head.lifetime.requests = 7;
        write_shared(&kv, &ledger);
        assert_eq!(claim_metrics_seed(&kv).map(|l| l.requests), Some(7));
        assert_eq!(claim_metrics_seed(&kv), None, "claimed once");
        let fresh = MemoryKv::default();
        record_shared(&fresh, &request(1, 1), 5);
        assert_eq!(
            claim_metrics_seed(&fresh),
            None,
            "counted as it was recorded"
        );
    }

    #[test]
    fn session_rolls_over_after_an_hour_of_inactivity() {
        let mut head = Head::default();
        head.record(&request(10, 10), 0);
        head.record(&request(10, 10), 3600);
        assert_eq!(head.display_session.requests, 2, "exactly 60 min keeps it");
        head.record(&request(10, 10), 7201);
        assert_eq!(head.display_session.requests, 1);
        assert_eq!(head.display_session.started_at, Some(7201));
        assert_eq!(head.lifetime.requests, 3);
    }

    #[test]
    fn count_limit_evicts_the_oldest_keys() {
        let kv = MemoryKv::default();
        for i in 0..(MAX_HISTORY_POINTS + 3) {
            assert!(record_shared(&kv, &request(1, 1), 1_000 + i));
        }
        let ledger = read_shared(&kv);
        assert_eq!(ledger.history.len() as u64, MAX_HISTORY_POINTS);
        let tail = read_shared_tail(&kv, 3);
        let saved: Vec<u64> = tail.history.iter().map(|c| c.total_tokens_saved).collect();
        assert_eq!(saved, vec![5001, 5002, 5003]);
        assert_eq!(tail.head, ledger.head);
        assert_eq!(
            ledger.history.first().map(|c| c.total_tokens_saved),
            Some(4)
        );
        assert!(
            kv.get(&checkpoint_key(2))
                .is_some_and(|(v, _)| v.is_empty())
        );
        assert_eq!(ledger.head.lifetime.tokens_saved, MAX_HISTORY_POINTS + 3);
    }

    #[test]
    fn projects_are_sanitised_and_capped() {
        assert_eq!(sanitize_project(" my%20app\u{7}  "), Some("my app".into()));
        assert_eq!(sanitize_project("%0A "), None);
        // A stored name is never decoded again: what a header's escape produced stays.
        let stored = sanitize_project("a%2541\u{7f}%\u{7f}18b").unwrap();
        assert_eq!(stored, "a%41%18b");
        assert_eq!(clean_project_name(&stored), Some(stored.clone()));
        let mut head = Head::default();
        for i in 0..60u64 {
            let mut r = request(i, 1);
            r.project = Some(format!("p{i}"));
            head.record(&r, 100 + i);
        }
        assert_eq!(head.projects.len(), MAX_PROJECTS);
        assert!(head.projects.contains_key("p59"));
        assert!(!head.projects.contains_key("p0"));
    }

    #[test]
    fn normalize_applies_age_then_count() {
        let day = 86_400;
        let cp = |t: u64| Checkpoint {
            timestamp: t,
            ..Checkpoint::default()
        };
        let mut ledger = Ledger {
            head: Head::default(),
            history: vec![cp(400 * day), cp(10 * day), cp(30 * day)],
        };
        ledger.normalize();
        let times: Vec<u64> = ledger.history.iter().map(|c| c.timestamp).collect();
        assert_eq!(times, vec![400 * day]);
        assert_eq!(ledger.head.next_seq, 1);
    }
}
