//! The savings ledger (`headroom_plugin::savings`), natively: what every provider request adds
//! to the filter's work (one compare-and-swap update of the ledger head in shared data, plus a
//! checkpoint when it saved tokens), and what the host pays to save and load the file.
//!
//! - `record/<projects>`: one request recorded into a ledger whose head carries that many
//!   projects (the head is decoded, updated and encoded each time, as in the filter).
//! - `file/render` and `file/load`: a full ledger (5,000 checkpoints, 50 projects) written to
//!   and read from the `proxy_savings.json` form.
//! - `history/document`: the `/stats-history` JSON of that ledger (rollups and compaction).
//!
//! Run: `cargo bench --bench ledger` (add `-- --quick` for a fast pass).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use headroom_plugin::savings::history::{self, HistoryMode};
use headroom_plugin::savings::{self, KeyValue, RequestSavings, StorageInfo, file};

/// Shared data as a proxy keeps it: values with CAS tokens.
#[derive(Default)]
struct Kv(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl KeyValue for Kv {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut map = self.0.borrow_mut();
        let entry = map.entry(key.to_owned()).or_insert((Vec::new(), 0));
        if matches!(cas, Some(c) if c != 0 && c != entry.1) {
            return false;
        }
        entry.0 = value.to_vec();
        entry.1 += 1;
        true
    }
}

fn request(i: u64, projects: u64) -> RequestSavings {
    RequestSavings {
        provider: "openai".into(),
        model: "gpt-4o".into(),
        project: (projects > 0).then(|| format!("project-{}", i % projects)),
        input_tokens: 2_000 + i % 500,
        tokens_saved: 1_000 + i % 300,
        savings_usd: 0.0025,
        input_cost_usd: 0.005,
        output_cost_usd: 0.001,
        cache_read_tokens: 100,
    }
}

/// A ledger at its limits: 5,000 checkpoints over ~6 months, 50 projects.
fn full_ledger() -> savings::Ledger {
    let kv = Kv::default();
    let start = 1_780_000_000;
    for i in 0..savings::MAX_HISTORY_POINTS {
        savings::record_shared(&kv, &request(i, 50), start + i * 3_000);
    }
    savings::read_shared(&kv)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    for projects in [0u64, 50] {
        let kv = Kv::default();
        let mut i = 0;
        group.bench_function(format!("{projects}"), |b| {
            b.iter(|| {
                i += 1;
                black_box(savings::record_shared(
                    &kv,
                    &request(i, projects),
                    1_780_000_000 + i,
                ))
            })
        });
    }
    group.finish();

    let ledger = full_ledger();
    let bytes = file::render(&ledger);
    eprintln!(
        "full ledger: {} checkpoints, {} projects, file {} bytes",
        ledger.history.len(),
        ledger.head.projects.len(),
        bytes.len()
    );
    let mut group = c.benchmark_group("file");
    group.bench_function("render", |b| b.iter(|| black_box(file::render(&ledger))));
    group.bench_function("load", |b| b.iter(|| black_box(file::load(&bytes))));
    group.finish();
    let storage = StorageInfo::default();
    c.bench_function("history/document", |b| {
        b.iter(|| {
            black_box(history::document(
                &ledger,
                &storage,
                HistoryMode::Compact,
                1_800_000_000,
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
