//! The devnet beacon chain every operator's beacon node submits to: it builds blocks and
//! aggregates, and checks every signed object it receives the way a real beacon node would,
//! with its own BLS verification (blst, not the code path the operators sign with).
//!
//! It counts what it accepted per role, remembers when each object was first accepted (the
//! submission latency from slot start), and keeps any second, different valid signature for
//! one object as evidence of a conflicting signature.

use crate::DevnetBeacon;
use cohort_ingress::{
    Aggregate, AttestationData, BlockHeader, Root, SignedAggregate, SignedAttestation, SignedBlock,
    SignedContributionAndProof, SignedSyncCommitteeMessage, SinkError, SourceError,
    SyncCommitteeContribution,
    keys::{self, Signature},
    signing::{self, ForkInfo},
};
use commonware_codec::Encode;
use commonware_cryptography::bls12381::primitives::variant::Variant;
use commonware_cryptography::{Hasher, Sha256, bls12381::primitives::variant::MinPk};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::SystemTime,
};

/// The kinds of signed objects the chain takes, as reports and metrics name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Attestation,
    Proposal,
    Aggregate,
    SyncMessage,
    Contribution,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Attestation,
        Kind::Proposal,
        Kind::Aggregate,
        Kind::SyncMessage,
        Kind::Contribution,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Attestation => "attestation",
            Self::Proposal => "proposal",
            Self::Aggregate => "aggregate",
            Self::SyncMessage => "sync_message",
            Self::Contribution => "contribution",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// By name: a map keyed by kind lists its entries (and serializes its keys) in the order a
/// map keyed by the names would.
impl Ord for Kind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Kind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct KindStats {
    /// Distinct objects (validator, slot; and subcommittee for a contribution) submitted at
    /// least once.
    pub submitted: u64,
    /// Of those, accepted: a valid signature from the validator's key over the right root.
    pub accepted: u64,
    /// Submissions refused (bad signature, not scheduled, unknown block).
    pub rejected: u64,
    /// Byte-identical resubmissions by other operators (every operator submits).
    pub duplicates: u64,
}

struct Accepted {
    signature: [u8; 96],
}

/// One signed object as the chain tells them apart: kind, slot, validator, and the
/// subcommittee for a contribution (0 for every other kind).
type ObjectKey = (Kind, u64, u64, u64);

/// An attester's place in its slot: which beacon committee, its position there, and how many
/// members that committee has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seat {
    pub committee: u64,
    pub position: u64,
    pub length: u64,
}

#[derive(Default)]
struct State {
    public_keys: BTreeMap<u64, blst::min_pk::PublicKey>,
    accepted: BTreeMap<ObjectKey, Accepted>,
    stats: BTreeMap<Kind, KindStats>,
    /// Accepted attestations per slot: what aggregates are built from.
    attestations: BTreeMap<u64, Vec<(u64, AttestationData, [u8; 96])>>,
    /// Blocks this chain built (with a valid RANDAO reveal), by slot.
    built: BTreeMap<u64, Vec<BlockHeader>>,
    /// Each attester's seat per slot (validator -> committee, position, its length), computed
    /// once per epoch.
    committees: BTreeMap<u64, BTreeMap<u64, Seat>>,
    /// Sync committees by period, computed once each.
    sync_committees: BTreeMap<u64, Vec<u64>>,
    /// Accepted sync committee messages per slot: what contributions are built from.
    sync_messages: BTreeMap<u64, Vec<(u64, Root, [u8; 96])>>,
    latencies: BTreeMap<Kind, Vec<u64>>,
    /// Everything submitted, accepted or not.
    submitted: BTreeSet<ObjectKey>,
    conflicts: Vec<String>,
    rejections: Vec<String>,
    /// Validators another party runs too (a doppelganger), live from the given epoch on.
    elsewhere: BTreeMap<u64, u64>,
    /// Accepted voluntary exits: validator -> epoch.
    exits: BTreeMap<u64, u64>,
}

/// What the chain saw over a run.
#[derive(Clone, Debug, Default)]
pub struct ChainReport {
    pub stats: BTreeMap<Kind, KindStats>,
    /// Simulated milliseconds from slot start to acceptance, by kind.
    pub submit_latencies_ms: BTreeMap<Kind, Vec<u64>>,
    pub conflicts: Vec<String>,
    /// The first few rejections, for the report's reader.
    pub rejections: Vec<String>,
    /// (kind, slot, validator) of every object submitted at least once (a contribution once
    /// per subcommittee).
    pub submitted: Vec<(Kind, u64, u64)>,
    /// (kind, slot, validator) of every accepted object (a contribution once per
    /// subcommittee).
    pub accepted: Vec<(Kind, u64, u64)>,
}

