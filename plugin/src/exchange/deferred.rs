//! A pipeline run whose accounting waits for the end of its exchange (issue 18).
//!
//! The request goes upstream as soon as its bytes are decided; what the run still owes
//! ([`Unsettled`]: exact original counts, replay records, waste signals) is paid when the
//! exchange ends, while the upstream has long been answering. The text kept meanwhile is
//! bounded per VM: past [`MAX_UNSETTLED_BYTES`] a run settles before its request is forwarded,
//! as every run did before.

use std::cell::Cell;
use std::rc::Rc;

use crate::pipeline::{Outcome, Unsettled};
use crate::shared_store::SharedStores;

/// Original text one VM may keep for unsettled runs at once (a few large requests in flight).
pub(crate) const MAX_UNSETTLED_BYTES: usize = 16 << 20;

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
    /// Whether its rewritten body went upstream.
    pub(crate) rewritten: bool,
    /// Its reservation, when it waits for the end of its exchange.
    held: Option<Held>,
}

impl DeferredRun {
    /// A run whose owed accounting waits for the end of its exchange when `bytes` has room for
    /// its text (the outcome's body, sent, is dropped), else is to be settled now.
    pub(crate) fn new(
        bytes: &UnsettledBytes,
        mut outcome: Outcome,
        unsettled: Unsettled,
        stores: SharedStores,
        rewritten: bool,
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
            rewritten,
            held,
        }
    }

    /// Whether it waits for the end of its exchange (else settle it now).
    pub(crate) fn waits(&self) -> bool {
        self.held.is_some()
    }

    /// Pays what the run owes: its complete outcome and its stores (with every timing).
    pub(crate) fn settle(self) -> (Outcome, SharedStores) {
        let DeferredRun {
            mut outcome,
            unsettled,
            mut stores,
            held,
            ..
        } = self;
        unsettled.settle(&mut outcome, &mut stores);
        drop(held);
        (outcome, stores)
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
        let run = DeferredRun::new(&bytes, outcome, unsettled, stores, true);
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
        let run = DeferredRun::new(&bytes, outcome, unsettled, stores, true);
        assert!(!run.waits(), "one byte over the bound");
        assert_eq!(bytes.get(), kept, "nothing was reserved");
        let (settled, _) = run.settle();
        assert!(settled.body.is_some() && settled.tokens_saved() > 0);
        assert_eq!(bytes.get(), kept, "nothing was given back");
    }
}
