//! Doppelganger protection: which validators this operator may sign for yet.
//!
//! A validator whose key also runs somewhere else gets slashed the first time the two disagree,
//! so after a start the node signs nothing for a validator until it has reason to believe no
//! one else is running it. A lone validator client waits for two epochs in which the beacon
//! node reports the validator not live. An operator of a distributed validator cannot rely on
//! that alone: when it restarts while the rest of its cluster keeps signing, the validator is
//! live, and rightly so. So there is a second way to be cleared: this operator sees its own
//! cluster produce the validator's signature (threshold-many peers' partial signatures recover
//! to a signature that verifies under the validator's key). Only threshold-many shares can make
//! that signature, so its liveness is the cluster's own, not a doppelganger's.
//!
//! Epochs are counted from the first full epoch after the start: the start epoch may hold this
//! very node's signatures from before a restart.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex, MutexGuard},
};

/// Clean epochs (reported not live) a validator needs before it is signed for.
pub const CLEAN_EPOCHS_REQUIRED: usize = 2;

/// Where one validator stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not signed for yet: `clean` lists the checked epochs that showed it not live.
    Watching { clean: BTreeSet<u64> },
    /// Signed for from here on.
    Cleared(Clearance),
    /// Live in `epoch` with no sign that its own cluster made it so: never signed for in this
    /// process.
    Detected { epoch: u64 },
}

/// Why a validator was cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clearance {
    /// Two checked epochs showed it not live.
    NotLive,
    /// This operator saw its cluster sign for it (in `slot`).
    ClusterSigned { slot: u64 },
}

/// A change the caller logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Cleared { validator: u64, how: Clearance },
    Detected { validator: u64, epoch: u64 },
}

/// How many validators stand where: for metrics and `/health`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub watching: usize,
    pub cleared: usize,
    pub detected: usize,
}

struct State {
    start_epoch: u64,
    validators: BTreeMap<u64, Status>,
}

/// Shared between the runner (asks before every signature, reports what its cluster signed)
/// and the doppelganger checker (reports what the beacon node saw). Cheap to clone. A guard
/// made with [`Guard::off`] allows everything.
#[derive(Clone, Default)]
pub struct Guard {
    state: Option<Arc<Mutex<State>>>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            None => f.write_str("Guard(off)"),
            Some(_) => write!(f, "Guard({:?})", self.counts()),
        }
    }
}

impl Guard {
    /// No protection: every validator may be signed for (a devnet, a simulation, or an
    /// operator who turned it off).
    pub fn off() -> Self {
        Self { state: None }
    }

    /// Every validator in `validators` watched, the node having started in `start_epoch`.
    pub fn watching(validators: impl IntoIterator<Item = u64>, start_epoch: u64) -> Self {
        let validators = validators
            .into_iter()
            .map(|v| {
                (
                    v,
                    Status::Watching {
                        clean: BTreeSet::new(),
                    },
                )
            })
            .collect();
        Self {
            state: Some(Arc::new(Mutex::new(State {
                start_epoch,
                validators,
            }))),
        }
    }

