//! SmartCrusher for JSON: rewrites any JSON value compactly, and for each array of at least
//! `min_items` items chooses, in this order:
//!
//! 1. **Lossless table form** for arrays of objects that share one key sequence, when it saves
//!    at least `table_min_savings` of the bytes:
//!    `{"headroom_columns":["id","status"],"rows":[[1,"ok"],[2,"error"]]}`.
//! 2. **Lossy selection** only when a signal says which items matter: error rows (truthy
//!    `error` fields, `ok:false`, HTTP status ≥ 400, a status, state or level holding an error
//!    word: always kept; error words elsewhere in the text: only when few items have them),
//!    anomalies (rare keys, rare categorical values and templates, numeric outliers: together
//!    at most a twentieth of the items, the most specific first), a score field, relevance to
//!    the latest user text (BM25), or duplicates. Signalled items, and a sample of the first
//!    and last items and an even spread up to the adaptive count within a byte budget
//!    ([`SAMPLE_BUDGET_PERCENT`] of the array), are kept in order; one marker (as the table's
//!    `"omitted"` member or a final string item) says how many items were left out.
//!
//! Nested values are processed recursively (rows keep their own nested arrays compressed).
//! Scalars are copied byte for byte (numbers keep their spelling). Output is valid JSON, and
//! compressing it again changes nothing: tables and marked texts are never reprocessed.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::fixed_hash::{FixedMap, FixedSet};
use crate::tokens::hash_bytes;

use super::adaptive::{Novelty, keep_count, novelty};
use super::config::PipelineConfig;
use super::hash::ContentHash;
use super::marker::{Marker, contains_marker, count_of};
use super::relevance::Query;
use super::short_eq::same_str;
use super::signals::{has_error_word, numeric_outliers, rare_templates, rare_values};
use crate::json::{Document, Kind, Value, encode_string, minify_bounded};

/// The unsignalled sample of a reduced array (first, last and evenly spread items) keeps at
/// most this percentage of the array's compact bytes, or [`MIN_SAMPLE_BYTES`] when that is
/// more; signalled items (errors, anomalies, relevant ones) are never limited by it.
pub const SAMPLE_BUDGET_PERCENT: usize = 2;

/// The sample's byte budget is at least this: small arrays keep their adaptive count.
pub const MIN_SAMPLE_BYTES: usize = 4096;

/// The key that marks a table object (which is never reprocessed).
pub const TABLE_KEY: &str = "headroom_columns";

/// What [`crush`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crushed {
    /// The new JSON text.
    pub text: String,
    /// Arrays rewritten as tables.
    pub tables: usize,
    /// Arrays reduced by lossy selection.
    pub reduced: usize,
    /// Items left out in total.
    pub omitted: usize,
    /// Arrays written compactly as they are, without table form or selection, because they
    /// lie more than [`MAX_NESTED_ARRAYS`] processed arrays deep.
    pub too_deep: usize,
    /// Why the items of reduced arrays were kept.
    pub kept: KeptItems,
}

/// The items reduced arrays kept, by the first reason that holds (in this order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeptItems {
    /// Error rows (an error field, or rare error words).
    pub errors: usize,
    /// Items relevant to the question.
    pub relevant: usize,
    /// Anomalies: rare keys, values, templates, outliers, top scores.
    pub anomalies: usize,
    /// The sample: first, last and evenly spread items.
    pub sample: usize,
}

impl KeptItems {
    /// The manifest's words, or `None` when no array was reduced.
    pub fn describe(&self) -> Option<String> {
        let total = self.errors + self.relevant + self.anomalies + self.sample;
        (total > 0).then(|| {
            format!(
                "over the reduced arrays, kept {} error items, {} items relevant to the \
                 question, {} anomalies (rare keys, values or templates, outliers), {} sample \
                 items (first, last, spread within {} % of the bytes)",
                self.errors, self.relevant, self.anomalies, self.sample, SAMPLE_BUDGET_PERCENT
            )
        })
    }
}

/// How many processed arrays (of at least `min_items` items) may enclose one another. Each
/// such level renders and examines the whole of its items (relevance, novelty, duplicates,
/// error rows), so nested ones multiply the work by their depth (up to the parser's 256);
/// deeper arrays are copied compactly as they are (lossless), which keeps a crush linear: at
/// most this many passes over any byte, whatever the nesting. Real tool outputs nest processed
/// arrays far less (records holding lists: two; GeoJSON features, polygons, points: three).
pub const MAX_NESTED_ARRAYS: usize = 6;

impl Crushed {
    /// A short description for the manifest.
    pub fn strategy(&self) -> &'static str {
        match (self.reduced > 0, self.tables > 0) {
            (true, _) => "json:select",
            (false, true) => "json:table",
            (false, false) => "json:compact",
        }
    }
}

struct Ctx<'a> {
    config: &'a PipelineConfig,
    query: &'a Query,
    hash: ContentHash,
    tables: usize,
    reduced: usize,
    omitted: usize,
    too_deep: usize,
    kept: KeptItems,
    /// Processed arrays enclosing the value being written.
    nested_arrays: usize,
}

