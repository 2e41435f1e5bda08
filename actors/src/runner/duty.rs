//! A duty between its start and its end: what it waits for next ([`Phase`]), where it starts
//! ([`Actor::on_start`]), ends ([`Actor::finish`]) and runs out of time ([`Actor::expire`]).

use super::{
    POST_CONSENSUS_SLOTS,
    actor::{Actor, Step},
    metrics::RoleLabel,
};
use cohort_ingress::{
    DecidedValue, Decision, Duty, DutyId, DutySink, DutySource, DutyTarget, Role,
    SyncCommitteeSpec,
    committee::MAX_BLOCK_AGE_SLOTS,
    keys::{self, Signature},
    runner::{DutyEvent, Outcome},
    signing,
};
use commonware_cryptography::PublicKey;
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use tracing::{Span, debug, info, warn};

/// A duty between its start and its end.
pub(super) struct Running {
    pub(super) duty: Duty,
    pub(super) started: SystemTime,
    pub(super) phase: Phase,
    /// A sync committee contribution duty's reconstructed selection proofs, by subcommittee
    /// (one per subcommittee its positions fall in). Empty for every other role.
    pub(super) selection: BTreeMap<u64, Signature>,
}

impl Running {
    /// The subcommittees a contribution duty's validator has positions in (none for other
    /// roles): one selection proof and at most one contribution each.
    pub(super) fn subcommittees(&self, spec: &SyncCommitteeSpec) -> Vec<u64> {
        subcommittees(&self.duty, spec)
    }

    /// The subcommittees whose reconstructed selection proof makes the validator their
    /// aggregator.
    pub(super) fn selected(&self, spec: &SyncCommitteeSpec) -> Vec<u64> {
        self.selection
            .iter()
            .filter(|(_, proof)| {
                signing::is_sync_committee_aggregator(spec, &keys::signature_bytes(proof))
            })
            .map(|(subcommittee, _)| *subcommittee)
            .collect()
    }
}

/// See [`Running::subcommittees`].
pub(super) fn subcommittees(duty: &Duty, spec: &SyncCommitteeSpec) -> Vec<u64> {
    if duty.id.role != Role::SyncCommitteeContribution {
        return Vec::new();
    }
    duty.sync
        .first()
        .map(|sync| sync.subcommittees(spec))
        .unwrap_or_default()
}

/// What a running duty waits for next.
///
/// A committee duty goes `Agreement` → `Decided` → `PostConsensus`. A proposer, aggregator or
/// sync committee contributor starts in `PreConsensus` (its RANDAO reveal or selection
/// proofs); the cluster may finalize another operator's value for it before that quorum forms,
/// in which case it goes straight to `Decided` once the quorum is in.
pub(super) enum Phase {
    /// This operator's pre-consensus partial is due in this step (`signed` false) or out, and
    /// the duty waits for the quorum. `decided` holds a value the cluster finalized meanwhile.
    PreConsensus {
        signed: bool,
        decided: Option<DecidedValue>,
    },
    /// Waits for the cluster to finalize a value: this operator's own is being fetched from
    /// the beacon node or is with the committee. `pre` is a proposer's or aggregator's
    /// reconstructed pre-consensus signature; `aggregate` tracks an aggregator's wait for two
    /// thirds of its slot (other roles stay at [`Aggregation::NotDue`]).
    Agreement {
        pre: Option<Signature>,
        aggregate: Aggregation,
    },
    /// Finalized: its post-consensus partials are due in this step.
    Decided {
        value: DecidedValue,
        pre: Option<Signature>,
    },
    /// Its post-consensus partials are out: waits for their quorum and for the duty sink to
    /// take the `expected` objects (`submitted` so far).
    PostConsensus {
        expected: usize,
        submitted: usize,
        /// When this operator's partials left (for the reconstruction time).
        signed_at: SystemTime,
    },
}

