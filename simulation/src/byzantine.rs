//! Byzantine operators beyond wrong partial signatures: one that floods every channel with
//! malformed, oversized, mutated and replayed messages ([`saboteur`]), one whose every
//! consensus vote goes out with a conflicting twin for the same view ([`Equivocating`]), one
//! that proposes harmful but well-formed values whenever it leads ([`harmful_leader`]), and
//! one that floods partial signatures built for the most decoding work ([`Flood`]).
//!
//! Both keep the operator's honest actors running, so the damage is on top of a node that
//! otherwise looks healthy: the case a real cluster has to survive.

use cohort_actors::committee::{LeaderView, ProposalTamper};
use cohort_ingress::{
    Aggregate, AttestationData, Checkpoint, CommitteeId, DecidedValue, Decision, DutyId, Role,
    SlotClock,
    committee::{Batch, MAX_BLOCK_AGE_SLOTS},
    keys::{self, Signature},
    partial::{PartialSignature, PartialSignatures, Phase},
};
use cohort_marshal::{Digest, PublicKey, Scheme};
use commonware_actor::{Feedback, Unreliable};
use commonware_codec::{Decode, Encode};
use commonware_consensus::simplex::types::{Notarize, Proposal, Vote};
use commonware_cryptography::{Hasher, Sha256};
use commonware_p2p::{CheckedSender, LimitedSender, Recipients, simulated};
use commonware_runtime::{Clock, IoBufs, deterministic};
use rand::RngExt as _;
use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// How many past messages a noisy operator keeps to replay.
const TAP_CAPACITY: usize = 256;

/// Messages a noisy operator can replay or mutate, by channel: what it received from its
/// peers and what it sent itself (as its peers saw it).
#[derive(Clone, Debug, Default)]
pub struct Tap(Arc<Mutex<VecDeque<Tapped>>>);

/// One kept message: its channel and bytes.
type Tapped = (u64, Vec<u8>);

impl Tap {
    fn record(&self, channel: u64, bytes: &[u8]) {
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() == TAP_CAPACITY {
                kept.pop_front();
            }
            kept.push_back((channel, bytes.to_vec()));
        }
    }

    fn pick(&self, at: u64) -> Option<(u64, Vec<u8>)> {
        let kept = self.0.lock().ok()?;
        if kept.is_empty() {
            return None;
        }
        kept.get((at % kept.len() as u64) as usize).cloned()
    }
}

/// Every noisy operator's tap, by its public key; receivers of every operator feed them.
#[derive(Clone, Debug, Default)]
pub struct Taps(Arc<BTreeMap<PublicKey, Tap>>);

impl Taps {
    pub fn new(noisy: impl IntoIterator<Item = PublicKey>) -> Self {
        Self(Arc::new(
            noisy.into_iter().map(|key| (key, Tap::default())).collect(),
        ))
    }

    pub fn tap(&self, key: &PublicKey) -> Option<Tap> {
        self.0.get(key).cloned()
    }