/// Crushes the JSON `text`; `None` when it is not a JSON object or array or already carries a
/// marker. `hash` is the content hash of the whole block, named by markers.
pub fn crush(
    text: &str,
    config: &PipelineConfig,
    query: &Query,
    hash: ContentHash,
) -> Option<Crushed> {
    if contains_marker(text) {
        return None;
    }
    let doc =
        Document::parse_str_bounded(text.trim(), config.max_json_depth, config.max_json_values)
            .ok()?;
    crush_parsed(text, &doc, config, query, hash)
}

/// [`crush`] with `text.trim()` already parsed (by detection) into `doc`.
pub(crate) fn crush_parsed(
    text: &str,
    doc: &Document<'_>,
    config: &PipelineConfig,
    query: &Query,
    hash: ContentHash,
) -> Option<Crushed> {
    if contains_marker(text) {
        return None;
    }
    let root = doc.root();
    if !matches!(root.kind(), Kind::Object | Kind::Array) {
        return None;
    }
    let mut ctx = Ctx {
        config,
        query,
        hash,
        tables: 0,
        reduced: 0,
        omitted: 0,
        too_deep: 0,
        kept: KeptItems::default(),
        nested_arrays: 0,
    };
    let mut out = String::with_capacity(text.len() / 2);
    write_value(&mut ctx, root, &mut out, &Path::Root);
    Some(Crushed {
        text: out,
        tables: ctx.tables,
        reduced: ctx.reduced,
        omitted: ctx.omitted,
        too_deep: ctx.too_deep,
        kept: ctx.kept,
    })
}

/// Where a value is (`$.page.results[*].id`), rendered only when a marker names it.
enum Path<'p> {
    Root,
    Member(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
    Each(&'p Path<'p>),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Member(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
            Path::Each(parent) => write!(f, "{parent}[*]"),
        }
    }
}

fn write_value(ctx: &mut Ctx<'_>, value: Value<'_>, out: &mut String, path: &Path<'_>) {
    match value.kind() {
        Kind::Object => {
            if is_table(value) {
                let raw = value.raw();
                out.push_str(&minify_bounded(raw, u32::MAX).unwrap_or_else(|| raw.to_owned()));
                return;
            }
            out.push('{');
            for (i, (key, member)) in value.members().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(key);
                out.push(':');
                let name = key_name(key);
                write_value(ctx, member, out, &Path::Member(path, name));
            }
            out.push('}');
        }
        Kind::Array => {
            let items: Vec<Value<'_>> = value.elements().collect();
            let processed = items.len() >= ctx.config.min_items.max(2);
            if processed && ctx.nested_arrays < MAX_NESTED_ARRAYS {
                ctx.nested_arrays += 1;
                write_array(ctx, &items, out, path);
                ctx.nested_arrays -= 1;
            } else {
                ctx.too_deep += usize::from(processed);
                out.push('[');
                for (i, item) in items.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_value(ctx, item, out, &Path::Index(path, i));
                }
                out.push(']');
            }
        }
        _ => out.push_str(value.raw()),
    }
}

fn is_table(value: Value<'_>) -> bool {
    value.members().next().is_some_and(|(key, _)| {
        // The raw key, quotes included (no allocation: this runs for every object).
        key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) == Some(TABLE_KEY)
    })
}

/// One array item, rendered.
struct Item<'d> {
    value: Value<'d>,
    /// Compact rendering of the whole item.
    text: Cow<'d, str>,
    /// For objects: raw keys and rendered member values, in order.
    cells: Vec<(&'d str, Cow<'d, str>)>,
}

/// The compact rendering of `value`: a scalar is its own source text (borrowed, so an array
/// of millions of numbers allocates nothing per item), a container is written out.
fn render<'d>(ctx: &mut Ctx<'_>, value: Value<'d>, path: &Path<'_>) -> Cow<'d, str> {
    if matches!(value.kind(), Kind::Object | Kind::Array) {
        // The compact form is at most its source's length, unless a nested array left a marker.
        let mut out = String::with_capacity(value.raw().len());
        write_value(ctx, value, &mut out, path);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(value.raw())
    }
}

fn write_array(ctx: &mut Ctx<'_>, values: &[Value<'_>], out: &mut String, path: &Path<'_>) {
    let item_path = Path::Each(path);
    // Records in an array mostly have the same members: each item's cells are sized by the
    // item before it, which saves growing every item's vector a few times.
    let mut cells_hint = 0;
    let items: Vec<Item<'_>> = values
        .iter()
        .map(|&value| {
            let mut cells = Vec::with_capacity(cells_hint);
            if value.kind() == Kind::Object && !is_table(value) {
                for (key, member) in value.members() {
                    let name = key_name(key);
                    let rendered = render(ctx, member, &Path::Member(&item_path, name));
                    cells.push((key, rendered));
                }
            }
            cells_hint = cells.len();
            let text = if cells.is_empty() {
                render(ctx, value, &item_path)
            } else {
                let mut text = String::with_capacity(value.raw().len());
                text.push('{');
                for (i, (key, cell)) in cells.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    text.push_str(key);
                    text.push(':');
                    text.push_str(cell);
                }
                text.push('}');
                Cow::Owned(text)
            };
            Item { value, text, cells }
        })
        .collect();
    let n = items.len();
    let selection = if ctx.config.lossy {
        select(ctx, &items)
    } else {
        None
    };
    let keep = selection.map(|(mask, why)| {
        ctx.kept.errors += why.errors;
        ctx.kept.relevant += why.relevant;
        ctx.kept.anomalies += why.anomalies;
        ctx.kept.sample += why.sample;
        mask
    });
    let kept: Vec<&Item<'_>> = match &keep {
        Some(mask) => items
            .iter()
            .zip(mask)
            .filter(|(_, k)| **k)
            .map(|(i, _)| i)
            .collect(),
        None => items.iter().collect(),
    };
    let omitted = n - kept.len();
    let marker = (omitted > 0).then(|| {
        Marker::new(
            ctx.hash,
            format!("{} at {path}", count_of(omitted, n, "items")),
        )
        .render()
    });
    let array_form = render_array(&kept, marker.as_deref());
    let table_form = render_table(&kept, marker.as_deref());
    let use_table = table_form.as_ref().is_some_and(|table| {
        let saved = 1.0 - table.len() as f64 / array_form.len().max(1) as f64;
        saved >= ctx.config.table_min_savings
    });
    if omitted > 0 {
        ctx.reduced += 1;
        ctx.omitted += omitted;
    }
    match table_form {
        Some(table) if use_table => {
            ctx.tables += 1;
            out.push_str(&table);
        }
        _ => out.push_str(&array_form),
    }
}