impl Phase {
    /// Whether the cluster finalized a value for the duty.
    pub(super) fn is_decided(&self) -> bool {
        match self {
            Self::PreConsensus { decided, .. } => decided.is_some(),
            Self::Agreement { .. } => false,
            Self::Decided { .. } | Self::PostConsensus { .. } => true,
        }
    }
}

/// An aggregator's way to its aggregate (or a sync committee aggregator's to its
/// contributions), which the beacon node has only once two thirds of the slot passed and the
/// cluster decided the slot's attestation data (whose head block root the sync committee
/// messages sign).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Aggregation {
    NotDue,
    /// Two thirds of the slot passed; waits for the slot's decided attestation data.
    Due,
    /// Asked the beacon node (`attempt` counts from 0); an answer without a usable value
    /// is asked again after a backoff until the role's fetch deadline
    /// ([`super::fetch::aggregation_deadline`]).
    Requested {
        attempt: u32,
    },
}

/// The span every log line about a duty carries: SSV's `duty_id`, `runner_role` and `slot`.
/// At error level, so it is enabled whenever any line under it is.
pub(super) fn span(id: &DutyId) -> Span {
    tracing::error_span!("duty", duty_id = %id, runner_role = %id.role, slot = id.slot)
}

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    /// Where a duty starts: a committee duty fetches its value, a proposer, aggregator or sync
    /// committee contributor signs its pre-consensus partials in this step, and a duty the
    /// cluster already finalized goes on to sign the decided value.
    pub(super) fn on_start(&mut self, duty: Duty, step: &mut Step) {
        let id = duty.id.clone();
        let span = span(&id);
        if self.draining.is_some() {
            info!(parent: &span, "node stopping: not starting the duty");
            return;
        }
        if self.running.contains_key(&id) {
            debug!(parent: &span, "duty already running; ignoring the second start");
            return;
        }
        if let DutyTarget::Validator(v) = id.target
            && !self.shares.contains_key(&v)
        {
            warn!(parent: &span, "no share of this validator; ignoring the duty");
            return;
        }
        if id.role == Role::SyncCommitteeContribution
            && subcommittees(&duty, &self.clock.sync_committee).is_empty()
        {
            warn!(parent: &span, "contribution duty without a sync committee position; ignoring the duty");
            return;
        }
        if let Some(height) = self.recalled.remove(&id) {
            self.end_recalled(&id, height);
            return;
        }
        let now = self.context.current();
        let message = if id.role == Role::Committee {
            "executing committee duty"
        } else {
            "executing validator duty"
        };
        info!(
            parent: &span,
            validators = duty.attesters.len(),
            sync_committee_members = duty.sync.len(),
            "{message}"
        );
        self.metrics
            .started
            .get_or_create(&RoleLabel::of(id.role))
            .inc();
        self.emit(DutyEvent::Started {
            duty: id.clone(),
            at: now,
        });
        let decided = self.finalized_early.remove(&id);
        if decided.is_some() {
            info!(
                parent: &span,
                "duty already decided and finalized by the cluster; going on to sign it"
            );
            self.metrics.decided.inc();
            self.metrics.decide_latency.observe(0.0);
            self.emit(DutyEvent::Decided {
                duty: id.clone(),
                latency: Duration::ZERO,
            });
        }
        let phase = match (id.role, decided) {
            (Role::Committee, Some(value)) => {
                step.post_consensus.insert(id.clone());
                Phase::Decided { value, pre: None }
            }
            (Role::Committee, None) => Phase::Agreement {
                pre: None,
                aggregate: Aggregation::NotDue,
            },
            (Role::Proposer | Role::Aggregator | Role::SyncCommitteeContribution, decided) => {
                step.pre_consensus.insert(id.clone());
                Phase::PreConsensus {
                    signed: false,
                    decided,
                }
            }
        };
        let fetch = matches!(phase, Phase::Agreement { .. });
        self.running.insert(
            id.clone(),
            Running {
                duty,
                started: now,
                phase,
                selection: BTreeMap::new(),
            },
        );
        if fetch {
            self.fetch_attestation(id);
        }
    }

    /// Decisions of a block processed before this operator restarted (see
    /// [`cohort_ingress::runner::Message::Recalled`]): a duty among them ends as decided, now
    /// if it already started, when it starts otherwise.
    pub(super) fn on_recalled(&mut self, height: u64, block_slot: u64, decisions: &[Decision]) {
        let now = self.context.current();
        self.forget_old(self.clock.current_slot(now));
        for decision in decisions {
            if decision.duty.slot != block_slot {
                continue;
            }
            if let DecidedValue::Attestation(data) = &decision.value {
                self.decided_data.insert(block_slot, *data);
            }
            match self.running.get(&decision.duty) {
                Some(running) if !running.phase.is_decided() => {
                    self.end_recalled(&decision.duty.clone(), height)
                }
                Some(_) => {}
                None if decision.duty.slot + 1 + MAX_BLOCK_AGE_SLOTS
                    >= self.clock.current_slot(now) =>
                {
                    self.recalled.insert(decision.duty.clone(), height);
                }
                None => {}
            }
        }
    }

    /// Ends a recalled duty (started or starting now): reported decided, then finished.
    fn end_recalled(&mut self, id: &DutyId, height: u64) {
        if !self.running.contains_key(id) {
            self.metrics
                .started
                .get_or_create(&RoleLabel::of(id.role))
                .inc();
            self.emit(DutyEvent::Started {
                duty: id.clone(),
                at: self.context.current(),
            });
        }
        debug!(parent: &span(id), height, "decided before this operator restarted");
        self.emit(DutyEvent::Decided {
            duty: id.clone(),
            latency: Duration::ZERO,
        });
        self.running.remove(id);
        self.waiting.retain(|_, (waiting, _)| waiting != id);
        self.report_finished(id, Outcome::DecidedBeforeRestart);
    }

    /// Ends a duty: logs the SSV closing line, counts it, reports it.
    pub(super) fn finish(&mut self, id: &DutyId, outcome: Outcome) {
        if self.running.remove(id).is_none() {
            return;
        }
        self.waiting.retain(|_, (waiting, _)| waiting != id);
        self.report_finished(id, outcome);
    }

    /// The closing line, counter and event of a duty that ended with `outcome`.
    fn report_finished(&mut self, id: &DutyId, outcome: Outcome) {
        let label = RoleLabel::of(id.role);
        let span = span(id);
        match &outcome {
            Outcome::Success | Outcome::NotSelected => {
                self.metrics.succeeded.get_or_create(&label).inc();
                info!(parent: &span, "finished duty processing (100% success)");
            }
            Outcome::Partial {
                submitted,
                expected,
            } => {
                self.metrics.failed.get_or_create(&label).inc();
                warn!(parent: &span, submitted, expected, "finished duty processing (partial success)");
            }
            Outcome::Failed { reason } => {
                self.metrics.failed.get_or_create(&label).inc();
                warn!(parent: &span, reason, "finished duty processing (failed)");
            }
            Outcome::DecidedBeforeRestart => {
                self.metrics.before_restart.get_or_create(&label).inc();
                info!(
                    parent: &span,
                    "duty decided in a block processed before this operator restarted; its \
                     previous run took its part, nothing is run again"
                );
            }
            Outcome::Cancelled => {
                self.metrics.cancelled.get_or_create(&label).inc();
                info!(
                    parent: &span,
                    "node stopping before the cluster decided the duty: cancelled here; the \
                     operators still running decide and sign it"
                );
            }
        }
        self.emit(DutyEvent::Finished {
            duty: id.clone(),
            outcome,
        });
    }

    /// The earliest moment a running duty must end without new input: its slot's blocks can
    /// no longer be voted for (undecided), or its post-consensus window closed (decided).
    pub(super) fn next_deadline(&self) -> Option<SystemTime> {
        self.running
            .iter()
            .map(|(id, running)| self.deadline_of(id, running))
            .min()
    }

    fn deadline_of(&self, id: &DutyId, running: &Running) -> SystemTime {
        let extra = if running.phase.is_decided() {
            POST_CONSENSUS_SLOTS
        } else {
            0
        };
        let deadline = self
            .clock
            .slot_start(id.slot + 1 + MAX_BLOCK_AGE_SLOTS + extra);
        match self.draining {
            Some(stop) => deadline.min(stop),
            None => deadline,
        }
    }

    /// The node is stopping. A duty the cluster has not decided is cancelled at once: in a
    /// whole-cluster stop the operators leave one by one, and once fewer than a quorum are
    /// left, nothing more is decided, so waiting for it would hold the stop for the duty's
    /// whole block-age window (three slots, more than the stop timeout at 12 s slots). A
    /// decided duty's partials are out or due now; it keeps about a slot for its quorum (peers
    /// that are stopping sign what they saw decided too). Later starts are refused.
    pub(super) fn drain(&mut self) {
        if self.draining.is_some() {
            return;
        }
        let now = self.context.current();
        self.draining = Some(now + self.clock.slot_duration);
        let undecided: Vec<DutyId> = self
            .running
            .iter()
            .filter(|(_, running)| !running.phase.is_decided())
            .map(|(id, _)| id.clone())
            .collect();
        info!(
            cancelled = undecided.len(),
            decided = self.running.len() - undecided.len(),
            "node stopping: cancelling duties not decided yet; decided ones get a slot to finish"
        );
        for id in undecided {
            self.finish(&id, Outcome::Cancelled);
        }
    }

    /// Duties, values and partials no future decision or quorum depends on.
    pub(super) fn forget_old(&mut self, slot: u64) {
        self.finalized_early
            .retain(|id, _| id.slot + 1 + MAX_BLOCK_AGE_SLOTS >= slot);
        self.recalled
            .retain(|id, _| id.slot + 1 + MAX_BLOCK_AGE_SLOTS >= slot);
        let remembered = DutyId::first_of_slot(slot.saturating_sub(super::MISSED_MEMORY_SLOTS));
        self.missed = self.missed.split_off(&remembered);
        let keep = slot.saturating_sub(MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS + 1);
        self.decided_data = self.decided_data.split_off(&keep);
        self.quorum.prune(keep);
        self.partial_budget = self.partial_budget.split_off(&(keep, 0));
    }

    /// Ends the duties whose deadline passed: missed if undecided, partly or not submitted if
    /// decided.
    pub(super) fn expire(&mut self) {
        let now = self.context.current();
        let slot = self.clock.current_slot(now);
        self.forget_old(slot);
        let due: Vec<DutyId> = self
            .running
            .iter()
            .filter(|(id, running)| self.deadline_of(id, running) <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(running) = self.running.get(&id) else {
                continue;
            };
            if !running.phase.is_decided() {
                self.running.remove(&id);
                self.waiting.retain(|_, (waiting, _)| *waiting != id);
                self.metrics.missed.inc();
                self.metrics
                    .failed
                    .get_or_create(&RoleLabel::of(id.role))
                    .inc();
                warn!(
                    parent: &span(&id),
                    "duty missed: no block of its slot can be finalized any more (a decision \
                     that reaches this operator later is reported then)"
                );
                self.missed.insert(id.clone());
                self.emit(DutyEvent::Missed { duty: id });
                continue;
            }
            let outcome = match running.phase {
                Phase::PostConsensus {
                    expected,
                    submitted,
                    ..
                } if submitted > 0 => Outcome::Partial {
                    submitted,
                    expected,
                },
                _ if self.draining.is_some_and(|stop| stop <= now) => Outcome::Failed {
                    reason: "node stopping: no quorum of valid post-consensus partial \
                             signatures within a slot of the stop"
                        .into(),
                },
                _ => Outcome::Failed {
                    reason: "no quorum of valid post-consensus partial signatures in time".into(),
                },
            };
            self.finish(&id, outcome);
        }
    }
}
