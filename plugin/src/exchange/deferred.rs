//! A pipeline run whose accounting waits for the end of its exchange (issue 18).
//!
//! The request goes upstream as soon as its bytes are decided; what the run still owes
//! ([`Unsettled`]: exact original counts, replay records, waste signals) is paid when the
//! exchange ends, while the upstream has long been answering. The text kept meanwhile is
//! bounded per VM: past [`MAX_UNSETTLED_BYTES`] a run settles before its request is forwarded,
//! as every run did before.
//!
//! The end of an exchange is the wrong time to pay, though: the host holds the response's last
//! bytes until the filter's callback returns. So waiting runs also join the VM's
//! [`SettleQueue`], which the root context's tick works through while upstreams answer; the end
//! of the exchange then only picks up the settled result (and settles the run itself when the
//! upstream answered before a tick did).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::pipeline::{Outcome, Unsettled};
use crate::shared_store::SharedStores;

/// Original text one VM may keep for unsettled runs at once (a few large requests in flight).
pub(crate) const MAX_UNSETTLED_BYTES: usize = 16 << 20;

/// How often the root's tick settles waiting runs: well inside the time any model takes to
/// answer, so a run is settled before its response comes back; 50 idle wake-ups a second
/// per VM cost nothing measurable.
pub(crate) const SETTLE_TICK: Duration = Duration::from_millis(20);

/// Text one tick settles at most (then the next tick goes on): ~1 MB of counting is a few
/// milliseconds in wasm, so a tick never holds its worker longer than a large request does.
pub(crate) const SETTLE_BYTES_PER_TICK: usize = 1 << 20;

/// The bytes one VM's unsettled runs keep (shared by its exchanges).
#[derive(Debug, Default, Clone)]
pub(crate) struct UnsettledBytes(Rc<Cell<usize>>);

impl UnsettledBytes {
    /// Bytes kept now.
    pub(crate) fn get(&self) -> usize {
        self.0.get()
    }
}

/// A reservation of [`UnsettledBytes`], given back when dropped (settled or abandoned).
#[derive(Debug)]
struct Held {
    bytes: UnsettledBytes,
    len: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.bytes
            .0
            .set(self.bytes.0.get().saturating_sub(self.len));
    }
}

/// A run that went upstream with its accounting owed.
#[derive(Debug)]
pub(crate) struct DeferredRun {
    outcome: Outcome,
    unsettled: Unsettled,
    stores: SharedStores,
    /// Its reservation, while it waits.
    held: Option<Held>,
}

impl DeferredRun {
    /// A run whose owed accounting waits (for the tick or the end of its exchange) when
    /// `bytes` has room for its text (the outcome's body, sent, is dropped), else is to be
    /// settled now.
    pub(crate) fn new(
        bytes: &UnsettledBytes,
        mut outcome: Outcome,
        unsettled: Unsettled,
        stores: SharedStores,
    ) -> DeferredRun {
        let len = unsettled.retained_bytes();
        let kept = bytes.get();
        let fits = !unsettled.is_empty() && kept.saturating_add(len) <= MAX_UNSETTLED_BYTES;
        let held = fits.then(|| {
            bytes.0.set(kept + len);
            outcome.body = None;
            Held {
                bytes: bytes.clone(),
                len,
            }
        });
        DeferredRun {
            outcome,
            unsettled,
            stores,
            held,
        }
    }

    /// Whether it waits for the end of its exchange (else settle it now).
    pub(crate) fn waits(&self) -> bool {
        self.held.is_some()
    }

    /// The bytes of text it keeps while it waits.
    fn held_bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |held| held.len)
    }

    /// Pays what the run owes: its complete outcome and its stores (with every timing).
    pub(crate) fn settle(self) -> (Outcome, SharedStores) {
        let DeferredRun {
            mut outcome,
            unsettled,
            mut stores,
            held,
        } = self;
        unsettled.settle(&mut outcome, &mut stores);
        drop(held);
        (outcome, stores)
    }
}

/// A queued run: still owed, or settled ahead of its exchange's end by the tick.
#[derive(Debug)]
enum Slot {
    Waiting(DeferredRun),
    Settled(Outcome, SharedStores),
    /// Only while the run is being settled.
    Settling,
}

/// A waiting run, as its exchange holds it once queued.
#[derive(Debug)]
pub(crate) struct QueuedRun(Rc<RefCell<Slot>>);