fn render_array(items: &[&Item<'_>], marker: Option<&str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item.text);
    }
    if let Some(marker) = marker {
        if !items.is_empty() {
            out.push(',');
        }
        out.push_str(&encode_string(marker));
    }
    out.push(']');
    out
}

/// The table form, when every item is an object with the same keys in the same order (two or
/// more keys, no duplicates).
fn render_table(items: &[&Item<'_>], marker: Option<&str>) -> Option<String> {
    let first = items.first()?;
    let keys: Vec<&str> = first.cells.iter().map(|(k, _)| *k).collect();
    let distinct: BTreeSet<&str> = keys.iter().copied().collect();
    if keys.len() < 2 || distinct.len() != keys.len() {
        return None;
    }
    if !items.iter().all(|item| {
        item.cells.len() == keys.len() && item.cells.iter().zip(&keys).all(|((k, _), key)| k == key)
    }) {
        return None;
    }
    let mut out = format!("{{\"{TABLE_KEY}\":[{}],\"rows\":[", keys.join(","));
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        for (j, (_, cell)) in item.cells.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(cell);
        }
        out.push(']');
    }
    out.push(']');
    if let Some(marker) = marker {
        out.push_str(",\"omitted\":");
        out.push_str(&encode_string(marker));
    }
    out.push('}');
    Some(out)
}

/// Marks `indices` in `flagged`; true (the signal fired).
fn flag_all(indices: &[usize], flagged: &mut [bool]) -> bool {
    for &i in indices {
        if let Some(slot) = flagged.get_mut(i) {
            *slot = true;
        }
    }
    true
}

