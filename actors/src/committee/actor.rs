mod offers;
mod verify;

use super::{Config, skips::Skips};
use cohort_ingress::{
    AttestationData, Checkpoint, CommitteeId, DecidedValue, Decision, DutyId, Role, SlotClock,
    committee::{Batch, MAX_BLOCK_AGE_SLOTS, Message},
};
use cohort_marshal::BlockCfg;
use commonware_codec::Encode as _;
use commonware_cryptography::PublicKey;
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{
    Clock, ContextCell, Handle, Metrics, Spawner, spawn_cell,
    telemetry::metrics::{GaugeExt as _, Registered},
};
use commonware_utils::{
    channel::{mpsc, oneshot},
    ordered::Set,
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime},
};
use tracing::{debug, info, warn};

/// How many slots of finalized duties are remembered to refuse a second decision.
const DECIDED_MEMORY_SLOTS: u64 = 64;

struct PendingPropose {
    view: u64,
    parent_slot: u64,
    included: BTreeSet<DutyId>,
    heartbeat_at: SystemTime,
    response: oneshot::Sender<Batch>,
}

struct PendingVerify {
    slot: u64,
    decisions: Arc<Vec<Decision>>,
    give_up_at: SystemTime,
    response: oneshot::Sender<bool>,
}

/// How much the committee holds in memory, set at every wake after pruning, so a long run can
/// show that nothing grows with its length. Each help text says what bounds its gauge.
struct Held {
    pool: Registered<Gauge>,
    known: Registered<Gauge>,
    decided: Registered<Gauge>,
    decided_data: Registered<Gauge>,
    proposals: Registered<Gauge>,
    verifications: Registered<Gauge>,
    offers: Registered<Gauge>,
}

impl Held {
    fn new(context: &impl Metrics) -> Self {
        let gauge = |name: &str, help: &str| context.register(name, help, Gauge::default());
        Self {
            pool: gauge(
                "pool_values_held",
                "values waiting for agreement; only this operator's duties of the current and \
                 previous slot",
            ),
            known: gauge(
                "known_duties_held",
                "duties this operator can vouch for; those of the last DECIDED_MEMORY_SLOTS \
                 slots and of the epochs fetched ahead (up to the end of the next epoch)",
            ),
            decided: gauge(
                "decided_duties_held",
                "duties finalized in the last DECIDED_MEMORY_SLOTS slots (or the next one)",
            ),
            decided_data: gauge(
                "decided_data_held",
                "slots with finalized attestation data; the last DECIDED_MEMORY_SLOTS slots \
                 and the next",
            ),
            proposals: gauge(
                "pending_proposals_held",
                "leader requests waiting for work or the heartbeat; consensus keeps one open at \
                 a time, and one it abandoned is dropped at the next wake",
            ),
            verifications: gauge(
                "pending_verifications_held",
                "block checks waiting for this operator to learn a duty; consensus keeps one \
                 open at a time, and one it abandoned is dropped at the next wake",
            ),
            offers: gauge(
                "offers_held",
                "attestation data peers offered; at most one per operator for each of the \
                 previous, current and next slot",
            ),
        }
    }
}

/// Why a follower will not vote for a value.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Valid,
    /// Not checkable yet (unknown duty, no view of the beacon); ask again later.
    Unknown,
    Invalid(&'static str),
}

pub struct Actor<E, P: PublicKey> {
    context: ContextCell<E>,
    clock: SlotClock,
    committee: CommitteeId,
    heartbeat: Duration,
    verify_grace: Duration,
    check_proposal: super::ProposalCheck,
    mailbox: mpsc::Receiver<Message>,

    /// Values waiting for agreement, from this operator's runner.
    pool: BTreeMap<DutyId, DecidedValue>,
    /// Duties this operator's own schedule holds or its runner started: the only duties it
    /// can vouch for.
    known: BTreeSet<DutyId>,
    /// Epochs whose whole schedule this operator knows: a duty of one that is not in `known`
    /// does not exist, and a block deciding it is refused at once (waiting would cost the view
    /// its leader timeout).
    scheduled: BTreeSet<u64>,
    /// The slot of the attestation value `justified` came from: once this operator's own value
    /// for a block's slot is in, a source newer than its justified checkpoint is refused
    /// rather than waited for.
    justified_slot: u64,
    /// Duties already finalized: a second decision for one would be a double vote.
    decided: BTreeSet<DutyId>,
    /// The attestation data the cluster finalized per slot: what an aggregate must cover.
    decided_data: BTreeMap<u64, AttestationData>,
    /// The latest finalized checkpoint this operator's beacon node reported.
    finalized: Option<Checkpoint>,
    /// The newest justified checkpoint this operator's own beacon node voted from (the source
    /// of the attestation data it answered): no decided source may be newer, or an honest
    /// vote after it would surround it.
    justified: Option<Checkpoint>,

