//! Who voted to skip which recent view: what tells a leader its view is lost (see
//! [`Message::Nullify`](cohort_ingress::committee::Message::Nullify)).

use std::collections::{BTreeMap, BTreeSet};

/// Views whose skip votes are remembered: those around the newest view heard of. Votes for older
/// views cannot matter to a leader's request any more.
const MEMORY_VIEWS: u64 = 32;

pub(super) struct Skips {
    /// Participant indices that voted to skip each recent view.
    by_view: BTreeMap<u64, BTreeSet<u32>>,
    operators: usize,
    /// Skip votes that prove a view's block cannot be finalized by honest votes: f+1.
    lost_at: usize,
}

impl Skips {
    pub(super) fn new(operators: usize) -> Self {
        Self {
            by_view: BTreeMap::new(),
            operators,
            lost_at: super::f_plus_one(operators),
        }
    }

    /// Operator `signer` voted to skip `view`. A signer outside the cluster, or a view far
    /// behind the newest one heard of, is ignored.
    pub(super) fn record(&mut self, view: u64, signer: u32) {
        if signer as usize >= self.operators {
            return;
        }
        let newest = self.by_view.keys().next_back().copied().unwrap_or(0);
        if view.saturating_add(MEMORY_VIEWS) < newest {
            return;
        }
        self.by_view.entry(view).or_default().insert(signer);
        let oldest = view.max(newest).saturating_sub(MEMORY_VIEWS);
        self.by_view = self.by_view.split_off(&oldest);
    }

    /// How many operators voted to skip `view`.
    pub(super) fn count(&self, view: u64) -> usize {
        self.by_view.get(&view).map_or(0, BTreeSet::len)
    }

    /// Whether f+1 operators voted to skip `view`: at least one honest one did, so its block
    /// can gather a quorum only with a byzantine operator's second vote.
    pub(super) fn lost(&self, view: u64) -> bool {
        self.count(view) >= self.lost_at
    }
}