/// The shared devnet chain. Cheap to clone; every operator's beacon node holds one.
#[derive(Clone)]
pub struct DevnetChain {
    beacon: DevnetBeacon,
    fork: ForkInfo,
    /// The chain's clock: replaced when the cluster's runtime restarts after a power cut (the
    /// chain itself, like the real one, keeps running).
    now: Arc<Mutex<Now>>,
    state: Arc<Mutex<State>>,
    /// Accept a correctly signed block for the right slot and proposer that another beacon
    /// node built. A simulation shares one chain, so every block it takes was built here; an
    /// operator process runs its own devnet chain, and a follower's may not have built the
    /// leader's block.
    accepts_blocks_built_elsewhere: bool,
}

type Now = Arc<dyn Fn() -> SystemTime + Send + Sync>;

const DST: &[u8] = MinPk::MESSAGE;

impl DevnetChain {
    pub fn new(
        beacon: DevnetBeacon,
        fork: ForkInfo,
        now: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    ) -> Self {
        Self {
            beacon,
            fork,
            now: Arc::new(Mutex::new(now)),
            state: Arc::new(Mutex::new(State::default())),
            accepts_blocks_built_elsewhere: false,
        }
    }

    /// This chain, taking blocks another operator's devnet beacon node built (a node running
    /// its own embedded devnet beacon).
    pub fn accepting_blocks_built_elsewhere(mut self) -> Self {
        self.accepts_blocks_built_elsewhere = true;
        self
    }

    /// Reads time from `now` from here on.
    pub fn set_clock(&self, now: Now) {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = now;
    }