    proposals: Vec<PendingPropose>,
    /// Who voted to skip which recent view.
    skips: Skips,
    /// Work besides duty values waits for a block (see [`Message::OtherWork`]).
    other_work: bool,
    verifications: Vec<PendingVerify>,
    /// The cluster's operators in share order: an offer's sender is named by its position.
    participants: Set<P>,
    /// Attestation data peers' beacon nodes answered, by slot and offering operator (the
    /// first offer of each counts): what a leader without its own value proposes once f+1
    /// operators offered the same.
    offers: BTreeMap<u64, BTreeMap<u32, AttestationData>>,

    blocks_proposed: Registered<Counter>,
    empty_blocks_proposed: Registered<Counter>,
    values_rejected: Registered<Counter>,
    views_given_up: Registered<Counter>,
    offered_values_proposed: Registered<Counter>,
    offers_refused: Registered<Counter>,
    held: Held,
}

impl<E: Clock + Spawner + Metrics, P: PublicKey> Actor<E, P> {
    pub(super) fn new(context: E, config: Config<P>, mailbox: mpsc::Receiver<Message>) -> Self {
        let blocks_proposed = context.register(
            "blocks_proposed",
            "blocks this operator proposed as leader",
            Counter::default(),
        );
        let empty_blocks_proposed = context.register(
            "empty_blocks_proposed",
            "heartbeat blocks proposed with no work",
            Counter::default(),
        );
        let values_rejected = context.register(
            "values_rejected",
            "blocks this operator refused to vote for",
            Counter::default(),
        );
        let views_given_up = context.register(
            "views_given_up",
            "views this operator led and gave up unproposed because f+1 operators had already \
             voted to skip them",
            Counter::default(),
        );
        let offered_values_proposed = context.register(
            "offered_values_proposed",
            "slots whose attestation data this operator proposed as leader from f+1 operators' \
             offers, its own beacon node not having answered yet",
            Counter::default(),
        );
        let offers_refused = context.register(
            "offers_refused",
            "attestation offers dropped: malformed, from outside the cluster, for a slot not \
             near the current one, or a second one from an operator for a slot",
            Counter::default(),
        );
        let held = Held::new(&context);
        Self {
            context: ContextCell::new(context),
            clock: config.clock,
            committee: config.committee,
            heartbeat: config.heartbeat,
            verify_grace: config.verify_grace,
            check_proposal: config.check_proposal,
            mailbox,
            pool: BTreeMap::new(),
            known: BTreeSet::new(),
            decided_data: BTreeMap::new(),
            decided: BTreeSet::new(),
            finalized: None,
            justified: None,
            justified_slot: 0,
            scheduled: BTreeSet::new(),
            proposals: Vec::new(),
            skips: Skips::new(config.participants.len()),
            other_work: false,
            verifications: Vec::new(),
            participants: config.participants,
            offers: BTreeMap::new(),
            blocks_proposed,
            empty_blocks_proposed,
            values_rejected,
            views_given_up,
            offered_values_proposed,
            offers_refused,
            held,
        }
    }