    pub fn is_on(&self) -> bool {
        self.state.is_some()
    }

    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent data.
        self.state.as_ref().map(|state| {
            state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        })
    }

    /// Whether this operator may sign for `validator` now. Validators the guard never heard of
    /// are refused: the node watches every validator it has a share of.
    pub fn may_sign(&self, validator: u64) -> bool {
        match self.lock() {
            None => true,
            Some(state) => matches!(state.validators.get(&validator), Some(Status::Cleared(_))),
        }
    }

    pub fn status(&self, validator: u64) -> Option<Status> {
        match self.lock() {
            None => Some(Status::Cleared(Clearance::NotLive)),
            Some(state) => state.validators.get(&validator).cloned(),
        }
    }

    /// The first epoch whose liveness counts (the first full epoch after the start).
    pub fn first_checked_epoch(&self) -> Option<u64> {
        self.lock().map(|state| state.start_epoch + 1)
    }

    /// Validators still watched: the ones the checker must ask about.
    pub fn watched(&self) -> Vec<u64> {
        let Some(state) = self.lock() else {
            return Vec::new();
        };
        state
            .validators
            .iter()
            .filter(|(_, status)| matches!(status, Status::Watching { .. }))
            .map(|(v, _)| *v)
            .collect()
    }

    pub fn counts(&self) -> Counts {
        let Some(state) = self.lock() else {
            return Counts::default();
        };
        let mut counts = Counts::default();
        for status in state.validators.values() {
            match status {
                Status::Watching { .. } => counts.watching += 1,
                Status::Cleared(_) => counts.cleared += 1,
                Status::Detected { .. } => counts.detected += 1,
            }
        }
        counts
    }

    /// The beacon node's answer for `epoch`: of the validators in `checked`, those in `live`
    /// were seen live. Epochs before the first checked one are ignored. A watched validator
    /// seen live is detected; one not seen live for the required number of epochs is cleared.
    pub fn record_liveness(
        &self,
        epoch: u64,
        checked: &[u64],
        live: &BTreeSet<u64>,
    ) -> Vec<Change> {
        let Some(mut state) = self.lock() else {
            return Vec::new();
        };
        if epoch <= state.start_epoch {
            return Vec::new();
        }
        let mut changes = Vec::new();
        for validator in checked {
            let Some(status) = state.validators.get_mut(validator) else {
                continue;
            };
            let Status::Watching { clean } = status else {
                continue;
            };
            if live.contains(validator) {
                *status = Status::Detected { epoch };
                changes.push(Change::Detected {
                    validator: *validator,
                    epoch,
                });
                continue;
            }
            clean.insert(epoch);
            if clean.len() >= CLEAN_EPOCHS_REQUIRED {
                *status = Status::Cleared(Clearance::NotLive);
                changes.push(Change::Cleared {
                    validator: *validator,
                    how: Clearance::NotLive,
                });
            }
        }
        changes
    }

    /// This operator saw threshold-many of its cluster's shares sign for `validator` in `slot`
    /// (a recovered signature that verified): a watched validator is cleared. Returns the
    /// change, if any.
    pub fn cluster_signed(&self, validator: u64, slot: u64) -> Option<Change> {
        let mut state = self.lock()?;
        let status = state.validators.get_mut(&validator)?;
        if !matches!(status, Status::Watching { .. }) {
            return None;
        }
        let how = Clearance::ClusterSigned { slot };
        *status = Status::Cleared(how);
        Some(Change::Cleared { validator, how })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(validators: &[u64]) -> BTreeSet<u64> {
        validators.iter().copied().collect()
    }

    #[test]
    fn off_allows_everything() {
        let guard = Guard::off();
        assert!(guard.may_sign(7));
        assert!(guard.watched().is_empty());
        assert!(guard.record_liveness(5, &[7], &live(&[7])).is_empty());
    }

    #[test]
    fn two_clean_epochs_after_the_start_epoch_clear_a_validator() {
        let guard = Guard::watching([1, 2], 10);
        assert!(!guard.may_sign(1));
        // The start epoch may hold this node's own signatures from before a restart: ignored.
        assert!(
            guard
                .record_liveness(10, &[1, 2], &live(&[1, 2]))
                .is_empty()
        );
        assert!(!guard.may_sign(1));
        assert_eq!(guard.first_checked_epoch(), Some(11));
        assert!(guard.record_liveness(11, &[1, 2], &live(&[])).is_empty());
        assert!(!guard.may_sign(1), "one clean epoch is not enough");
        let changes = guard.record_liveness(12, &[1, 2], &live(&[]));
        assert_eq!(changes.len(), 2);
        assert!(guard.may_sign(1) && guard.may_sign(2));
        assert!(guard.watched().is_empty());
        // A validator the guard never heard of is refused.
        assert!(!guard.may_sign(3));
    }

    #[test]
    fn live_without_the_cluster_is_detected_for_good() {
        let guard = Guard::watching([1, 2], 0);
        guard.record_liveness(1, &[1, 2], &live(&[]));
        let changes = guard.record_liveness(2, &[1, 2], &live(&[2]));
        assert_eq!(
            changes,
            vec![
                Change::Cleared {
                    validator: 1,
                    how: Clearance::NotLive
                },
                Change::Detected {
                    validator: 2,
                    epoch: 2
                }
            ]
        );
        assert!(!guard.may_sign(2));
        // Nothing clears a detected validator: not clean epochs, not a recovered signature.
        guard.record_liveness(3, &[2], &live(&[]));
        guard.record_liveness(4, &[2], &live(&[]));
        assert_eq!(guard.cluster_signed(2, 40), None);
        assert!(!guard.may_sign(2));
        assert_eq!(
            guard.counts(),
            Counts {
                watching: 0,
                cleared: 1,
                detected: 1
            }
        );
    }

    #[test]
    fn the_cluster_signing_clears_at_once_and_later_liveness_is_its_own() {
        let guard = Guard::watching([1], 3);
        assert_eq!(
            guard.cluster_signed(1, 29),
            Some(Change::Cleared {
                validator: 1,
                how: Clearance::ClusterSigned { slot: 29 }
            })
        );
        assert!(guard.may_sign(1));
        // Live from now on because the cluster (this operator included) signs: no detection.
        assert!(guard.record_liveness(4, &[1], &live(&[1])).is_empty());
        assert!(guard.may_sign(1));
    }

    #[test]
    fn an_epoch_the_beacon_node_did_not_answer_for_does_not_count() {
        let guard = Guard::watching([1], 0);
        guard.record_liveness(1, &[1], &live(&[]));
        // Epoch 2 unanswered (never recorded); epoch 3 is the second clean one.
        assert!(!guard.may_sign(1));
        guard.record_liveness(3, &[1], &live(&[]));
        assert!(guard.may_sign(1));
    }
}