    fn now(&self) -> SystemTime {
        let now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        now()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock ends the run anyway; keep reporting.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The validator's public key, as a beacon node knows it from the deposit.
    fn public_key(state: &mut State, validator: u64) -> Option<blst::min_pk::PublicKey> {
        if let Some(key) = state.public_keys.get(&validator) {
            return Some(*key);
        }
        let public = commonware_cryptography::bls12381::primitives::ops::compute_public::<MinPk>(
            &keys::interop_secret(validator),
        );
        let key = blst::min_pk::PublicKey::key_validate(&public.encode()).ok()?;
        state.public_keys.insert(validator, key);
        Some(key)
    }

    fn verify(state: &mut State, validator: u64, root: &[u8; 32], signature: &[u8; 96]) -> bool {
        let Some(key) = Self::public_key(state, validator) else {
            return false;
        };
        let Ok(signature) = blst::min_pk::Signature::sig_validate(signature, true) else {
            return false;
        };
        signature.verify(true, root, DST, &[], &key, false) == blst::BLST_ERROR::BLST_SUCCESS
    }

    /// Records one submission of `key`; `check` verifies it when it is new.
    fn submit(
        &self,
        key: ObjectKey,
        signature: [u8; 96],
        check: impl FnOnce(&mut State) -> Result<(), String>,
    ) -> Result<(), SinkError> {
        let now = self.now();
        let mut state = self.lock();
        let (kind, slot, validator, _) = key;
        state.submitted.insert(key);
        if let Some(existing) = state.accepted.get(&key) {
            if existing.signature == signature {
                state.stats.entry(kind).or_default().duplicates += 1;
                return Ok(());
            }
            // Another valid signature for the same duty is a conflicting signature.
            if check(&mut state).is_ok() {
                state.conflicts.push(format!(
                    "{} of validator {validator} in slot {slot} signed twice with different contents",
                    kind.as_str()
                ));
            }
            return Err(SinkError::Refused("already have this object".into()));
        }
        match check(&mut state) {
            Ok(()) => {
                let stats = state.stats.entry(kind).or_default();
                stats.submitted += 1;
                stats.accepted += 1;
                state.accepted.insert(key, Accepted { signature });
                let slot_start = self.beacon.slot_start(slot);
                let latency = now.duration_since(slot_start).unwrap_or_default();
                state
                    .latencies
                    .entry(kind)
                    .or_default()
                    .push(latency.as_millis() as u64);
                Ok(())
            }
            Err(reason) => {
                let stats = state.stats.entry(kind).or_default();
                stats.rejected += 1;
                if state.rejections.len() < 16 {
                    state
                        .rejections
                        .push(format!("{kind:?} {slot} {validator}: {reason}"));
                }
                Err(SinkError::Refused(reason))
            }
        }
    }

    pub fn submit_attestations(
        &self,
        attestations: Vec<SignedAttestation>,
    ) -> Result<(), SinkError> {
        let mut refused = 0;
        for attestation in attestations {
            let validator = attestation.duty.validator_index;
            let slot = attestation.data.slot;
            let epoch = self.beacon.epoch_of(slot);
            let data = attestation.data;
            let signature = keys::signature_bytes(&attestation.signature);
            let root = self.fork.attestation_signing_root(&data);
            let scheduled = self.beacon.attester_slot(epoch, validator) == slot;
            let key = (Kind::Attestation, slot, validator, 0);
            let result = self.submit(key, signature, |state| {
                if !scheduled {
                    return Err("validator does not attest in this slot".into());
                }
                if !Self::verify(state, validator, &root, &signature) {
                    return Err("invalid signature".into());
                }
                state
                    .attestations
                    .entry(slot)
                    .or_default()
                    .push((validator, data, signature));
                Ok(())
            });
            if result.is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            return Err(SinkError::Refused(format!(
                "{refused} attestations refused"
            )));
        }
        Ok(())
    }

    pub fn submit_block(&self, block: SignedBlock) -> Result<(), SinkError> {
        let header = block.proposal.header;
        let signature = keys::signature_bytes(&block.signature);
        let root = self.fork.block_signing_root(&header);
        self.submit(
            (Kind::Proposal, header.slot, header.proposer_index, 0),
            signature,
            |state| {
                let built = state
                    .built
                    .get(&header.slot)
                    .is_some_and(|blocks| blocks.contains(&header));
                let built_elsewhere = self.accepts_blocks_built_elsewhere
                    && self.beacon.proposer(header.slot) == header.proposer_index
                    && header.parent_root == self.beacon.block_root(header.slot.saturating_sub(1))
                    && header.state_root == Self::state_root(header.slot);
                if !built && !built_elsewhere {
                    return Err("block was not built by this chain".into());
                }
                if !Self::verify(state, header.proposer_index, &root, &signature) {
                    return Err("invalid signature".into());
                }
                Ok(())
            },
        )
    }

    pub fn submit_aggregate(&self, signed: SignedAggregate) -> Result<(), SinkError> {
        let validator = signed.aggregator_index;
        let slot = signed.aggregate.data.slot;
        let epoch = self.beacon.epoch_of(slot);
        let selection_proof = keys::signature_bytes(&signed.selection_proof);
        let signature = keys::signature_bytes(&signed.signature);
        let selection_root = signing::compute_signing_root(
            signing::slot_root(slot),
            self.fork.domain(signing::DOMAIN_SELECTION_PROOF),
        );
        let aggregate = signed.aggregate.clone();
        let object = signing::aggregate_and_proof_root(
            validator,
            &aggregate.aggregation_bits,
            &aggregate.data,
            &aggregate.signature,
            &selection_proof,
        );
        let seat = self.seat(slot, validator);
        let scheduled = self.beacon.attester_slot(epoch, validator) == slot;
        self.submit((Kind::Aggregate, slot, validator, 0), signature, |state| {
            if !scheduled {
                return Err("aggregator does not attest in this slot".into());
            }
            let object = object.map_err(|err| err.to_string())?;
            if !Self::verify(state, validator, &selection_root, &selection_proof) {
                return Err("invalid selection proof".into());
            }
            let committee_length = seat.map_or(0, |seat| seat.length);
            if !signing::is_aggregator(committee_length, &selection_proof) {
                return Err("selection proof does not select this aggregator".into());
            }
            let root = signing::compute_signing_root(
                object,
                self.fork.domain(signing::DOMAIN_AGGREGATE_AND_PROOF),
            );
            if !Self::verify(state, validator, &root, &signature) {
                return Err("invalid signature".into());
            }
            Ok(())
        })
    }

    /// The sync committee signing in `slot`, cached per period.
    fn sync_committee(&self, state: &mut State, slot: u64) -> Vec<u64> {
        let clock = self.beacon.clock();
        let period = clock
            .sync_committee
            .period_of(clock.sync_committee_epoch(slot));
        state
            .sync_committees
            .entry(period)
            .or_insert_with(|| self.beacon.sync_committee(period))
            .clone()
    }

    pub fn submit_sync_committee_messages(
        &self,
        messages: Vec<SignedSyncCommitteeMessage>,
    ) -> Result<(), SinkError> {
        let mut refused = 0;
        for message in messages {
            let validator = message.validator_index;
            let slot = message.slot;
            let root = message.beacon_block_root;
            let signature = keys::signature_bytes(&message.signature);
            let signing_root = self.fork.sync_committee_message_signing_root(&root);
            let key = (Kind::SyncMessage, slot, validator, 0);
            let result = self.submit(key, signature, |state| {
                if !self.sync_committee(state, slot).contains(&validator) {
                    return Err("validator is not in the sync committee of this slot".into());
                }
                if !self.beacon.is_head_of(slot, &root) {
                    return Err("message for a block root this chain does not know".into());
                }
                if !Self::verify(state, validator, &signing_root, &signature) {
                    return Err("invalid signature".into());
                }
                state
                    .sync_messages
                    .entry(slot)
                    .or_default()
                    .push((validator, root, signature));
                Ok(())
            });
            if result.is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            return Err(SinkError::Refused(format!(
                "{refused} sync committee messages refused"
            )));
        }
        Ok(())
    }

    /// The aggregate of every accepted sync committee message of `slot` for
    /// `beacon_block_root` from the members of `subcommittee_index`: one bit, and one copy of
    /// the member's signature, per position the member holds there.
    pub fn contribution(
        &self,
        slot: u64,
        subcommittee_index: u64,
        beacon_block_root: Root,
    ) -> Result<SyncCommitteeContribution, SourceError> {
        let spec = self.beacon.clock().sync_committee;
        if subcommittee_index >= spec.subnet_count {
            return Err(SourceError::Unavailable(format!(
                "no sync subcommittee {subcommittee_index}"
            )));
        }
        let mut state = self.lock();
        let committee = self.sync_committee(&mut state, slot);
        let size = spec.subcommittee_size() as usize;
        let start = subcommittee_index as usize * size;
        let members = committee.get(start..start + size).unwrap_or_default();
        let mut bits = vec![false; size];
        let mut signatures = Vec::new();
        for (validator, root, signature) in state.sync_messages.get(&slot).into_iter().flatten() {
            if *root != beacon_block_root {
                continue;
            }
            let Ok(signature) = blst::min_pk::Signature::from_bytes(signature) else {
                continue;
            };
            for (position, member) in members.iter().enumerate() {
                if member == validator {
                    bits[position] = true;
                    signatures.push(signature);
                }
            }
        }
        let references: Vec<&blst::min_pk::Signature> = signatures.iter().collect();
        let aggregate =
            blst::min_pk::AggregateSignature::aggregate(&references, false).map_err(|_| {
                SourceError::NotYet {
                    what: "sync committee messages to aggregate",
                }
            })?;
        Ok(SyncCommitteeContribution {
            slot,
            beacon_block_root,
            subcommittee_index,
            aggregation_bits: bits,
            signature: aggregate.to_signature().compress(),
        })
    }

    pub fn submit_contributions(
        &self,
        contributions: Vec<SignedContributionAndProof>,
    ) -> Result<(), SinkError> {
        let spec = self.beacon.clock().sync_committee;
        let mut refused = 0;
        for signed in contributions {
            let validator = signed.aggregator_index;
            let contribution = &signed.contribution;
            let slot = contribution.slot;
            let subcommittee = contribution.subcommittee_index;
            let selection_proof = keys::signature_bytes(&signed.selection_proof);
            let signature = keys::signature_bytes(&signed.signature);
            let selection_root = self
                .fork
                .sync_selection_proof_signing_root(slot, subcommittee);
            let object = self.fork.contribution_and_proof_signing_root(
                validator,
                contribution,
                &selection_proof,
                &spec,
            );
            let message_root = self
                .fork
                .sync_committee_message_signing_root(&contribution.beacon_block_root);
            let key = (Kind::Contribution, slot, validator, subcommittee);
            let result = self.submit(key, signature, |state| {
                let root = object.map_err(|err| err.to_string())?;
                if subcommittee >= spec.subnet_count {
                    return Err("no such sync subcommittee".into());
                }
                let committee = self.sync_committee(state, slot);
                let size = spec.subcommittee_size() as usize;
                let start = subcommittee as usize * size;
                let members = committee.get(start..start + size).unwrap_or_default();
                if !members.contains(&validator) {
                    return Err("aggregator is not in this sync subcommittee".into());
                }
                if !self
                    .beacon
                    .is_head_of(slot, &contribution.beacon_block_root)
                {
                    return Err("contribution for a block root this chain does not know".into());
                }
                if !Self::verify(state, validator, &selection_root, &selection_proof) {
                    return Err("invalid selection proof".into());
                }
                if !signing::is_sync_committee_aggregator(&spec, &selection_proof) {
                    return Err("selection proof does not select this aggregator".into());
                }
                let mut participants = Vec::new();
                for (member, bit) in members.iter().zip(&contribution.aggregation_bits) {
                    if *bit {
                        let key = Self::public_key(state, *member)
                            .ok_or_else(|| "participant without a public key".to_string())?;
                        participants.push(key);
                    }
                }
                if participants.is_empty() {
                    return Err("contribution without participants".into());
                }
                let references: Vec<&blst::min_pk::PublicKey> = participants.iter().collect();
                let aggregate =
                    blst::min_pk::Signature::sig_validate(&contribution.signature, true)
                        .map_err(|_| "invalid contribution signature".to_string())?;
                if aggregate.fast_aggregate_verify(true, &message_root, DST, &references)
                    != blst::BLST_ERROR::BLST_SUCCESS
                {
                    return Err("contribution signature does not verify for its bits".into());
                }
                if !Self::verify(state, validator, &root, &signature) {
                    return Err("invalid signature".into());
                }
                Ok(())
            });
            if result.is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            return Err(SinkError::Refused(format!(
                "{refused} contributions refused"
            )));
        }
        Ok(())
    }

    /// Builds `proposer`'s block for `slot` once its RANDAO reveal checks out.
    pub fn build_block(
        &self,
        slot: u64,
        proposer: u64,
        randao_reveal: &Signature,
    ) -> Result<BlockHeader, SourceError> {
        if self.beacon.proposer(slot) != proposer {
            return Err(SourceError::Unavailable(format!(
                "validator {proposer} does not propose slot {slot}"
            )));
        }
        let reveal = keys::signature_bytes(randao_reveal);
        let root = signing::compute_signing_root(
            signing::epoch_root(self.beacon.epoch_of(slot)),
            self.fork.domain(signing::DOMAIN_RANDAO),
        );
        let mut state = self.lock();
        if !Self::verify(&mut state, proposer, &root, &reveal) {
            return Err(SourceError::Unavailable("invalid RANDAO reveal".into()));
        }
        let header = BlockHeader {
            slot,
            proposer_index: proposer,
            parent_root: self.beacon.block_root(slot.saturating_sub(1)),
            state_root: Self::state_root(slot),
            body_root: Sha256::hash(&[b"body", &slot.to_le_bytes(), &reveal]),
        };
        let built = state.built.entry(slot).or_default();
        if !built.contains(&header) {
            built.push(header);
        }
        Ok(header)
    }

    fn state_root(slot: u64) -> cohort_ingress::Root {
        Sha256::hash(&[b"state", &slot.to_le_bytes()])
    }

    /// Every attester's seat in `slot`.
    fn seats<'a>(&self, state: &'a mut State, slot: u64) -> Option<&'a BTreeMap<u64, Seat>> {
        if !state.committees.contains_key(&slot) {
            let epoch = self.beacon.epoch_of(slot);
            for duty in self.beacon.duties(epoch) {
                state.committees.entry(duty.slot).or_default().insert(
                    duty.validator_index,
                    Seat {
                        committee: duty.committee_index,
                        position: duty.validator_committee_index,
                        length: duty.committee_length,
                    },
                );
            }
        }
        state.committees.get(&slot)
    }

    /// How many validators attest in `slot`.
    /// Takes a voluntary exit signed by the validator's key over the exit domain (the devnet's
    /// one fork version stands in for Capella's). A validator exits once.
    pub fn submit_voluntary_exit(
        &self,
        exit: cohort_ingress::exits::SignedVoluntaryExit,
    ) -> Result<(), SinkError> {
        let root = cohort_ingress::signing::voluntary_exit_signing_root(
            exit.validator_index,
            exit.epoch,
            self.fork.fork_version,
            self.fork.genesis_validators_root,
        );
        let signature = keys::signature_bytes(&exit.signature);
        let mut state = self.lock();
        if state.exits.contains_key(&exit.validator_index) {
            return Err(SinkError::Refused(format!(
                "validator {} has already exited",
                exit.validator_index
            )));
        }
        if !Self::verify(&mut state, exit.validator_index, &root, &signature) {
            return Err(SinkError::Refused(format!(
                "the exit of validator {} does not verify",
                exit.validator_index
            )));
        }
        state.exits.insert(exit.validator_index, exit.epoch);
        Ok(())
    }

    /// The validators that exited, with their exit epochs.
    pub fn exits(&self) -> BTreeMap<u64, u64> {
        self.lock().exits.clone()
    }

    /// Makes `validator` look live from `from_epoch` on, as if another validator client ran
    /// its key too: what doppelganger protection must catch.
    pub fn run_elsewhere(&self, validator: u64, from_epoch: u64) {
        self.lock().elsewhere.insert(validator, from_epoch);
    }

    /// Which of `validators` were live in `epoch`: any of their objects accepted for a slot of
    /// the epoch, or run elsewhere by then (the Beacon API's liveness endpoint).
    pub fn live(&self, epoch: u64, validators: &[u64]) -> Vec<u64> {
        let state = self.lock();
        let first = self.beacon.first_slot(epoch);
        let last = self.beacon.first_slot(epoch + 1);
        let mut seen = BTreeSet::new();
        for (_, slot, validator, _) in state.accepted.keys() {
            if (first..last).contains(slot) {
                seen.insert(*validator);
            }
        }
        validators
            .iter()
            .copied()
            .filter(|v| {
                seen.contains(v) || state.elsewhere.get(v).is_some_and(|from| *from <= epoch)
            })
            .collect()
    }

    /// Where `validator` sits among the attesters of `slot`, if it attests then.
    pub fn seat(&self, slot: u64, validator: u64) -> Option<Seat> {
        let mut state = self.lock();
        self.seats(&mut state, slot)?.get(&validator).copied()
    }

    /// The aggregate of every accepted attestation of `data` by members of committee
    /// `committee_index`, its bits over that committee.
    pub fn aggregate(
        &self,
        data: &AttestationData,
        committee_index: u64,
    ) -> Result<Aggregate, SourceError> {
        let mut state = self.lock();
        let members: BTreeMap<u64, Seat> = self
            .seats(&mut state, data.slot)
            .map(|seats| {
                seats
                    .iter()
                    .filter(|(_, seat)| seat.committee == committee_index)
                    .map(|(validator, seat)| (*validator, *seat))
                    .collect()
            })
            .unwrap_or_default();
        let length = members
            .values()
            .next()
            .map_or(0, |seat| seat.length as usize);
        let mut bits = vec![false; length];
        let mut signatures = Vec::new();
        for (validator, attested, signature) in
            state.attestations.get(&data.slot).into_iter().flatten()
        {
            if attested != data {
                continue;
            }
            let Some(seat) = members.get(validator) else {
                continue;
            };
            let Some(bit) = bits.get_mut(seat.position as usize) else {
                continue;
            };
            let Ok(signature) = blst::min_pk::Signature::from_bytes(signature) else {
                continue;
            };
            *bit = true;
            signatures.push(signature);
        }
        let references: Vec<&blst::min_pk::Signature> = signatures.iter().collect();
        let aggregate =
            blst::min_pk::AggregateSignature::aggregate(&references, false).map_err(|_| {
                SourceError::NotYet {
                    what: "attestations to aggregate",
                }
            })?;
        Ok(Aggregate {
            aggregation_bits: bits,
            data: *data,
            signature: aggregate.to_signature().compress(),
        })
    }

    pub fn report(&self) -> ChainReport {
        let state = self.lock();
        ChainReport {
            stats: state.stats.clone(),
            submit_latencies_ms: state.latencies.clone(),
            conflicts: state.conflicts.clone(),
            rejections: state.rejections.clone(),
            submitted: state
                .submitted
                .iter()
                .map(|(kind, slot, validator, _)| (*kind, *slot, *validator))
                .collect(),
            accepted: state
                .accepted
                .keys()
                .map(|(kind, slot, validator, _)| (*kind, *slot, *validator))
                .collect(),
        }
    }
}

impl std::fmt::Debug for DevnetChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevnetChain").finish_non_exhaustive()
    }
}