/// Which items to keep, or `None` to keep all (no signal, or nothing would be left out).
fn select(ctx: &Ctx<'_>, items: &[Item<'_>]) -> Option<(Vec<bool>, KeptItems)> {
    let n = items.len();
    let mut flagged = vec![false; n];
    let mut any_signal = false;
    let flag = |indices: &[usize], flagged: &mut Vec<bool>| {
        // A signal that fires for most items does not say which ones matter.
        if indices.is_empty() || indices.len() * 2 > n {
            return false;
        }
        flag_all(indices, flagged)
    };
    // Field signals (rare keys, rare values and templates, outliers) mark anomalies: one that
    // fires for more than a tenth of the items (and more than two) marks a second population,
    // not anomalies (mixed event records: every event type would be "rare").
    let flag_field = |indices: &[usize], flagged: &mut Vec<bool>| {
        if indices.is_empty() || (indices.len() > 2 && indices.len() * 10 > n) {
            return false;
        }
        flag_all(indices, flagged)
    };
    let marks: Vec<ErrorMark> = items.iter().map(|item| error_mark(item.value)).collect();
    let with = |mark: ErrorMark| -> Vec<usize> {
        (0..n).filter(|&i| marks.get(i) == Some(&mark)).collect()
    };
    any_signal |= flag(&with(ErrorMark::Field), &mut flagged);
    any_signal |= flag_field(&with(ErrorMark::Words), &mut flagged);
    let errors = flagged.clone();
    // Together, field signals mark at most a twentieth of the items (at least 3) and of the
    // bytes (a rare `readme` spelling on the largest records is not worth a tenth of them): the most
    // specific signals (fewest items) first, a whole size at a time (no arbitrary choice
    // among equals). Several rare-value columns would otherwise add up to a quarter of a
    // mixed array, and a key of its own in every item marks nothing.
    let mut fields: Vec<Vec<usize>> = field_signals(items)
        .into_iter()
        .filter(|indices| !(indices.is_empty() || (indices.len() > 2 && indices.len() * 10 > n)))
        .collect();
    fields.sort_by_key(Vec::len);
    let field_budget = (n / 20).max(3);
    let bytes_budget = items.iter().map(|i| i.text.len() + 1).sum::<usize>() / 20;
    let mut field_bytes = 0usize;
    let mut field_flagged = vec![false; n];
    let mut field_count = 0usize;
    let mut at = 0;
    while let Some(size) = fields.get(at).map(Vec::len) {
        let class_end = at
            + fields.get(at..).map_or(0, |rest| {
                rest.iter().take_while(|f| f.len() == size).count()
            });
        let class = fields.get(at..class_end).unwrap_or_default();
        let mut added = Vec::new();
        for indices in class {
            for &i in indices {
                if let Some(slot) = field_flagged.get_mut(i)
                    && !*slot
                {
                    *slot = true;
                    added.push(i);
                }
            }
        }
        // Error items are kept whatever the budget says: they cost it nothing (an error row
        // that is also a rare template must not crowd out the one anomaly beside it).
        let costs: Vec<usize> = added
            .iter()
            .copied()
            .filter(|&i| errors.get(i) != Some(&true))
            .collect();
        let added_bytes: usize = costs
            .iter()
            .filter_map(|&i| items.get(i))
            .map(|item| item.text.len() + 1)
            .sum();
        if field_count + costs.len() > field_budget || field_bytes + added_bytes > bytes_budget {
            // This size does not fit: neither do larger ones.
            for i in added {
                if let Some(slot) = field_flagged.get_mut(i) {
                    *slot = false;
                }
            }
            break;
        }
        field_count += costs.len();
        field_bytes += added_bytes;
        any_signal |= flag_all(&added, &mut flagged) && !added.is_empty();
        at = class_end;
    }
    if items.iter().all(|i| i.value.kind() == Kind::Number) {
        let values: Vec<Option<f64>> = items.iter().map(|i| i.value.raw().parse().ok()).collect();
        any_signal |= flag_field(&numeric_outliers(&values), &mut flagged);
    }
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_ref()).collect();
    // With a signal already fired the selection is lossy and needs novelty: BM25's walk over
    // the items' words counts it too. Otherwise it is counted below only if needed.
    let (relevant, counted) = if any_signal {
        let mut counter = Novelty::default();
        let relevant = ctx
            .query
            .relevant_feeding(&texts, ctx.config.max_items, &mut counter);
        (relevant, Some(counter))
    } else {
        (ctx.query.relevant(&texts, ctx.config.max_items), None)
    };
    any_signal |= flag(&relevant, &mut flagged);
    let mut is_relevant = vec![false; n];
    if !relevant.is_empty() && relevant.len() * 2 <= n {
        flag_all(&relevant, &mut is_relevant);
    }
    // Duplicates: low uniqueness says the repeats can go.
    let duplicate = repeats(&texts);
    let duplicates = duplicate.iter().filter(|d| **d).count();
    // Only whole records repeat meaninglessly; repeated numbers, booleans or nulls are data.
    let records = items
        .iter()
        .all(|i| matches!(i.value.kind(), Kind::Object | Kind::String));
    let dedupe = records && duplicates * 4 >= n;
    if !any_signal && !dedupe {
        return None;
    }
    let k = keep_count(
        n,
        counted.map_or_else(|| novelty(&texts), |counter| counter.fraction()),
        ctx.config.effective_bias(),
        3,
        ctx.config.max_items,
    );
    let mut keep: Vec<bool> = flagged
        .iter()
        .zip(&duplicate)
        .map(|(f, d)| *f && !(*d && dedupe))
        .collect();
    // The unsignalled sample (the first items, the last ones, an even spread up to k) shares
    // a byte budget: large records cost a lot each, and only the signalled ones were asked
    // for. The first item always stays (it shows the shape).
    let total_bytes: usize = items.iter().map(|i| i.text.len() + 1).sum();
    let budget = (total_bytes / 100 * SAMPLE_BUDGET_PERCENT).max(MIN_SAMPLE_BYTES);
    let mut sample_bytes = 0usize;
    let mut admit = |i: usize, keep: &mut Vec<bool>| -> bool {
        let cost = items.get(i).map_or(0, |item| item.text.len() + 1);
        if keep.get(i) == Some(&true) {
            return false;
        }
        if i > 0 && sample_bytes + cost > budget {
            return false;
        }
        sample_bytes += cost;
        if let Some(slot) = keep.get_mut(i) {
            *slot = true;
        }
        true
    };
    let front = (k * 3).div_ceil(10).max(1);
    let back = (k * 15).div_ceil(100).max(1);
    for i in (0..front.min(n)).chain(n.saturating_sub(back)..n) {
        if !(dedupe && duplicate.get(i) == Some(&true)) || i == 0 {
            admit(i, &mut keep);
        }
    }
    // Fill evenly up to k with items not yet kept (skipping repeats when deduplicating).
    let mut kept = keep.iter().filter(|k| **k).count();
    if kept < k {
        let candidates: Vec<usize> = (0..n)
            .filter(|&i| {
                keep.get(i) == Some(&false) && !(dedupe && duplicate.get(i) == Some(&true))
            })
            .collect();
        let need = (k - kept).min(candidates.len());
        for step in 0..need {
            let at = step * candidates.len() / need + candidates.len() / (2 * need);
            let pick = candidates.get(at.min(candidates.len().saturating_sub(1)));
            if let Some(&i) = pick
                && admit(i, &mut keep)
            {
                kept += 1;
            }
        }
    }
    let mut why = KeptItems::default();
    for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
        let at = |mask: &[bool]| mask.get(i) == Some(&true);
        if at(&errors) {
            why.errors += 1;
        } else if at(&is_relevant) {
            why.relevant += 1;
        } else if at(&flagged) {
            why.anomalies += 1;
        } else {
            why.sample += 1;
        }
    }
    (kept < n).then_some((keep, why))
}

