//! What consensus does with an operator it catches misbehaving.
//!
//! Simplex asks its blocker to cut off a peer whose votes conflict (equivocation) or do not
//! verify. In an open network that is the right defence; in a cluster of a few known operators
//! it turns one byzantine voter into a lost leader: every honest operator that caught it stops
//! hearing it, so each view it leads waits out the full leader timeout (a slot and more) until
//! the skip policy gives up on it, and a view lost after two thirds of a slot loses that slot's
//! aggregations. Cutting it off protects nothing, since consensus keeps only a voter's first
//! vote per view and reports the conflict as evidence, and the vote channel's rate limit already
//! bounds what a peer can make us verify. So the operator keeps hearing it: its proposals are
//! verified like anyone's, and a harmful one is refused in verify within the view.
//!
//! Every report is counted by operator and the first one logged, so an operator sees who
//! misbehaved; marshal and the block resolver keep the network's own blocker (a peer that
//! serves bad blocks is cut off).

use cohort_marshal::PublicKey;
use commonware_actor::Feedback;
use commonware_p2p::{BlockedSubscription, Blocker};
use commonware_runtime::{Metrics, telemetry::metrics::Registered};
use commonware_utils::channel::mpsc;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
};
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};
use tracing::warn;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    /// The operator's identity key (hex), as in the config's operator list.
    peer: String,
}

/// Consensus's blocker: records what consensus caught and keeps the peer connected.
#[derive(Clone)]
pub struct Reporting<B> {
    inner: B,
    participants: Arc<Vec<PublicKey>>,
    faults: Registered<Family<PeerLabel, Counter>>,
    logged: Arc<Mutex<BTreeSet<PublicKey>>>,
    observer: Option<mpsc::UnboundedSender<PublicKey>>,
}

impl<B> Reporting<B> {
    /// `observer` hears every report (the simulation checks who was caught).
    pub fn new(
        context: &impl Metrics,
        inner: B,
        participants: Vec<PublicKey>,
        observer: Option<mpsc::UnboundedSender<PublicKey>>,
    ) -> Self {
        let faults = context.register(
            "faults",
            "Times consensus caught an operator sending conflicting or invalid votes, by operator \
             (it stays connected: see operator/src/consensus_faults.rs)",
            Family::<PeerLabel, Counter>::default(),
        );
        Self {
            inner,
            participants: Arc::new(participants),
            faults,
            logged: Arc::default(),
            observer,
        }
    }
}

impl<B: Blocker<PublicKey = PublicKey>> Blocker for Reporting<B> {
    type PublicKey = PublicKey;

    fn block(&mut self, peer: PublicKey) -> Feedback {
        let Some(position) = self.participants.iter().position(|p| *p == peer) else {
            // Not a cluster member: nothing of ours to protect by hearing it.
            return self.inner.block(peer);
        };
        self.faults
            .get_or_create(&PeerLabel {
                peer: peer.to_string(),
            })
            .inc();
        if let Some(observer) = &self.observer {
            let _ = observer.send(peer.clone());
        }
        let first = self
            .logged
            .lock()
            .map(|mut logged| logged.insert(peer.clone()))
            .unwrap_or(false);
        if first {
            warn!(
                index = position,
                %peer,
                "consensus caught this operator sending conflicting or invalid votes (the warning \
                 before says which); consensus drops those votes and the operator stays \
                 connected, so views it leads still make progress; \
                 operator_consensus_faults_total counts every report"
            );
        }
        Feedback::Ok
    }

    fn blocked(&mut self) -> BlockedSubscription<PublicKey> {
        self.inner.blocked()
    }
}