impl QueuedRun {
    /// Its complete outcome and stores: settled now unless the tick already did.
    pub(crate) fn settle(self) -> Option<(Outcome, SharedStores)> {
        let mut slot = self.0.try_borrow_mut().ok()?;
        match std::mem::replace(&mut *slot, Slot::Settling) {
            Slot::Waiting(run) => Some(run.settle()),
            Slot::Settled(outcome, stores) => Some((outcome, stores)),
            Slot::Settling => None,
        }
    }

    /// Whether the tick has settled it.
    #[cfg(test)]
    fn is_settled(&self) -> bool {
        matches!(*self.0.borrow(), Slot::Settled(..))
    }
}

/// One VM's waiting runs, oldest first, for its tick to settle while their upstreams answer.
/// Entries are weak: a run whose exchange ended (and settled it) leaves only a dead entry,
/// dropped when reached.
#[derive(Debug, Default, Clone)]
pub(crate) struct SettleQueue(Rc<RefCell<VecDeque<Weak<RefCell<Slot>>>>>);

impl SettleQueue {
    /// Queues a waiting run.
    pub(crate) fn push(&self, run: DeferredRun) -> QueuedRun {
        let slot = Rc::new(RefCell::new(Slot::Waiting(run)));
        if let Ok(mut queue) = self.0.try_borrow_mut() {
            // Dead entries at the front go now, so a VM without ticks keeps no garbage there.
            while queue.front().is_some_and(|weak| weak.strong_count() == 0) {
                queue.pop_front();
            }
            queue.push_back(Rc::downgrade(&slot));
        }
        QueuedRun(slot)
    }

    /// Settles waiting runs, oldest first, until at least `budget` bytes of their text were
    /// settled or none waits (one tick's work, bounded so a tick never holds the worker long);
    /// returns how many it settled.
    pub(crate) fn settle_some(&self, budget: usize) -> usize {
        let (mut spent, mut settled) = (0usize, 0usize);
        while spent < budget {
            let next = match self.0.try_borrow_mut() {
                Ok(mut queue) => queue.pop_front(),
                Err(_) => break,
            };
            let Some(weak) = next else { break };
            let Some(slot) = weak.upgrade() else { continue };
            let Ok(mut slot) = slot.try_borrow_mut() else {
                continue;
            };
            if let Slot::Waiting(run) = std::mem::replace(&mut *slot, Slot::Settling) {
                spent = spent.saturating_add(run.held_bytes());
                let (outcome, stores) = run.settle();
                *slot = Slot::Settled(outcome, stores);
                settled += 1;
            }
        }
        settled
    }

    /// Entries queued (live or dead).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::tests::{chat_request, configure};
    use super::*;
    use crate::api::Api;
    use crate::pipeline::{compress_request, compress_request_unsettled};

    #[test]
    fn a_deferred_run_settles_to_the_immediate_outcome_and_gives_its_bytes_back() {
        let body = chat_request(400);
        let (_, shared) = configure("{}");
        let config = &shared.config.pipeline;
        let mut stores = shared.stores.clone();
        let (outcome, unsettled) =
            compress_request_unsettled(Api::OpenAiChat, &body, config, &mut stores).unwrap();
        assert!(!unsettled.is_empty(), "a compressed output owes its count");
        let sent = outcome.body.clone();
        let bytes = UnsettledBytes::default();
        let run = DeferredRun::new(&bytes, outcome, unsettled, stores);
        assert!(run.waits());
        assert!(
            bytes.get() >= body.len() / 2,
            "the original is kept: {}",
            bytes.get()
        );
        let (settled, _) = run.settle();
        assert_eq!(bytes.get(), 0);

        let (_, other) = configure("{}");
        let mut stores = other.stores.clone();
        let immediate = compress_request(Api::OpenAiChat, &body, config, &mut stores).unwrap();
        assert_eq!(sent, immediate.body);
        assert_eq!(settled.tokens_saved(), immediate.tokens_saved());
        assert!(settled.tokens_saved() > 0);
        let untimed = |outcome: Outcome| {
            let mut blocks = outcome.blocks;
            blocks.iter_mut().for_each(|b| b.timing = None);
            format!("{blocks:?}")
        };
        assert_eq!(settled.waste, immediate.waste);
        assert_eq!(untimed(settled), untimed(immediate));
    }