/// Which of `texts` repeat an earlier one.
///
/// Only looked up, so hash maps (items share long prefixes, which makes ordered comparisons
/// slow). A text first goes by a fast hash of its bytes: one whose fast hash no other text has
/// repeats nothing, and only texts sharing one are hashed again with SipHash and compared (so a
/// body built to collide on the fast hash costs what every body cost before). Most items are
/// distinct, so most are hashed once, by the fast hash, instead of with SipHash.
fn repeats(texts: &[&str]) -> Vec<bool> {
    let fast: Vec<u64> = texts.iter().map(|t| hash_bytes(t.as_bytes())).collect();
    let mut sharing: FixedMap<u64, bool> = FixedMap::default();
    for &h in &fast {
        sharing
            .entry(h)
            .and_modify(|shared| *shared = true)
            .or_insert(false);
    }
    let mut first_seen: FixedSet<&str> = FixedSet::default();
    texts
        .iter()
        .zip(&fast)
        .map(|(text, h)| sharing.get(h) == Some(&true) && !first_seen.insert(text))
        .collect()
}

/// How an item reports an error, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ErrorMark {
    None,
    /// An error word somewhere in its text (a description saying "error handling", a licence
    /// `WITH LLVM-exception`): an anomaly only when few items have one.
    Words,
    /// A field that says so: a truthy `error`-like member, `ok`/`success` false, an HTTP-like
    /// status of 400 or more, or a status, state, level or outcome holding an error word.
    Field,
}

/// A member's raw key without its quotes: exactly `key.trim_matches('"')`, byte by byte. Keys
/// are trimmed for every member the selection reads, and std's char-pattern trim decodes each
/// character through its generic searcher (1.3 % of the guest's JSON request path).
fn key_name(key: &str) -> &str {
    super::lines::trim_ascii_bytes(key, |b| b == b'"')
}

/// How one item reports an error (the strongest mark in it).
fn error_mark(value: Value<'_>) -> ErrorMark {
    match value.kind() {
        Kind::String => {
            if value.decode_str().is_ok_and(|s| has_error_word(&s)) {
                ErrorMark::Words
            } else {
                ErrorMark::None
            }
        }
        Kind::Array => value
            .elements()
            .map(error_mark)
            .max()
            .unwrap_or(ErrorMark::None),
        Kind::Object => value
            .members()
            .map(|(key, member)| {
                let key = key_name(key);
                let key_is =
                    |names: &[&str]| names.iter().any(|name| key.eq_ignore_ascii_case(name));
                let truthy = || match member.kind() {
                    Kind::Null => false,
                    Kind::Bool => member.raw() == "true",
                    Kind::String => member.raw().len() > 2,
                    Kind::Number => member.raw().parse::<f64>().is_ok_and(|x| x != 0.0),
                    Kind::Array | Kind::Object => member.children().next().is_some(),
                };
                let error_key = key_is(&[
                    "error",
                    "errors",
                    "err",
                    "exception",
                    "failure",
                    "stacktrace",
                    "stack_trace",
                    "traceback",
                ]);
                let failed_flag =
                    key_is(&["ok", "success", "succeeded", "passed"]) && member.raw() == "false";
                let status_key =
                    key_is(&["status", "status_code", "statuscode", "http_status", "code"]);
                let status = status_key
                    && member.kind() == Kind::Number
                    && member
                        .raw()
                        .parse::<u32>()
                        .is_ok_and(|s| (400..600).contains(&s));
                let state = (status_key
                    || key_is(&[
                        "state",
                        "level",
                        "severity",
                        "result",
                        "outcome",
                        "conclusion",
                    ]))
                    && member.kind() == Kind::String
                    && member.decode_str().is_ok_and(|s| has_error_word(&s));
                if (error_key && truthy()) || failed_flag || status || state {
                    ErrorMark::Field
                } else {
                    error_mark(member)
                }
            })
            .max()
            .unwrap_or(ErrorMark::None),
        _ => ErrorMark::None,
    }
}

/// The items' members by key, in key order: each key's (item index, value) pairs, in item
/// order; a key repeated within one item keeps its last value.
///
/// Records list their keys in the same order, so an item's `j`-th member is first tried
/// against the column the previous object's `j`-th member went to: most members skip the map.
fn columns<'d>(items: &[Item<'d>]) -> Vec<(&'d str, Vec<(usize, Value<'d>)>)> {
    let mut columns: Vec<(&'d str, Vec<(usize, Value<'d>)>)> = Vec::new();
    let mut by_key: FixedMap<&'d str, usize> = FixedMap::default();
    // The column of each member of the last object, by member position.
    let mut order: Vec<usize> = Vec::new();
    let mut next_order: Vec<usize> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if item.value.kind() != Kind::Object {
            continue;
        }
        next_order.clear();
        for (j, (key, member)) in item.value.members().enumerate() {
            let hinted = order
                .get(j)
                .copied()
                .filter(|&c| columns.get(c).is_some_and(|(k, _)| same_str(k, key)));
            let at = match hinted {
                Some(c) => c,
                None => *by_key.entry(key).or_insert_with(|| {
                    columns.push((key, Vec::new()));
                    columns.len() - 1
                }),
            };
            next_order.push(at);
            if let Some((_, column)) = columns.get_mut(at) {
                // A duplicate key within one item: the last value wins, as it always has.
                match column.last_mut() {
                    Some((seen, value)) if *seen == i => *value = member,
                    _ => column.push((i, member)),
                }
            }
        }
        std::mem::swap(&mut order, &mut next_order);
    }
    columns.sort_unstable_by(|a, b| a.0.cmp(b.0));
    columns
}