    /// Keeps `bytes`, received by `me` from `sender` on `channel`, for whichever of the two is
    /// noisy.
    pub fn record(&self, me: &PublicKey, sender: &PublicKey, channel: u64, bytes: &[u8]) {
        for key in [me, sender] {
            if let Some(tap) = self.0.get(key) {
                tap.record(channel, bytes);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Sends junk on the noisy operator's channels every few hundred milliseconds, forever: random
/// bytes, a message as large as the network allows, a past message replayed verbatim, one
/// with a byte flipped, one cut short and one with bytes appended. Every receiver must drop it
/// (or block the sender) and carry on.
pub async fn saboteur(
    context: deterministic::Context,
    mut senders: Vec<(u64, simulated::Sender<PublicKey, deterministic::Context>)>,
    tap: Tap,
    max_size: usize,
) {
    if senders.is_empty() {
        return;
    }
    let mut context = context;
    loop {
        let pause = 100 + context.random::<u64>() % 800;
        context.sleep(Duration::from_millis(pause)).await;
        let draw = context.random::<u64>();
        let replayed = tap.pick(draw >> 8);
        let (channel, bytes) = match (draw % 6, replayed) {
            (0, _) | (_, None) => {
                let len = 1 + (draw >> 16) as usize % 512;
                let bytes = (0..len).map(|_| context.random::<u8>()).collect();
                (pick_channel(&senders, draw >> 32), bytes)
            }
            (1, _) => {
                let bytes = (0..max_size).map(|_| context.random::<u8>()).collect();
                (pick_channel(&senders, draw >> 32), bytes)
            }
            (2, Some((channel, bytes))) => (channel, bytes),
            (3, Some((channel, mut bytes))) => {
                if !bytes.is_empty() {
                    let at = (draw >> 16) as usize % bytes.len();
                    bytes[at] ^= 1 << ((draw >> 40) % 8);
                }
                (channel, bytes)
            }
            (4, Some((channel, mut bytes))) => {
                bytes.truncate((draw >> 16) as usize % bytes.len().max(1));
                (channel, bytes)
            }
            (_, Some((channel, mut bytes))) => {
                let extra = 1 + (draw >> 16) as usize % 64;
                bytes.extend((0..extra).map(|_| context.random::<u8>()));
                bytes.truncate(max_size);
                (channel, bytes)
            }
        };
        if let Some((_, sender)) = senders.iter_mut().find(|(c, _)| *c == channel) {
            let _ = commonware_p2p::Sender::send(sender, Recipients::All, bytes, false);
        }
    }
}

fn pick_channel(
    senders: &[(u64, simulated::Sender<PublicKey, deterministic::Context>)],
    draw: u64,
) -> u64 {
    senders[(draw % senders.len() as u64) as usize].0
}

/// The vote channel's sender of an equivocating operator: each notarize vote it sends to more
/// than one peer goes to some of them as a notarize for another payload in the same view,
/// signed with the same key. Those peers cannot verify a payload nobody has, so they nullify
/// or learn the real one from the others' certificate; either way they now hold proof that
/// this operator signed two things in one view.
#[derive(Clone)]
pub struct Equivocating {
    inner: simulated::Sender<PublicKey, deterministic::Context>,
    scheme: Scheme,
}

impl Equivocating {
    pub fn new(
        inner: simulated::Sender<PublicKey, deterministic::Context>,
        scheme: Scheme,
    ) -> Self {
        Self { inner, scheme }
    }
}

impl LimitedSender for Equivocating {
    type PublicKey = PublicKey;
    type Checked<'a> = EquivocatingChecked<'a>;

    fn check(
        &mut self,
        recipients: Recipients<PublicKey>,
    ) -> Result<Self::Checked<'_>, SystemTime> {
        let allowed = self.inner.check(recipients)?.recipients();
        Ok(EquivocatingChecked {
            outer: self,
            recipients: allowed,
        })
    }
}

pub struct EquivocatingChecked<'a> {
    outer: &'a mut Equivocating,
    recipients: Vec<PublicKey>,
}

impl EquivocatingChecked<'_> {
    fn send_to(
        &mut self,
        recipients: Vec<PublicKey>,
        message: IoBufs,
        priority: bool,
    ) -> Unreliable<Feedback> {
        if recipients.is_empty() {
            return Unreliable::Outcome(Feedback::Ok);
        }
        match self.outer.inner.check(Recipients::Some(recipients)) {
            Ok(checked) => checked.send(message, priority),
            Err(_) => Unreliable::Rejected,
        }
    }
}

impl CheckedSender for EquivocatingChecked<'_> {
    type PublicKey = PublicKey;

    fn recipients(&self) -> Vec<PublicKey> {
        self.recipients.clone()
    }

