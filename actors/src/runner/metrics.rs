//! What the runner exports: duty outcomes by role, partial signatures by sending operator,
//! latencies, and `*_held` gauges showing that nothing it keeps grows with the length of a run.

use cohort_ingress::{OperatorId, Role};
use commonware_runtime::{Metrics as Registry, telemetry::metrics::Registered};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RoleLabel {
    role: String,
}

impl RoleLabel {
    pub(super) fn of(role: Role) -> Self {
        Self {
            role: role.as_str().to_string(),
        }
    }
}

/// The kind of signed object handed to the duty sink (`attestation`, `sync_message`,
/// `proposal`, `aggregate`, `contribution`), as the devnet chain names them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    kind: &'static str,
}

impl KindLabel {
    pub(super) fn of(object: super::submit::Object) -> Self {
        Self {
            kind: object.as_str(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SenderLabel {
    /// The sending operator's id (share index + 1); `sender`, not `operator`, so it never
    /// collides with a runtime attribute naming the receiving operator.
    sender: OperatorId,
}

/// The operator id (share index + 1) of the operator at share index `operator`.
pub(super) fn operator_id(operator: u32) -> OperatorId {
    operator as OperatorId + 1
}

impl SenderLabel {
    pub(super) fn of(operator: u32) -> Self {
        Self {
            sender: operator_id(operator),
        }
    }
}

pub(super) struct Metrics {
    pub(super) started: Registered<Family<RoleLabel, Counter>>,
    pub(super) succeeded: Registered<Family<RoleLabel, Counter>>,
    pub(super) failed: Registered<Family<RoleLabel, Counter>>,
    pub(super) cancelled: Registered<Family<RoleLabel, Counter>>,
    pub(super) before_restart: Registered<Family<RoleLabel, Counter>>,
    pub(super) submitted: Registered<Family<KindLabel, Counter>>,
    pub(super) submissions_failed: Registered<Family<KindLabel, Counter>>,
    pub(super) partials_received: Registered<Family<SenderLabel, Counter>>,
    pub(super) partials_invalid: Registered<Family<SenderLabel, Counter>>,
    pub(super) messages_invalid: Registered<Counter>,
    pub(super) slashing_refusals: Registered<Counter>,
    pub(super) decided: Registered<Counter>,
    pub(super) missed: Registered<Counter>,
    pub(super) aggregation_retries: Registered<Counter>,
    pub(super) decided_after_missed: Registered<Counter>,
    pub(super) decide_latency: Registered<Histogram>,
    pub(super) reconstruction_time: Registered<Histogram>,
    pub(super) submission_delay: Registered<Histogram>,
    pub(super) submitted_after_start: Registered<Family<KindLabel, Histogram>>,
    pub(super) held: Held,
}

/// Buckets of [`Metrics::submitted_after_start`]: fine where a committee duty started on the
/// head event should land (four link delays and some processing, a few hundred ms), coarse up
/// to a slot for duties that wait for their role's moment (aggregates at two thirds).
fn after_start_histogram() -> Histogram {
    Histogram::new([
        0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.6, 1.0, 2.0, 4.0, 8.0, 12.0,
    ])
}

impl Metrics {
    /// Registers every runner metric in `context` (the handles are kept: dropping one would
    /// take its metric out of the registry).
    pub(super) fn register(context: &impl Registry) -> Self {
        let by_role = |name: &str, help: &str| {
            context.register(name, help, Family::<RoleLabel, Counter>::default())
        };
        let by_sender = |name: &str, help: &str| {
            context.register(name, help, Family::<SenderLabel, Counter>::default())
        };
        let counter = |name: &str, help: &str| context.register(name, help, Counter::default());
        Self {
            started: by_role("duties_started", "duties started, by role"),
            succeeded: by_role(
                "duties_succeeded",
                "duties whose signed objects all reached the duty sink, by role",
            ),
            failed: by_role(
                "duties_failed",
                "duties missed or ended with objects not submitted, by role",
            ),
            before_restart: by_role(
                "duties_decided_before_restart",
                "duties started after a restart that a block processed before it had decided \
                 (not run again), by role",
            ),
            cancelled: by_role(
                "duties_cancelled",
                "duties the node stopped before the cluster decided them, by role",
            ),
            submitted: context.register(
                "objects_submitted",
                "signed objects the duty sink took, by kind",
                Family::<KindLabel, Counter>::default(),
            ),
            submissions_failed: context.register(
                "objects_submission_failed",
                "signed objects the duty sink refused or did not answer for in time, by kind",
                Family::<KindLabel, Counter>::default(),
            ),
            partials_received: by_sender(
                "partials_received",
                "partial signatures received, by sending operator",
            ),
            partials_invalid: by_sender(
                "partials_invalid",
                "partial signatures that failed verification and were dropped, by operator",
            ),
            messages_invalid: counter(
                "partial_messages_invalid",
                "partial-signature messages that did not decode or came from outside the cluster",
            ),
            slashing_refusals: counter(
                "slashing_refusals",
                "signatures refused by slashing protection",
            ),
            decided: counter(
                "duties_decided",
                "duties finalized in a block of their slot",
            ),
            missed: counter(
                "duties_missed",
                "duties whose slot ended before a finalized decision",
            ),
            decided_after_missed: counter(
                "duties_decided_after_missed",
                "duties reported missed that a finalized block reaching this operator later \
                 decided after all (this operator did not sign them)",
            ),
            aggregation_retries: counter(
                "aggregation_retries",
                "aggregate or contribution requests asked again because the beacon node had \
                 nothing usable yet",
            ),
            decide_latency: context.register(
                "decide_latency_seconds",
                "time from duty start to finalized decision",
                Histogram::new([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8]),
            ),
            reconstruction_time: context.register(
                "reconstruction_seconds",
                "time from this operator's post-consensus partials to the reconstructed signature",
                Histogram::new([0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2]),
            ),
            submission_delay: context.register(
                "submission_delay_seconds",
                "time from the start of the duty's slot to its submission",
                Histogram::new([0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 24.0]),
            ),
            submitted_after_start: context.register(
                "submitted_after_start_seconds",
                "time from a duty's start to the submission of each of its objects, by kind; a \
                 committee duty starts on the slot's head event (or at one third of the slot \
                 without one), so for attestations and sync messages it is the delay after the head",
                Family::<KindLabel, Histogram>::new_with_constructor(after_start_histogram as fn() -> Histogram),
            ),
            held: Held::register(context),
        }
    }
}

/// How much the runner holds in memory, set after every handling step, so a long run can show
/// that nothing grows with its length. Each help text says what bounds its gauge.
pub(super) struct Held {
    pub(super) running: Registered<Gauge>,
    pub(super) waiting: Registered<Gauge>,
    pub(super) quorum: Registered<Gauge>,
    pub(super) finalized_early: Registered<Gauge>,
    pub(super) missed: Registered<Gauge>,
    pub(super) decided_data: Registered<Gauge>,
    pub(super) step: Registered<Gauge>,
    pub(super) calls: Registered<Gauge>,
}

impl Held {
    fn register(context: &impl Registry) -> Self {
        let gauge = |name: &str, help: &str| context.register(name, help, Gauge::default());
        Self {
            running: gauge(
                "running_duties_held",
                "duties in flight; a duty ends by 1 + MAX_BLOCK_AGE_SLOTS + \
                 POST_CONSENSUS_SLOTS slots after its own, so at most the duties of that many slots",
            ),
            waiting: gauge(
                "waiting_keys_held",
                "signing roots this operator signed and waits to reconstruct; at most one per \
                 running proposer or aggregator duty and one per attester of a running committee duty",
            ),
            quorum: gauge(
                "quorum_entries_held",
                "partial-signature keys held; only the cluster's validators, slots from \
                 1 + MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS back to the next one, at most \
                 MAX_ROOTS_PER_SENDER roots per operator, validator and slot, and at most \
                 max_partials_per_slot entries per operator and slot",
            ),
            finalized_early: gauge(
                "finalized_early_held",
                "decisions finalized before this runner started their duty; only duties of \
                 slots from 1 + MAX_BLOCK_AGE_SLOTS back (their blocks may still be finalized) to \
                 the next one",
            ),
            missed: gauge(
                "missed_duties_held",
                "duties reported missed, remembered to report a decision that arrives late; \
                 only duties of the last MISSED_MEMORY_SLOTS slots",
            ),
            decided_data: gauge(
                "decided_data_held",
                "slots whose decided attestation data an aggregator may still need; slots \
                 from 1 + MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS back to the next one",
            ),
            step: gauge(
                "step_items_held",
                "duties and objects queued within one handling step (signatures due, \
                 reconstructions to submit, blocks and aggregates to fetch); empty between steps",
            ),
            calls: gauge(
                "pending_calls_held",
                "beacon-node and duty-sink calls and aggregation timers outstanding; each \
                 ends within the fetch timeout or two thirds of its slot, a few per recent duty",
            ),
        }
    }
}