/// Per-field signals of an array of objects: rare keys, rare categorical values, numeric
/// outliers, and the top items by a score field.
///
/// Each column holds only the items that have the field (index and value, in item order), so
/// the work is linear in the members however many distinct keys the items have (dense columns
/// cost items × keys). Every signal below looks only at the items holding a value; its
/// indices into a column are mapped back to item indices.
fn field_signals(items: &[Item<'_>]) -> Vec<Vec<usize>> {
    let fields = columns(items);
    let objects = items
        .iter()
        .filter(|i| i.value.kind() == Kind::Object)
        .count();
    let mut signals = Vec::new();
    for (key, column) in fields {
        let present: Vec<usize> = column.iter().map(|(i, _)| *i).collect();
        let to_items = |indices: Vec<usize>| -> Vec<usize> {
            indices
                .into_iter()
                .filter_map(|k| present.get(k).copied())
                .collect()
        };
        // A key that few items have marks those items (an `error` member on 2 of 200 rows).
        if objects >= 5 && present.len() * 5 < objects {
            signals.push(present.clone());
        }
        let numbers: Vec<Option<f64>> = column
            .iter()
            .map(|(_, v)| {
                Some(*v)
                    .filter(|v| v.kind() == Kind::Number)
                    .and_then(|v| v.raw().parse().ok())
            })
            .collect();
        let categorical = column.iter().map(|(_, v)| {
            Some(*v)
                .filter(|v| matches!(v.kind(), Kind::String | Kind::Bool) && v.raw().len() <= 40)
                .map(|v| v.raw())
        });
        let name = key_name(key).to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "score" | "_score" | "relevance" | "relevance_score" | "similarity" | "confidence"
        ) {
            let mut scored: Vec<(usize, f64)> = numbers
                .iter()
                .enumerate()
                .filter_map(|(k, v)| v.map(|x| (k, x)))
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let top: Vec<usize> = scored.iter().take(5).map(|(k, _)| *k).collect();
            if scored.len() >= 5 {
                signals.push(to_items(top));
            }
        }
        signals.push(to_items(numeric_outliers(&numbers)));
        signals.push(to_items(rare_values(categorical)));
        // Free-text values with numbers in them ("heartbeat ping 17") are all distinct; their
        // templates are not, and a rare template ("checkpoint saved at step 4500") matters.
        let free_text = column.iter().map(|(_, v)| {
            Some(*v)
                .filter(|v| v.kind() == Kind::String && v.raw().len() <= 240)
                .map(|v| v.raw())
        });
        signals.push(to_items(rare_templates(free_text)));
    }
    signals
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn run(text: &str, query: &str) -> Crushed {
        crush(
            text,
            &PipelineConfig::default(),
            &Query::new(query),
            ContentHash::of(text.as_bytes()),
        )
        .unwrap()
    }

    proptest::proptest! {
        /// Texts that repeat, differ in one byte, or are empty: the same marks as one map of
        /// every text.
        #[test]
        fn repeats_are_the_reference(
            texts in proptest::collection::vec("(ab|abc|a|b|)(x{0,9})(1|2)?", 0..40)
        ) {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let mut seen = std::collections::BTreeSet::new();
            let reference: Vec<bool> = texts.iter().map(|t| !seen.insert(*t)).collect();
            proptest::prop_assert_eq!(repeats(&texts), reference);
        }
    }

    proptest::proptest! {
        /// A key's name is what trimming its quotes gave: quoted keys, escaped quotes at
        /// either end, keys of quotes only, and multi-byte characters beside them.
        #[test]
        fn a_key_name_is_the_trimmed_key(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["\"", "\\\"", "a", "é", "", " ", "k\"y"]),
                0..8,
            )
        ) {
            let key: String = parts.concat();
            proptest::prop_assert_eq!(key_name(&key), key.trim_matches('"'));
        }
    }

    /// `columns` as it was: every member through an ordered map by key.
    fn reference_columns<'d>(items: &[Item<'d>]) -> Vec<(&'d str, Vec<(usize, Value<'d>)>)> {
        let mut fields: std::collections::BTreeMap<&str, Vec<(usize, Value<'_>)>> =
            Default::default();
        for (i, item) in items.iter().enumerate() {
            if item.value.kind() != Kind::Object {
                continue;
            }
            for (key, member) in item.value.members() {
                let column = fields.entry(key).or_default();
                match column.last_mut() {
                    Some((at, value)) if *at == i => *value = member,
                    _ => column.push((i, member)),
                }
            }
        }
        fields.into_iter().collect()
    }

    proptest::proptest! {
        /// Records with their keys in one order, in another, missing, repeated within an
        /// item, and items that are no objects: the same columns as the ordered map.
        #[test]
        fn columns_are_the_reference(
            shapes in proptest::collection::vec(
                proptest::option::weighted(0.9, proptest::collection::vec((0usize..6, 0u8..3), 0..7)),
                0..30,
            )
        ) {
            let text = format!(
                "[{}]",
                shapes
                    .iter()
                    .map(|shape| match shape {
                        None => "7".to_string(),
                        Some(members) => format!(
                            "{{{}}}",
                            members
                                .iter()
                                .map(|(k, v)| format!("\"k{k}\":{v}"))
                                .collect::<Vec<_>>()
                                .join(",")
                        ),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let doc = Document::parse(text.as_bytes(), 8).unwrap();
            let items: Vec<Item<'_>> = doc
                .root()
                .elements()
                .map(|value| Item { value, text: Cow::Borrowed(""), cells: Vec::new() })
                .collect();
            let raw = |columns: Vec<(&str, Vec<(usize, Value<'_>)>)>| -> Vec<(String, Vec<(usize, String)>)> {
                columns
                    .into_iter()
                    .map(|(k, c)| (k.to_string(), c.into_iter().map(|(i, v)| (i, v.raw().to_string())).collect()))
                    .collect()
            };
            proptest::prop_assert_eq!(raw(columns(&items)), raw(reference_columns(&items)));
        }
    }

    fn rows(n: usize, f: impl Fn(usize) -> String) -> String {
        format!("[{}]", (0..n).map(f).collect::<Vec<_>>().join(", "))
    }

    #[test]
    fn uniform_rows_without_signal_become_a_table() {
        let text = rows(30, |i| {
            format!(
                r#"{{"id": {i}, "name": "user{i}", "team": "t{}"}}"#,
                i * 7 % 13
            )
        });
        let out = run(&text, "");
        assert_eq!(out.strategy(), "json:table");
        assert!(
            out.text.starts_with(
                r#"{"headroom_columns":["id","name","team"],"rows":[[0,"user0","t0"]"#
            )
        );
        assert_eq!(out.omitted, 0);
        // Idempotent.
        assert_eq!(run(&out.text, "").text, out.text);
    }

    #[test]
    fn error_rows_are_kept_and_the_rest_marked() {
        let text = rows(200, |i| {
            let status = if i == 57 || i == 133 { "error" } else { "ok" };
            format!(
                r#"{{"id": {i}, "status": "{status}", "latency_ms": {}}}"#,
                20 + i % 5
            )
        });
        let out = run(&text, "");
        assert_eq!(out.strategy(), "json:select");
        assert!(out.text.contains(r#"[57,"error",22]"#), "{}", out.text);
        assert!(out.text.contains(r#"[133,"error",23]"#));
        assert!(out.text.contains("[0,\"ok\",20]") && out.text.contains("[199,"));
        assert!(out.text.contains("<<headroom:"));
        assert!(out.omitted > 150);
        serde_json::from_str::<serde_json::Value>(&out.text).unwrap();
        assert!(
            crush(
                &out.text,
                &PipelineConfig::default(),
                &Query::default(),
                ContentHash::of(b"x")
            )
            .is_none()
        );
    }

    #[test]
    fn nested_arrays_inside_objects_are_found() {
        let inner = rows(100, |i| {
            let extra = if i == 42 {
                r#", "error": "disk full""#
            } else {
                ""
            };
            format!(r#"{{"id": {i}, "v": "x"{extra}}}"#)
        });
        let text = format!(r#"{{"total": 100, "page": {{"results": {inner}}}}}"#);
        let out = run(&text, "");
        assert!(out.text.starts_with(r#"{"total":100,"page":{"results":["#));
        assert!(out.text.contains("disk full"));
        assert!(out.text.contains("at $.page.results>>"));
    }

    #[test]
    fn query_relevance_and_outliers_are_signals() {
        let text = rows(100, |i| {
            format!(r#"{{"sku": "SKU-{i:04}", "qty": {}}}"#, 10 + i % 3)
        });
        let out = run(&text, "how many SKU-0077 do we have?");
        assert!(out.text.contains("SKU-0077"));
        let numbers = rows(60, |i| {
            if i == 30 {
                "9999".into()
            } else {
                format!("{}", 50 + i % 4)
            }
        });
        let out = run(&numbers, "");
        assert!(out.text.contains("9999") && out.omitted > 0);
    }

    #[test]
    fn unique_rows_without_signal_lose_nothing() {
        let text = rows(50, |i| {
            format!(r#"{{"word": "w{i}", "n": {i}, "extra": [1, 2]}}"#)
        });
        let out = run(&text, "");
        assert_eq!(out.omitted, 0);
        let lossless = PipelineConfig {
            lossy: false,
            ..PipelineConfig::default()
        };
        let errors = rows(50, |i| {
            format!(r#"{{"m": "{}"}}"#, if i == 3 { "error" } else { "fine" })
        });
        let out = crush(&errors, &lossless, &Query::default(), ContentHash::of(b"")).unwrap();
        assert_eq!(out.omitted, 0);
    }

    /// Issue 12: one column per distinct key used to hold a slot per item (items × keys).
    #[test]
    fn many_distinct_keys_cost_their_members_only() {
        for n in [1_000, 50_000] {
            let text = rows(n, |i| format!(r#"{{"k{i}": {i}, "v": "x"}}"#));
            let out = run(&text, "");
            // Every key but `v` is rare and marks its one item: every item is kept.
            serde_json::from_str::<serde_json::Value>(&out.text).unwrap();
            assert_eq!((out.omitted, out.too_deep), (0, 0));
        }
        // Rare keys still mark their rows, and outliers are found in sparse columns.
        let text = rows(200, |i| match i {
            17 => r#"{"id": 17, "error": "disk full"}"#.to_owned(),
            90 => r#"{"id": 90, "latency": 9000}"#.to_owned(),
            _ if i % 2 == 0 => format!(r#"{{"id": {i}, "latency": {}}}"#, 20 + i % 3),
            _ => format!(r#"{{"id": {i}}}"#),
        });
        let out = run(&text, "");
        assert!(
            out.text.contains("disk full") && out.text.contains("9000"),
            "{}",
            out.text
        );
        assert!(out.omitted > 100);
    }

    /// An error row that is also a rare template costs the anomaly budget nothing (it is kept
    /// anyway): the one other rare row beside it stays (upstream's `logs_oom` golden case).
    #[test]
    fn an_error_row_does_not_use_up_the_anomaly_budget() {
        let text = rows(30, |i| {
            let (level, status, msg) = match i {
                9 => ("INFO", "ok", "checkpoint saved at step 4500".to_owned()),
                17 => (
                    "ERROR",
                    "failed",
                    "OOM killed worker 3 exceeded memory limit".to_owned(),
                ),
                _ => ("INFO", "ok", format!("heartbeat ping {i}")),
            };
            format!(r#"{{"seq": {i}, "level": "{level}", "status": "{status}", "msg": "{msg}"}}"#)
        });
        let out = run(&text, "Why did the job fail?");
        assert!(out.text.contains("OOM killed"), "{}", out.text);
        assert!(out.text.contains("checkpoint saved"), "{}", out.text);
        assert_eq!(
            (out.kept.errors, out.kept.anomalies),
            (1, 1),
            "{:?}",
            out.kept
        );
    }

    /// Issue 15: 300 mixed event records (eight event types, from 2 % to 40 % of them) with
    /// two failures: the failures stay, the event types are not "rare" by the dozen.
    #[test]
    fn mixed_event_records_keep_failures_not_every_rare_type() {
        let types = [
            (120, "push"),
            (60, "pull_request"),
            (40, "issue_comment"),
            (30, "watch"),
            (20, "fork"),
            (14, "release"),
            (10, "delete"),
            (6, "member"),
        ];
        let mut kinds: Vec<&str> = Vec::new();
        for (count, name) in types {
            kinds.extend(std::iter::repeat_n(name, count));
        }
        let text = rows(300, |i| {
            let kind = kinds[(i * 7) % 300];
            let state = if i == 77 || i == 201 {
                "failure"
            } else {
                "success"
            };
            format!(
                r#"{{"id": {}, "type": "{kind}", "actor": "user{}", "repo": "org/r{}", "state": "{state}", "created_at": "2026-11-{:02}T10:00:00Z"}}"#,
                9000 + i,
                i % 37,
                i % 11,
                1 + i % 28
            )
        });
        let out = run(&text, "");
        assert!(
            out.text.contains("9077") && out.text.contains("9201"),
            "{}",
            out.text
        );
        let kept = 300 - out.omitted;
        assert!(kept <= 30, "{kept} kept: {}", out.text);
        assert_eq!(out.kept.errors, 2, "{:?}", out.kept);
    }

    /// Issue 12: each processed array renders and examines all of its items, so nesting
    /// multiplies the work; beyond [`MAX_NESTED_ARRAYS`] arrays are copied as they are.
    #[test]
    fn nesting_is_processed_to_a_fixed_depth() {
        let nested = |depth: usize| {
            let level = r#""x","y","z","w","#;
            format!(
                "{}0{}",
                format!("[{level}").repeat(depth),
                "]".repeat(depth)
            )
        };
        let out = run(&nested(MAX_NESTED_ARRAYS), "");
        assert_eq!(out.too_deep, 0);
        assert_eq!(out.text, nested(MAX_NESTED_ARRAYS));
        let out = run(&nested(200), "");
        assert_eq!(out.too_deep, 200 - MAX_NESTED_ARRAYS);
        assert_eq!(out.text, nested(200));
        // Objects in between do not count, only processed arrays.
        let inner = rows(40, |i| {
            let status = if i == 9 { "error" } else { "ok" };
            format!(r#"{{"id": {i}, "status": "{status}"}}"#)
        });
        let text = format!(r#"{{"a": {{"b": {{"c": {{"d": {inner}}}}}}}}}"#);
        let out = run(&text, "");
        assert_eq!(out.too_deep, 0);
        assert!(out.omitted > 0);
    }

    #[test]
    fn duplicates_collapse() {
        let text = rows(40, |_| r#"{"event": "heartbeat", "ok": true}"#.to_owned());
        let out = run(&text, "");
        assert_eq!(out.omitted, 39, "{}", out.text);
    }
}
