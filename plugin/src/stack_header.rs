//! Stack identity (docs/upstream.md §8): the `X-Headroom-Stack` request header's bucketing
//! into a bounded set of slugs for `/stats.requests.by_stack` and
//! `headroom_requests_by_stack{stack}`, the process-level stack classification upstream's
//! telemetry reports (`detect_stack`), and which request headers are Headroom's own (the
//! filter strips every `x-headroom-*` header before forwarding).
//!
//! Upstream counts a request only when the header normalises to a valid slug: an absent,
//! empty or invalid header is not counted at all (the peer's `/stats` shows `by_stack: {}`
//! for traffic without the header), and once [`MAX_DISTINCT_STACKS`] slugs exist a new one is
//! dropped. Upstream counts only paths under `/v1/`; every API path the filter handles is.

use std::collections::BTreeMap;

/// The request header naming the integration that sent a request.
pub const STACK_HEADER: &str = "x-headroom-stack";

/// Most distinct slugs counted per process; a new slug beyond it is dropped (upstream's
/// `MAX_DISTINCT_STACKS`).
pub const MAX_DISTINCT_STACKS: usize = 32;

/// Longest valid slug.
pub const MAX_STACK_LEN: usize = 64;

/// The slug of [`detect_stack`] when requests come from no dominant stack.
pub const MIXED: &str = "mixed";

/// The slug of [`detect_stack`] when no stack is known.
pub const PROXY: &str = "proxy";

/// The slug of [`detect_stack`] for an agent type it does not know.
pub const UNKNOWN: &str = "unknown";

/// Agents `headroom wrap` knows; `HEADROOM_AGENT_TYPE=<agent>` maps to `wrap_<agent>`.
pub const KNOWN_WRAP_AGENTS: [&str; 7] = [
    "aider", "claude", "codex", "copilot", "cursor", "openclaw", "opencode",
];

/// Whitespace Python's `str.strip()` removes from a header value Starlette decoded as
/// Latin-1: ASCII whitespace, the separators 0x1C–0x1F, NEL (0x85) and NBSP (0xA0).
fn is_python_space(byte: u8) -> bool {
    matches!(
        byte,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ' | 0x85 | 0xa0
    )
}

/// Upstream's `normalize_stack`: trimmed, lower-cased, and valid only if it matches
/// `^[a-z][a-z0-9_]{0,63}$`; `None` otherwise (and for empty input). Non-ASCII bytes never
/// validate, as in upstream, where no Latin-1 character lower-cases to ASCII.
pub fn normalize_stack(raw: &[u8]) -> Option<String> {
    let start = raw.iter().position(|b| !is_python_space(*b))?;
    let end = raw.iter().rposition(|b| !is_python_space(*b))?;
    let slug = raw.get(start..=end)?.to_ascii_lowercase();
    let (first, rest) = slug.split_first()?;
    let valid = first.is_ascii_lowercase()
        && slug.len() <= MAX_STACK_LEN
        && rest
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if valid {
        String::from_utf8(slug).ok()
    } else {
        None
    }
}

/// The slug a request's `X-Headroom-Stack` value (`None` when absent) counts under, or `None`
/// when it is not counted (absent, empty or invalid). The distinct-slug cap is applied where
/// the counts live: [`admit_stack`] / [`record_stack`].
pub fn stack_bucket(header: Option<&[u8]>) -> Option<String> {
    header.and_then(normalize_stack)
}

/// Whether a request with `slug` is counted, given whether `slug` is already counted and how
/// many distinct slugs are: known slugs always, new ones while fewer than
/// [`MAX_DISTINCT_STACKS`] exist.
pub fn admit_stack(already_counted: bool, distinct: usize) -> bool {
    already_counted || distinct < MAX_DISTINCT_STACKS
}

/// Counts one request under `slug` in `counts` (a `by_stack` map), unless that would add a
/// slug beyond [`MAX_DISTINCT_STACKS`]. Returns whether it was counted.
pub fn record_stack(counts: &mut BTreeMap<String, u64>, slug: &str) -> bool {
    if let Some(count) = counts.get_mut(slug) {
        *count = count.saturating_add(1);
        return true;
    }
    if !admit_stack(false, counts.len()) {
        return false;
    }
    counts.insert(slug.to_owned(), 1);
    true
}

/// Upstream's `detect_stack`: how this Headroom is used, by precedence: `configured` (the
/// operator's explicit stack, upstream `HEADROOM_STACK`) if it is a valid slug; else
/// `agent_type` (upstream `HEADROOM_AGENT_TYPE`) if non-empty, as `wrap_<agent>` for a known
/// agent or `unknown`; else, from the request counts, the slug with at least 80% of requests
/// (upstream's code uses `>=`) or `mixed`; else `proxy`.
pub fn detect_stack(
    configured: Option<&str>,
    agent_type: Option<&str>,
    by_stack: &BTreeMap<String, u64>,
) -> String {
    if let Some(slug) = configured.and_then(|raw| normalize_stack(raw.as_bytes())) {
        return slug;
    }
    if let Some(agent) = agent_type.filter(|agent| !agent.is_empty()) {
        let agent = agent.trim().to_ascii_lowercase();
        return if KNOWN_WRAP_AGENTS.contains(&agent.as_str()) {
            format!("wrap_{agent}")
        } else {
            UNKNOWN.to_owned()
        };
    }
    let total: u128 = by_stack.values().map(|&count| u128::from(count)).sum();
    // The first of the most counted, as Python's `max` picks in its (insertion) order; ties
    // cannot reach 80% anyway.
    let dominant =
        by_stack
            .iter()
            .fold(None::<(&String, u64)>, |best, (slug, &count)| match best {
                Some((_, top)) if top >= count => best,
                _ => Some((slug, count)),
            });
    match dominant {
        Some((slug, count)) if total > 0 => {
            if u128::from(count) * 5 >= total * 4 {
                normalize_stack(slug.as_bytes()).unwrap_or_else(|| UNKNOWN.to_owned())
            } else {
                MIXED.to_owned()
            }
        }
        _ => PROXY.to_owned(),
    }
}