    #[test]
    fn past_the_bound_a_run_settles_now() {
        let body = chat_request(400);
        let (_, shared) = configure("{}");
        let mut stores = shared.stores.clone();
        let config = &shared.config.pipeline;
        let (outcome, unsettled) =
            compress_request_unsettled(Api::OpenAiChat, &body, config, &mut stores).unwrap();
        let bytes = UnsettledBytes::default();
        let kept = MAX_UNSETTLED_BYTES - unsettled.retained_bytes() + 1;
        bytes.0.set(kept);
        let run = DeferredRun::new(&bytes, outcome, unsettled, stores);
        assert!(!run.waits(), "one byte over the bound");
        assert_eq!(bytes.get(), kept, "nothing was reserved");
        let (settled, _) = run.settle();
        assert!(settled.body.is_some() && settled.tokens_saved() > 0);
        assert_eq!(bytes.get(), kept, "nothing was given back");
    }

    /// A waiting run of `body`, through `shared`'s stores, reserving from `bytes`.
    fn waiting_run(
        body: &[u8],
        shared: &crate::exchange::Shared,
        bytes: &UnsettledBytes,
    ) -> DeferredRun {
        let mut stores = shared.stores.clone();
        let (outcome, unsettled) =
            compress_request_unsettled(Api::OpenAiChat, body, &shared.config.pipeline, &mut stores)
                .unwrap();
        let run = DeferredRun::new(bytes, outcome, unsettled, stores);
        assert!(run.waits());
        run
    }

    #[test]
    fn the_tick_settles_queued_runs_oldest_first_within_its_budget() {
        let (_, shared) = configure("{}");
        let bytes = UnsettledBytes::default();
        let queue = SettleQueue::default();
        let runs: Vec<QueuedRun> = [300, 400, 500]
            .into_iter()
            .map(|n| queue.push(waiting_run(&chat_request(n), &shared, &bytes)))
            .collect();
        let first = bytes.get();
        // A budget of one byte still settles one run (the oldest), and gives its bytes back.
        assert_eq!(queue.settle_some(1), 1);
        let settled: Vec<bool> = runs.iter().map(QueuedRun::is_settled).collect();
        assert_eq!(settled, [true, false, false]);
        assert!(bytes.get() < first, "the settled run's text is released");
        // A large budget settles the rest; an empty queue settles nothing.
        assert_eq!(queue.settle_some(usize::MAX), 2);
        assert!(runs.iter().all(QueuedRun::is_settled));
        assert_eq!(bytes.get(), 0);
        assert_eq!(queue.settle_some(usize::MAX), 0);
    }

    #[test]
    fn a_run_settled_by_the_tick_is_the_run_its_exchange_would_have_settled() {
        let body = chat_request(400);
        let (_, ticked) = configure("{}");
        let (_, at_end) = configure("{}");
        let bytes = UnsettledBytes::default();
        let queue = SettleQueue::default();
        let early = queue.push(waiting_run(&body, &ticked, &bytes));
        queue.settle_some(usize::MAX);
        let late = SettleQueue::default().push(waiting_run(&body, &at_end, &bytes));
        let (early, _) = early.settle().unwrap();
        let (late, _) = late.settle().unwrap();
        let untimed = |outcome: Outcome| {
            let mut blocks = outcome.blocks;
            blocks.iter_mut().for_each(|b| b.timing = None);
            (format!("{blocks:?}"), outcome.waste)
        };
        assert!(early.tokens_saved() > 0);
        assert_eq!(early.tokens_saved(), late.tokens_saved());
        assert_eq!(untimed(early), untimed(late));
        assert_eq!(bytes.get(), 0);
    }

    #[test]
    fn a_run_its_exchange_settled_leaves_a_dead_entry_the_queue_drops() {
        let (_, shared) = configure("{}");
        let bytes = UnsettledBytes::default();
        let queue = SettleQueue::default();
        let run = queue.push(waiting_run(&chat_request(300), &shared, &bytes));
        assert!(
            run.settle().is_some(),
            "settled by its exchange, not the tick"
        );
        assert_eq!(queue.len(), 1, "its entry is dead, not yet dropped");
        // The next push drops dead entries at the front; the tick skips any it meets.
        let next = queue.push(waiting_run(&chat_request(300), &shared, &bytes));
        assert_eq!(queue.len(), 1);
        drop(next);
        assert_eq!(
            queue.settle_some(usize::MAX),
            0,
            "a dropped run is not settled"
        );
        assert_eq!(queue.len(), 0);
        assert_eq!(bytes.get(), 0, "a dropped run gives its bytes back");
    }
}