    /// Runs the actor under the context the wiring named it with, offering and hearing
    /// attestation data on the offers channel.
    pub fn start<Tx, Rx>(mut self, sender: Tx, receiver: Rx) -> Handle<()>
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        spawn_cell!(self.context, self.run(sender, receiver))
    }

    async fn run<Tx, Rx>(mut self, mut sender: Tx, mut receiver: Rx)
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        loop {
            let now = self.context.current();
            self.answer_proposals(now);
            self.answer_verifications(now);
            self.prune(now);
            self.set_held();

            let wake = self.next_wake(now);
            let timer = async {
                match wake {
                    Some(at) => self.context.sleep_until(at).await,
                    None => futures::future::pending().await,
                }
            };
            // Priorities: this operator's own actors (values, consensus's questions), then
            // peers' offers, then the clock.
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else {
                        debug!("committee mailbox closed; stopping");
                        return;
                    };
                    if let Some(data) = self.handle(message) {
                        // Best effort: a peer that misses it proposes on its own node's answer.
                        let recipients = sender.send(Recipients::All, data.encode(), false);
                        debug!(
                            slot = data.slot,
                            peers = recipients.len(),
                            "offered this operator's attestation data to its peers"
                        );
                    }
                },
                received = receiver.recv() => {
                    match received {
                        Ok((peer, bytes)) => self.on_offer(peer, bytes),
                        Err(err) => {
                            warn!(%err, "offers channel closed; the committee stops");
                            return;
                        }
                    }
                },
                _ = timer => {},
            }
        }
    }

    /// Takes one mailbox message; returns attestation data to offer to the peers (this
    /// operator's own, first handed over for its slot).
    fn handle(&mut self, message: Message) -> Option<AttestationData> {
        let mut offer = None;
        match message {
            Message::Submit {
                duty,
                value,
                finalized,
            } => {
                if self.finalized.is_none_or(|f| finalized.epoch >= f.epoch) {
                    self.finalized = Some(finalized);
                }
                if let DecidedValue::Attestation(data) = &value {
                    self.justified_slot = self.justified_slot.max(duty.slot);
                    if self.justified.is_none_or(|j| data.source.epoch >= j.epoch) {
                        self.justified = Some(data.source);
                    }
                }
                self.known.insert(duty.clone());
                if !self.decided.contains(&duty) {
                    if let (Role::Committee, DecidedValue::Attestation(data)) = (&duty.role, &value)
                        && !self.pool.contains_key(&duty)
                    {
                        offer = Some(*data);
                    }
                    self.pool.insert(duty, value);
                }
            }
            Message::Propose {
                view,
                parent_slot,
                included,
                response,
            } => {
                let heartbeat_at = self.heartbeat_deadline(&included);
                self.proposals.push(PendingPropose {
                    view,
                    parent_slot,
                    included,
                    heartbeat_at,
                    response,
                });
            }
            Message::Verify {
                slot,
                decisions,
                response,
            } => {
                // The slot is the leader's word: saturate rather than overflow on a wild one.
                let give_up_at = self.clock.slot_start(slot.saturating_add(1)) + self.verify_grace;
                self.verifications.push(PendingVerify {
                    slot,
                    decisions,
                    give_up_at,
                    response,
                });
            }
            Message::Expect { complete, duties } => {
                let current = self.clock.current_slot(self.context.current());
                let oldest = DutyId::first_of_slot(current.saturating_sub(DECIDED_MEMORY_SLOTS));
                if let Some(epoch) = complete
                    && epoch + 1 >= self.clock.epoch_of(current)
                {
                    self.scheduled.insert(epoch);
                }
                self.known
                    .extend(duties.into_iter().filter(|duty| *duty >= oldest));
            }
            Message::Finalized { decisions } => {
                for decision in decisions.iter() {
                    if let DecidedValue::Attestation(data) = &decision.value {
                        self.decided_data.insert(decision.duty.slot, *data);
                    }
                    self.pool.remove(&decision.duty);
                    self.decided.insert(decision.duty.clone());
                }
            }
            Message::Nullify { view, signer } => self.skips.record(view, signer),
            Message::OtherWork(waiting) => self.other_work = waiting,
        }
        offer
    }

    fn set_held(&self) {
        let set = |gauge: &Registered<Gauge>, len: usize| {
            let _ = gauge.try_set(len);
        };
        set(&self.held.pool, self.pool.len());
        set(&self.held.known, self.known.len());
        set(&self.held.decided, self.decided.len());
        set(&self.held.decided_data, self.decided_data.len());
        set(&self.held.proposals, self.proposals.len());
        set(&self.held.verifications, self.verifications.len());
        set(
            &self.held.offers,
            self.offers.values().map(BTreeMap::len).sum::<usize>(),
        );
    }

    /// When an idle leader stops waiting for work and proposes an empty block.
    ///
    /// Just after the next committee-duty time that still has work coming, rather than at an
    /// arbitrary moment: blocks then stay aligned to the slot schedule, so a view with a crashed
    /// leader times out before the next slot's values are due instead of straddling them, and
    /// a slot whose duty was decided early (on a head event) gets no extra empty block.
    fn heartbeat_deadline(&self, included: &BTreeSet<DutyId>) -> SystemTime {
        let now = self.context.current();
        let grace = self.clock.interval_duration() / 4;
        let slot = self.clock.current_slot(now);
        let outstanding = self
            .known
            .range(DutyId::first_of_slot(slot)..DutyId::first_of_slot(slot + 1))
            .any(|duty| !self.decided.contains(duty) && !included.contains(duty));
        let mut due = self.clock.interval_start(slot, 1) + grace;
        if !outstanding || due <= now {
            due = self.clock.interval_start(slot + 1, 1) + grace;
        }
        (now + self.heartbeat).min(due)
    }

    /// The earliest time something waiting here must be answered without new input.
    fn next_wake(&self, now: SystemTime) -> Option<SystemTime> {
        let proposal = self.proposals.iter().map(|p| p.heartbeat_at).min();
        let verify = self.verifications.iter().map(|v| v.give_up_at).min();
        // Slot boundaries matter while anything waits: a new slot changes what is proposable.
        let boundary = (!self.proposals.is_empty() || !self.verifications.is_empty())
            .then(|| self.clock.next_interval_boundary(now));
        [proposal, verify, boundary].into_iter().flatten().min()
    }

    fn answer_proposals(&mut self, now: SystemTime) {
        if self.proposals.is_empty() {
            return;
        }
        let slot = self.clock.current_slot(now);
        let mut waiting = Vec::new();
        for pending in std::mem::take(&mut self.proposals) {
            if pending.response.is_closed() {
                continue; // Consensus abandoned the view.
            }
            if self.skips.lost(pending.view) {
                // Dropping the request makes consensus vote to skip the view now: with this
                // vote the skip reaches a quorum at once instead of after the certification
                // timeout, and the work waiting here goes to the next leader's block.
                self.views_given_up.inc();
                info!(
                    view = pending.view,
                    skipped_by = self.skips.count(pending.view),
                    "giving up the view this operator leads: enough operators voted to skip it \
                     that its block cannot be finalized; consensus moves to the next leader"
                );
                continue;
            }
            // The oldest slot that still has undecided values and may still get a block
            // (a view lost to a timeout must not drop its slot's duties), else the current one.
            let max_decisions = BlockCfg::default().max_decisions;
            let undecided = |block_slot: u64| -> Vec<Decision> {
                // The committee duty sorts first in its slot, as pool order has it.
                self.offered_decision(block_slot, &pending.included)
                    .into_iter()
                    .chain(
                        self.pool
                            .range(DutyId::first_of_slot(block_slot)..)
                            .take_while(|(id, _)| id.slot == block_slot)
                            .filter(|(id, _)| {
                                !pending.included.contains(*id) && !self.decided.contains(*id)
                            })
                            .map(|(id, value)| Decision {
                                duty: id.clone(),
                                value: value.clone(),
                            }),
                    )
                    // What a block may carry (what peers decode); the rest, last in duty order
                    // (aggregates, then contributions), waits for the next block.
                    .take(max_decisions)
                    .collect()
            };
            let newest = slot.max(pending.parent_slot);
            let oldest = slot
                .saturating_sub(MAX_BLOCK_AGE_SLOTS)
                .max(pending.parent_slot);
            let (block_slot, decisions) = (oldest..newest)
                .map(|s| (s, undecided(s)))
                .find(|(_, decisions)| !decisions.is_empty())
                .unwrap_or_else(|| (newest, undecided(newest)));
            if decisions.is_empty() && now < pending.heartbeat_at && !self.other_work {
                waiting.push(pending);
                continue;
            }
            self.blocks_proposed.inc();
            if let Some(first) = decisions.first()
                && first.duty.role == Role::Committee
                && !self.pool.contains_key(&first.duty)
            {
                self.offered_values_proposed.inc();
                info!(
                    slot = block_slot,
                    "proposing the slot's attestation data as f+1 operators offered it; this \
                     operator's beacon node has not answered yet"
                );
            }
            if decisions.is_empty() {
                self.empty_blocks_proposed.inc();
                debug!(
                    slot = block_slot,
                    "no work waiting; proposing a heartbeat block"
                );
            } else {
                info!(
                    slot = block_slot,
                    decisions = decisions.len(),
                    "proposing a block with the values waiting for agreement"
                );
            }
            let _ = pending.response.send(Batch {
                slot: block_slot,
                decisions,
            });
        }
        self.proposals = waiting;
    }

    fn prune(&mut self, now: SystemTime) {
        let slot = self.clock.current_slot(now);
        // Values of past slots can no longer be decided in their slot's block.
        let keep_from = DutyId::first_of_slot(slot.saturating_sub(1));
        self.pool = self.pool.split_off(&keep_from);
        let memory = DutyId::first_of_slot(slot.saturating_sub(DECIDED_MEMORY_SLOTS));
        self.decided = self.decided.split_off(&memory);
        self.known = self.known.split_off(&memory);
        self.decided_data = self
            .decided_data
            .split_off(&slot.saturating_sub(DECIDED_MEMORY_SLOTS));
        self.offers = self.offers.split_off(&slot.saturating_sub(1));
        self.scheduled = self.scheduled.split_off(
            &self
                .clock
                .epoch_of(slot.saturating_sub(DECIDED_MEMORY_SLOTS)),
        );
    }
}