    fn send(mut self, message: impl Into<IoBufs> + Send, priority: bool) -> Unreliable<Feedback> {
        let message: IoBufs = message.into();
        let bytes = message.clone().coalesce();
        let twin = match Vote::<Scheme, Digest>::decode_cfg(
            bytes::Bytes::copy_from_slice(bytes.as_ref()),
            &(),
        ) {
            Ok(Vote::Notarize(notarize)) if self.recipients.len() > 1 => {
                let proposal = &notarize.proposal;
                let other = Sha256::hash(&[proposal.payload.as_ref(), b"equivocation"]);
                Notarize::sign(
                    &self.outer.scheme,
                    Proposal::new(proposal.round, proposal.parent, other),
                )
                .map(|twin| (proposal.round.view().get(), Vote::Notarize(twin).encode()))
            }
            _ => None,
        };
        let Some((view, twin)) = twin else {
            let recipients = std::mem::take(&mut self.recipients);
            return self.send_to(recipients, message, priority);
        };
        // A different third of the peers is misled in each view.
        let (victims, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.recipients)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| (*i as u64 + view).is_multiple_of(3));
        let victims = victims.into_iter().map(|(_, key)| key).collect();
        let rest = rest.into_iter().map(|(_, key)| key).collect();
        let _ = self.send_to(victims, twin.into(), priority);
        self.send_to(rest, message, priority)
    }
}

/// A draw from `(seed, operator, view, what)`: a byzantine leader's choices replay with its
/// run and do not touch the runtime's random stream (the honest actors' draws stay as they are).
fn leader_draw(seed: u64, operator: usize, view: u64, what: &[u8]) -> u64 {
    let digest = Sha256::hash(&[
        b"byzantine leader",
        &seed.to_le_bytes(),
        &(operator as u64).to_le_bytes(),
        &view.to_le_bytes(),
        what,
    ]);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_le_bytes(bytes)
}

/// The harm a byzantine leader does in one view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaderHarm {
    /// An empty block for the slot after the current one, before it starts: finalized early,
    /// it would leave this slot's undecided duties nothing but to expire.
    SlotJump,
    /// A decision whose value is of another kind than its duty's role signs.
    WrongKind,
    /// The slot's attestation data with its source moved up to its target: decided, every
    /// later honest vote of the cluster's validators would surround it.
    BadSource,
    /// The batch in a block of a slot past the block-age window (and before the parent's).
    Stale,
    /// A decision for a duty no one scheduled (a validator the cluster does not run).
    UnknownDuty,
    /// One decision more than a block may carry.
    Oversized,
}

impl LeaderHarm {
    const ALL: [Self; 6] = [
        Self::SlotJump,
        Self::WrongKind,
        Self::BadSource,
        Self::Stale,
        Self::UnknownDuty,
        Self::Oversized,
    ];
}

/// Attestation data for `slot` as a leader could make it up: well-formed, its own head.
fn made_up_data(clock: &SlotClock, slot: u64, salt: u64) -> AttestationData {
    let epoch = clock.epoch_of(slot);
    let root = |tag: &[u8]| Sha256::hash(&[tag, &slot.to_le_bytes(), &salt.to_le_bytes()]);
    AttestationData {
        slot,
        index: 0,
        beacon_block_root: root(b"head"),
        source: Checkpoint {
            epoch: epoch.saturating_sub(1),
            root: root(b"source"),
        },
        target: Checkpoint {
            epoch,
            root: root(b"target"),
        },
    }
}

/// An aggregator decision for a validator far outside any cluster: a duty nobody scheduled.
fn unknown_duty(clock: &SlotClock, slot: u64, salt: u64) -> Decision {
    let data = made_up_data(clock, slot, salt);
    Decision {
        duty: DutyId::validator(
            Role::Aggregator,
            clock.epoch_of(slot),
            slot,
            1_000_000 + salt % 1_000_000,
        ),
        value: DecidedValue::Aggregate(Box::new(Aggregate {
            aggregation_bits: vec![true],
            data,
            signature: [0u8; 96],
        })),
    }
}