/// Whether a request header is Headroom's own (`x-headroom-` prefix, any case): such headers
/// are for the filter and are removed before the request goes upstream.
pub fn is_headroom_header(name: &[u8]) -> bool {
    const PREFIX: &[u8] = b"x-headroom-";
    name.get(..PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(PREFIX))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    #[test]
    fn buckets_header_values() {
        let long_ok = format!("a{}", "b".repeat(63));
        let too_long = format!("a{}", "b".repeat(64));
        let cases: Vec<(Option<&[u8]>, Option<&str>)> = vec![
            (None, None),
            (Some(b""), None),
            (Some(b"   "), None),
            (Some(b"wrap_claude"), Some("wrap_claude")),
            (Some(b"adapter_ts_openai"), Some("adapter_ts_openai")),
            (Some(b"  Wrap_Claude \t"), Some("wrap_claude")),
            (Some(b"ADAPTER_PY_ANTHROPIC"), Some("adapter_py_anthropic")),
            (Some(b"\xa0proxy\x85"), Some("proxy")),
            (Some(b"x"), Some("x")),
            (Some(b"a1_2"), Some("a1_2")),
            (Some(long_ok.as_bytes()), Some(long_ok.as_str())),
            (Some(too_long.as_bytes()), None),
            (Some(b"1abc"), None),
            (Some(b"_abc"), None),
            (Some(b"wrap-claude"), None),
            (Some(b"wrap claude"), None),
            (Some(b"wrap.claude"), None),
            (Some(b"wrap_claude\n"), Some("wrap_claude")),
            (Some(b"wrap_claude\nx"), None),
            (Some(b"caf\xe9"), None),
            (Some("caf\u{e9}".as_bytes()), None),
            (Some(b"\xff\xfe"), None),
            (Some(b"a{b=\"c\"}"), None),
        ];
        for (header, want) in cases {
            assert_eq!(
                stack_bucket(header).as_deref(),
                want,
                "{:?}",
                header.map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn record_caps_distinct_slugs() {
        let mut counts = BTreeMap::new();
        for i in 0..MAX_DISTINCT_STACKS {
            assert!(record_stack(&mut counts, &format!("stack_{i}")));
        }
        assert!(!record_stack(&mut counts, "one_too_many"));
        assert!(!counts.contains_key("one_too_many"));
        // Known slugs keep counting.
        assert!(record_stack(&mut counts, "stack_0"));
        assert_eq!(counts["stack_0"], 2);
        assert_eq!(counts.len(), MAX_DISTINCT_STACKS);
        assert!(admit_stack(true, MAX_DISTINCT_STACKS));
        assert!(!admit_stack(false, MAX_DISTINCT_STACKS));
        assert!(admit_stack(false, MAX_DISTINCT_STACKS - 1));
    }

    #[test]
    fn detects_stack_by_precedence() {
        let counts = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
        };
        let cases = [
            (Some(" My_Stack "), Some("claude"), counts(&[]), "my_stack"),
            (Some("bad-slug"), Some("claude"), counts(&[]), "wrap_claude"),
            (None, Some("Codex"), counts(&[]), "wrap_codex"),
            (None, Some("opencode"), counts(&[]), "wrap_opencode"),
            (None, Some("vim"), counts(&[("a", 9)]), "unknown"),
            (None, Some(""), counts(&[("a", 9), ("b", 1)]), "a"),
            (None, None, counts(&[("a", 8), ("b", 2)]), "a"),
            (None, None, counts(&[("a", 79), ("b", 21)]), "mixed"),
            (None, None, counts(&[("a", 40), ("b", 60)]), "mixed"),
            (None, None, counts(&[("wrap_claude", 1)]), "wrap_claude"),
            (None, None, counts(&[("a", 0)]), "proxy"),
            (None, None, BTreeMap::new(), "proxy"),
        ];
        for (configured, agent, by_stack, want) in cases {
            assert_eq!(
                detect_stack(configured, agent, &by_stack),
                want,
                "{configured:?} {agent:?} {by_stack:?}"
            );
        }
        let huge = counts(&[("a", u64::MAX), ("b", 1)]);
        assert_eq!(detect_stack(None, None, &huge), "a");
    }

    #[test]
    fn recognises_headroom_headers() {
        let cases: [(&[u8], bool); 9] = [
            (b"x-headroom-stack", true),
            (b"X-Headroom-Stack", true),
            (b"X-HEADROOM-PROJECT", true),
            (b"x-headroom-", true),
            (b"x-headroom", false),
            (b"x-headroomz-a", false),
            (b"headroom-stack", false),
            (b"content-type", false),
            (b"", false),
        ];
        for (name, want) in cases {
            assert_eq!(
                is_headroom_header(name),
                want,
                "{:?}",
                String::from_utf8_lossy(name)
            );
        }
        assert!(is_headroom_header(STACK_HEADER.as_bytes()));
    }
}