/// What a byzantine leader does to `batch` in `view`: one [`LeaderHarm`] drawn from the seed.
pub fn harm(
    seed: u64,
    operator: usize,
    clock: &SlotClock,
    committee: &CommitteeId,
    view: &LeaderView,
    batch: Batch,
) -> (LeaderHarm, Batch) {
    let draw = leader_draw(seed, operator, view.view, b"harm");
    let harm = LeaderHarm::ALL[(draw % LeaderHarm::ALL.len() as u64) as usize];
    let salt = draw >> 8;
    let slot = batch.slot;
    let batch = match harm {
        LeaderHarm::SlotJump => Batch {
            slot: view.current_slot.max(view.parent_slot) + 1,
            decisions: Vec::new(),
        },
        LeaderHarm::WrongKind => {
            let mut decisions = batch.decisions;
            if decisions.is_empty() {
                decisions.push(Decision {
                    duty: DutyId::committee(committee.clone(), clock.epoch_of(slot), slot),
                    value: DecidedValue::Attestation(made_up_data(clock, slot, salt)),
                });
            }
            let pick = (salt as usize) % decisions.len();
            let decision = &mut decisions[pick];
            decision.value = match &decision.value {
                DecidedValue::Attestation(data) => DecidedValue::Aggregate(Box::new(Aggregate {
                    aggregation_bits: vec![true],
                    data: *data,
                    signature: [0u8; 96],
                })),
                DecidedValue::Aggregate(aggregate) => DecidedValue::Attestation(aggregate.data),
                DecidedValue::Block(_) | DecidedValue::Contributions(_) => {
                    DecidedValue::Attestation(made_up_data(clock, slot, salt))
                }
            };
            Batch { slot, decisions }
        }
        LeaderHarm::BadSource => {
            let mut decisions = batch.decisions;
            let honest = decisions
                .iter_mut()
                .find(|d| matches!(d.value, DecidedValue::Attestation(_)));
            match honest {
                Some(decision) => {
                    if let DecidedValue::Attestation(data) = &mut decision.value {
                        data.source = data.target;
                    }
                }
                None => {
                    let mut data = made_up_data(clock, slot, salt);
                    data.source = data.target;
                    decisions.push(Decision {
                        duty: DutyId::committee(committee.clone(), clock.epoch_of(slot), slot),
                        value: DecidedValue::Attestation(data),
                    });
                }
            }
            Batch { slot, decisions }
        }
        // Older than the block-age window, and older than the parent when it is recent.
        LeaderHarm::Stale => Batch {
            slot: view.current_slot.saturating_sub(MAX_BLOCK_AGE_SLOTS + 1),
            decisions: batch.decisions,
        },
        LeaderHarm::UnknownDuty => {
            let mut decisions = batch.decisions;
            decisions.push(unknown_duty(clock, slot, salt));
            Batch { slot, decisions }
        }
        LeaderHarm::Oversized => {
            let mut decisions = batch.decisions;
            let max = cohort_marshal::BlockCfg::default().max_decisions;
            let mut extra = 0u64;
            while decisions.len() <= max {
                decisions.push(unknown_duty(clock, slot, salt.wrapping_add(extra)));
                extra += 1;
            }
            Batch { slot, decisions }
        }
    };
    (harm, batch)
}

/// The proposal rewrite of a byzantine leader (see [`harm`]).
pub fn harmful_leader(
    seed: u64,
    operator: usize,
    clock: SlotClock,
    committee: CommitteeId,
) -> ProposalTamper {
    Arc::new(move |view, batch| {
        let (harm, batch) = harm(seed, operator, &clock, &committee, view, batch);
        tracing::info!(
            view = view.view,
            ?harm,
            slot = batch.slot,
            decisions = batch.decisions.len(),
            "byzantine leader proposes a harmful block"
        );
        batch
    })
}

/// A byzantine operator's partial-signature flood: at the channel's rate limit, messages with
/// as many entries as a message may carry, each a valid G2 point (the costliest to decode:
/// decompression and subgroup check succeed) for a validator of the cluster, in the current
/// slot (inside every window), under fresh roots.
pub struct Flood {
    pub clock: SlotClock,
    pub validators: u64,
    /// Messages per second (the partials channel's per-peer limit on a real node).
    pub rate: u32,
}

impl Flood {
    pub async fn run(
        self,
        context: deterministic::Context,
        mut sender: simulated::Sender<PublicKey, deterministic::Context>,
    ) {
        let points: Vec<Signature> = (0..8u64)
            .map(|i| keys::sign(&keys::interop_secret(i), &[i as u8; 32]))
            .collect();
        let entries = cohort_actors::runner::max_partials_per_message(self.validators as usize);
        let gap = Duration::from_secs(1) / self.rate.max(1);
        let mut built: Option<(u64, bytes::Bytes)> = None;
        let mut nonce = 0u64;
        loop {
            context.sleep(gap).await;
            let slot = self.clock.current_slot(context.current());
            // A fresh message per slot: re-sending one within a slot costs this harness
            // nothing, and each copy still asks a receiver for the same decoding.
            let bytes = match &built {
                Some((at, bytes)) if *at == slot => bytes.clone(),
                _ => {
                    nonce += 1;
                    let signatures = (0..entries)
                        .map(|i| PartialSignature {
                            validator_index: i as u64 % self.validators.max(1),
                            signing_root: Sha256::hash(&[
                                b"flood",
                                &nonce.to_le_bytes(),
                                &(i as u64).to_le_bytes(),
                            ]),
                            signature: points[i % points.len()],
                        })
                        .collect();
                    let message = PartialSignatures {
                        slot,
                        phase: if nonce.is_multiple_of(2) {
                            Phase::PreConsensus
                        } else {
                            Phase::PostConsensus
                        },
                        signatures,
                    };
                    let bytes = message.encode();
                    built = Some((slot, bytes.clone()));
                    bytes
                }
            };
            let _ = commonware_p2p::Sender::send(&mut sender, Recipients::All, bytes, false);
        }
    }
}

/// A byzantine operator's attestation offers: at each slot's start, before any honest node can
/// have answered (and so before its own honest offer, which peers then drop as a second one),
/// data no beacon node reported: another head, and a source checkpoint of its own making one
/// epoch before the target. One such offer must never be proposed by an honest leader (f+1
/// alike are needed) nor make a follower vouch for that source.
pub async fn lying_offers(
    context: deterministic::Context,
    clock: SlotClock,
    mut sender: simulated::Sender<PublicKey, deterministic::Context>,
) {
    use commonware_p2p::Sender as _;
    loop {
        let slot = clock.current_slot(context.current()) + 1;
        context
            .sleep_until(clock.slot_start(slot) + Duration::from_millis(1))
            .await;
        let epoch = clock.epoch_of(slot);
        let made_up = |what: &[u8]| Sha256::hash(&[b"lying offer", what, &slot.to_le_bytes()]);
        let lie = AttestationData {
            slot,
            index: 0,
            beacon_block_root: made_up(b"head"),
            source: Checkpoint {
                epoch: epoch.saturating_sub(1),
                root: made_up(b"source"),
            },
            target: Checkpoint {
                epoch,
                root: made_up(b"target"),
            },
        };
        let _ = sender.send(Recipients::All, lie.encode(), false);
    }
}

#[cfg(test)]
mod leader_tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_byzantine_leader_draws_every_harm_from_its_seed_and_replays_it() {
        let clock = SlotClock::mainnet(std::time::UNIX_EPOCH);
        let committee = CommitteeId::new(vec![1, 2, 3, 4]).expect("a committee");
        let mut seen = BTreeSet::new();
        for view in 0..200 {
            let at = LeaderView {
                view,
                current_slot: 40,
                parent_slot: 40,
            };
            let batch = || Batch {
                slot: 40,
                decisions: Vec::new(),
            };
            let (harm, out) = harm(7, 1, &clock, &committee, &at, batch());
            assert_eq!(
                (harm, out.clone()),
                super::harm(7, 1, &clock, &committee, &at, batch())
            );
            match harm {
                LeaderHarm::SlotJump => assert_eq!(out.slot, 41),
                LeaderHarm::Stale => assert!(out.slot + MAX_BLOCK_AGE_SLOTS < 40),
                LeaderHarm::Oversized => assert_eq!(
                    out.decisions.len(),
                    cohort_marshal::BlockCfg::default().max_decisions + 1
                ),
                LeaderHarm::BadSource => {
                    let DecidedValue::Attestation(data) = out.decisions[0].value else {
                        panic!("a committee decision")
                    };
                    assert_eq!(data.source, data.target);
                }
                LeaderHarm::WrongKind => {
                    assert!(matches!(out.decisions[0].value, DecidedValue::Aggregate(_)))
                }
                LeaderHarm::UnknownDuty => assert_eq!(out.decisions.len(), 1),
            }
            seen.insert(format!("{harm:?}"));
        }
        assert_eq!(seen.len(), LeaderHarm::ALL.len());
    }
}
