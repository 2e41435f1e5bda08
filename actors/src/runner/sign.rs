//! Where a duty is signed with this operator's share: the pre-consensus partials (RANDAO
//! reveal, selection proof) at its start, and the post-consensus partials of its finalized
//! value after slashing protection durably allowed them. Every partial of one phase in one
//! step leaves in one message per slot.

use super::{
    Fault,
    actor::{Actor, Step, emit},
    duty::{Phase, span},
    quorum::Key,
    slashing::SlashingKeeper,
    submit::Submission,
};
use cohort_ingress::{
    DecidedValue, Duty, DutyId, DutySink, DutySource, DutyTarget, Role,
    keys::{self, Signature},
    partial::{self, PartialSignature, PartialSignatures},
    runner::{DutyEvent, Outcome, SignRequest},
    signing,
};
use commonware_codec::Encode;
use commonware_cryptography::{PublicKey, bls12381::primitives::group::Share, sha256::Digest};
use commonware_p2p::{Recipients, Sender};
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{debug, error, warn};

/// What one decided duty signs after consensus, per object: its key, what is submitted once
/// the signature is reconstructed, and what slashing protection must allow first.
type PostConsensusItems = Vec<(Key, Submission, Option<SignRequest>)>;

impl<E, S, K, P> Actor<E, S, K, P>
where
    E: Clock + Spawner + Metrics + Storage,
    S: DutySource,
    K: DutySink,
    P: PublicKey,
{
    /// Signs each `(slot, validator, root)` with this operator's share of the validator (or,
    /// under [`Fault::WrongPartials`], another root), all in one batch: each distinct root is
    /// hashed once, and the shares sign on the runner's crypto threads. `None` where this
    /// operator holds no share of the validator.
    fn sign_shares(&mut self, requests: &[(u64, u64, [u8; 32])]) -> Vec<Option<Signature>> {
        let shares = self.shares.clone();
        let jobs: Vec<(u64, &Share, [u8; 32])> = requests
            .iter()
            .filter_map(|(slot, validator, root)| {
                let share = shares.get(validator)?;
                let root = match self.fault {
                    Some(Fault::WrongPartials) => {
                        let mut wrong = *root;
                        wrong[0] ^= 0xff;
                        wrong
                    }
                    None => *root,
                };
                Some((*slot, &share.share, root))
            })
            .collect();
        let mut signatures = self.quorum.sign(&jobs, &self.cpu).into_iter();
        requests
            .iter()
            .map(|(_, validator, _)| {
                if shares.contains_key(validator) {
                    signatures.next()
                } else {
                    None
                }
            })
            .collect()
    }

    /// Signs the RANDAO reveals and selection proofs (one per subcommittee for a sync committee
    /// contributor) due in this step and broadcasts them.
    pub(super) async fn sign_pre_consensus<Tx: Sender<PublicKey = P>>(
        &mut self,
        sender: &mut Tx,
        step: &mut Step,
    ) {
        let mut by_slot: BTreeMap<u64, Vec<PartialSignature>> = BTreeMap::new();
        let mut keys = Vec::new();
        let mut jobs: Vec<(DutyId, u64, [u8; 32])> = Vec::new();
        let mut signed = BTreeSet::new();
        for id in std::mem::take(&mut step.pre_consensus) {
            let DutyTarget::Validator(validator) = id.target else {
                continue;
            };
            let Some(running) = self.running.get(&id) else {
                continue;
            };
            if !matches!(running.phase, Phase::PreConsensus { signed: false, .. }) {
                continue;
            }
            let roots = match id.role {
                Role::Proposer => vec![signing::compute_signing_root(
                    signing::epoch_root(id.epoch),
                    self.fork.domain(signing::DOMAIN_RANDAO),
                )],
                Role::Aggregator => vec![signing::compute_signing_root(
                    signing::slot_root(id.slot),
                    self.fork.domain(signing::DOMAIN_SELECTION_PROOF),
                )],
                Role::SyncCommitteeContribution => running
                    .subcommittees(&self.clock.sync_committee)
                    .into_iter()
                    .map(|subcommittee| {
                        self.fork
                            .sync_selection_proof_signing_root(id.slot, subcommittee)
                    })
                    .collect(),
                Role::Committee => continue,
            };
            // A validator doppelganger protection has not cleared gets no partial from this
            // operator, but the duty waits for the others' quorum all the same.
            if !self.guard.may_sign(validator) {
                if !self.shares.contains_key(&validator) {
                    continue;
                }
                debug!(parent: &span(&id), validator, "doppelganger protection: not signing the pre-consensus partial; waiting for the cluster's");
                for root in roots {
                    let key = Key {
                        slot: id.slot,
                        validator_index: validator,
                        signing_root: Digest(root),
                    };
                    self.waiting.insert(key, (id.clone(), None));
                    keys.push(key);
                }
                signed.insert(id);
                continue;
            }
            jobs.extend(roots.into_iter().map(|root| (id.clone(), validator, root)));
        }
        let requests: Vec<(u64, u64, [u8; 32])> = jobs
            .iter()
            .map(|(id, validator, root)| (id.slot, *validator, *root))
            .collect();
        let signatures = self.sign_shares(&requests);
        self.pay_for_crypto().await;
        for ((id, validator, root), signature) in jobs.into_iter().zip(signatures) {
            let Some(signature) = signature else {
                continue;
            };
            let key = Key {
                slot: id.slot,
                validator_index: validator,
                signing_root: Digest(root),
            };
            self.quorum.add_own(key, self.me, signature);
            self.waiting.insert(key, (id.clone(), None));
            by_slot.entry(id.slot).or_default().push(PartialSignature {
                validator_index: validator,
                signing_root: key.signing_root,
                signature,
            });
            keys.push(key);
            signed.insert(id);
        }
        for id in signed {
            if let Some(running) = self.running.get_mut(&id)
                && let Phase::PreConsensus { signed, .. } = &mut running.phase
            {
                *signed = true;
            }
        }
        for (slot, signatures) in by_slot {
            debug!(
                slot,
                partials = signatures.len(),
                "broadcasting pre-consensus partial signatures"
            );
            self.broadcast(sender, slot, partial::Phase::PreConsensus, signatures);
        }
        self.try_recover(keys, step);
    }

    /// What a decided duty's post-consensus phase signs (see [`PostConsensusItems`]).
    /// `selection` holds a contribution duty's reconstructed selection proofs by subcommittee.
    fn post_consensus_items(
        &self,
        id: &DutyId,
        duty: &Duty,
        value: &DecidedValue,
        pre: Option<Signature>,
        selection: &BTreeMap<u64, Signature>,
    ) -> Result<PostConsensusItems, String> {
        let key = |validator: u64, root: [u8; 32]| Key {
            slot: id.slot,
            validator_index: validator,
            signing_root: Digest(root),
        };
        // A role signs one kind of value (the committee refuses others before voting; this
        // holds even if a block got past it).
        if !value.fits_role(id.role) {
            return Err("decided value is not of the kind the duty's role signs".into());
        }
        match (value, &id.target) {
            (DecidedValue::Attestation(vote), _) => {
                let mut items: PostConsensusItems = duty
                    .attesters
                    .iter()
                    .filter(|a| a.slot == id.slot && self.shares.contains_key(&a.validator_index))
                    .map(|attester| {
                        // Before Electra each attester signs its own committee's index.
                        let data =
                            self.fork
                                .attester_data(vote, attester.committee_index, id.epoch);
                        let root = self.fork.attestation_signing_root(&data);
                        (
                            key(attester.validator_index, root),
                            Submission::Attestation(*attester, data),
                            Some(SignRequest::Attestation {
                                validator_index: attester.validator_index,
                                source_epoch: data.source.epoch,
                                target_epoch: data.target.epoch,
                                signing_root: root,
                            }),
                        )
                    })
                    .collect();
                // The slot's sync committee messages sign the decided head block root (as
                // SSV's committee duty signs both from one BeaconVote). A sync committee
                // message is not slashable, so slashing protection has nothing to allow.
                let sync_root = self
                    .fork
                    .sync_committee_message_signing_root(&vote.beacon_block_root);
                items.extend(
                    duty.sync
                        .iter()
                        .filter(|member| self.shares.contains_key(&member.validator_index))
                        .map(|member| {
                            (
                                key(member.validator_index, sync_root),
                                Submission::SyncMessage {
                                    validator_index: member.validator_index,
                                    beacon_block_root: vote.beacon_block_root,
                                },
                                None,
                            )
                        }),
                );
                Ok(items)
            }
            (DecidedValue::Block(proposal), DutyTarget::Validator(validator)) => {
                let header = &proposal.header;
                let root = self.fork.block_signing_root(header);
                Ok(vec![(
                    key(*validator, root),
                    Submission::Block(proposal.clone()),
                    Some(SignRequest::Block {
                        validator_index: *validator,
                        slot: header.slot,
                        signing_root: root,
                    }),
                )])
            }
            (DecidedValue::Aggregate(aggregate), DutyTarget::Validator(validator)) => {
                let Some(selection_proof) = pre else {
                    return Err("selection proof not reconstructed".into());
                };
                // The cluster may have decided an aggregate before this operator's selection
                // proof was in: whether the proof selects the validator is checked here, not
                // only when the proof arrives first.
                let committee_length = duty.attesters.first().map_or(0, |a| a.committee_length);
                if !signing::is_aggregator(
                    committee_length,
                    &keys::signature_bytes(&selection_proof),
                ) {
                    return Err("the selection proof does not select this validator".into());
                }
                let object = signing::aggregate_and_proof_root(
                    *validator,
                    &aggregate.aggregation_bits,
                    &aggregate.data,
                    &aggregate.signature,
                    &keys::signature_bytes(&selection_proof),
                )
                .map_err(|err| err.to_string())?;
                let root = signing::compute_signing_root(
                    object,
                    self.fork.domain(signing::DOMAIN_AGGREGATE_AND_PROOF),
                );
                Ok(vec![(
                    key(*validator, root),
                    Submission::Aggregate(Box::new((
                        (**aggregate).clone(),
                        *validator,
                        selection_proof,
                    ))),
                    None,
                )])
            }
            (DecidedValue::Contributions(contributions), DutyTarget::Validator(validator)) => {
                let spec = self.clock.sync_committee;
                let mut items = Vec::new();
                for contribution in contributions {
                    // Only subcommittees this validator's own selection proof made it the
                    // aggregator of: a leader's contribution for any other is not signed.
                    // Contributions are not slashable: nothing for slashing protection.
                    let Some(proof) = selection.get(&contribution.subcommittee_index) else {
                        continue;
                    };
                    let proof_bytes = keys::signature_bytes(proof);
                    if !signing::is_sync_committee_aggregator(&spec, &proof_bytes) {
                        continue;
                    }
                    let root = self
                        .fork
                        .contribution_and_proof_signing_root(
                            *validator,
                            contribution,
                            &proof_bytes,
                            &spec,
                        )
                        .map_err(|err| err.to_string())?;
                    items.push((
                        key(*validator, root),
                        Submission::Contribution(Box::new((
                            contribution.clone(),
                            *validator,
                            *proof,
                        ))),
                        None,
                    ));
                }
                if items.is_empty() {
                    return Err(
                        "no decided contribution is for a subcommittee this validator aggregates"
                            .into(),
                    );
                }
                Ok(items)
            }
            _ => Err("decided value does not fit the duty".into()),
        }
    }

    /// Signs the decided values due in this step: one durable slashing-protection write for
    /// all of them, then the allowed signatures, broadcast per slot.
    pub(super) async fn sign_post_consensus<Tx: Sender<PublicKey = P>>(
        &mut self,
        sender: &mut Tx,
        slashing: &mut SlashingKeeper<E>,
        step: &mut Step,
    ) {
        let mut plans = Vec::new();
        for id in std::mem::take(&mut step.post_consensus) {
            let Some(running) = self.running.get(&id) else {
                continue;
            };
            let Phase::Decided { value, pre } = &running.phase else {
                continue; // Signed in an earlier step.
            };
            match self.post_consensus_items(&id, &running.duty, value, *pre, &running.selection) {
                Ok(items) => plans.push((id, items)),
                Err(reason) => {
                    warn!(parent: &span(&id), reason, "cannot sign the decided value; the duty fails");
                    self.finish(&id, Outcome::Failed { reason });
                }
            }
        }
        // Validators doppelganger protection has not cleared, decided once for the step: their
        // objects are waited for (the cluster may sign them) but neither recorded nor signed.
        let withheld: BTreeSet<u64> = plans
            .iter()
            .flat_map(|(_, items)| items.iter().map(|(key, _, _)| key.validator_index))
            .filter(|validator| !self.guard.may_sign(*validator))
            .collect();
        // One durable slashing-protection write for the whole step, before any signature.
        let requests: Vec<SignRequest> = plans
            .iter()
            .flat_map(|(_, items)| {
                items
                    .iter()
                    .filter(|(key, _, _)| !withheld.contains(&key.validator_index))
                    .filter_map(|(_, _, request)| *request)
            })
            .collect();
        let verdicts = if requests.is_empty() {
            Vec::new()
        } else {
            let unavailable = |reason: String| -> Vec<Result<(), String>> {
                requests.iter().map(|_| Err(reason.clone())).collect()
            };
            let now = self.context.current();
            let context = &self.context;
            match slashing
                .store(now, || context.child("slashing_protection"))
                .await
            {
                None => {
                    error!(
                        requests = requests.len(),
                        "slashing-protection record unavailable; signing nothing for these duties"
                    );
                    unavailable("slashing-protection record unavailable".into())
                }
                Some(store) => match store.check_and_record(&requests).await {
                    Ok(verdicts) => verdicts
                        .into_iter()
                        .map(|v| v.map_err(|r| r.to_string()))
                        .collect(),
                    Err(err) => {
                        error!(%err, requests = requests.len(), "slashing-protection record could not be written; signing nothing for these duties");
                        slashing.failed(&err);
                        unavailable(format!("slashing-protection record unavailable: {err}"))
                    }
                },
            }
        };
        let mut verdicts = verdicts.into_iter();
        let mut by_slot: BTreeMap<u64, Vec<PartialSignature>> = BTreeMap::new();
        let mut signed = Vec::new();
        let mut keys = Vec::new();
        let now = self.context.current();
        // Slashing protection's verdicts first, then every allowed object signed in one batch.
        let mut allowed: Vec<(DutyId, Vec<(Key, Submission)>)> = Vec::with_capacity(plans.len());
        let mut waited: BTreeMap<DutyId, usize> = BTreeMap::new();
        for (id, items) in plans {
            let mut objects = Vec::with_capacity(items.len());
            for (key, submission, request) in items {
                if withheld.contains(&key.validator_index) {
                    debug!(parent: &span(&id), validator = key.validator_index, "doppelganger protection: not signing; waiting for the cluster's quorum");
                    self.waiting.insert(key, (id.clone(), Some(submission)));
                    keys.push(key);
                    *waited.entry(id.clone()).or_default() += 1;
                    continue;
                }
                if let Some(request) = request {
                    match verdicts.next() {
                        Some(Ok(())) => signed.push(request),
                        Some(Err(refusal)) => {
                            self.metrics.slashing_refusals.inc();
                            warn!(
                                parent: &span(&id),
                                validator = key.validator_index,
                                %refusal,
                                "slashing protection refused to sign; this validator's object is dropped"
                            );
                            continue;
                        }
                        None => continue,
                    }
                }
                objects.push((key, submission));
            }
            allowed.push((id, objects));
        }
        let requests: Vec<(u64, u64, [u8; 32])> = allowed
            .iter()
            .flat_map(|(_, objects)| {
                objects
                    .iter()
                    .map(|(key, _)| (key.slot, key.validator_index, key.signing_root.0))
            })
            .collect();
        let mut signatures = self.sign_shares(&requests).into_iter();
        self.pay_for_crypto().await;
        for (id, objects) in allowed {
            let mut expected = waited.get(&id).copied().unwrap_or(0);
            for (key, submission) in objects {
                let Some(Some(signature)) = signatures.next() else {
                    continue;
                };
                self.quorum.add_own(key, self.me, signature);
                self.waiting.insert(key, (id.clone(), Some(submission)));
                by_slot.entry(id.slot).or_default().push(PartialSignature {
                    validator_index: key.validator_index,
                    signing_root: key.signing_root,
                    signature,
                });
                keys.push(key);
                expected += 1;
            }
            let Some(running) = self.running.get_mut(&id) else {
                continue;
            };
            running.phase = Phase::PostConsensus {
                expected,
                submitted: 0,
                signed_at: now,
            };
            if expected == 0 {
                self.finish(
                    &id,
                    Outcome::Failed {
                        reason: "slashing protection refused every signature".into(),
                    },
                );
            }
        }
        if !signed.is_empty() {
            emit(&self.events, DutyEvent::Signed { requests: signed });
        }
        for (slot, signatures) in by_slot {
            debug!(
                slot,
                partials = signatures.len(),
                "broadcasting post-consensus partial signatures"
            );
            self.broadcast(sender, slot, partial::Phase::PostConsensus, signatures);
        }
        self.try_recover(keys, step);
        if step
            .reconstructed
            .keys()
            .any(|id| self.running.contains_key(id))
        {
            debug!("post-consensus quorum reached from buffered partials");
        }
    }

    fn broadcast<Tx: Sender<PublicKey = P>>(
        &self,
        sender: &mut Tx,
        slot: u64,
        phase: partial::Phase,
        signatures: Vec<PartialSignature>,
    ) {
        for chunk in signatures.chunks(self.max_partials.max(1)) {
            let message = PartialSignatures {
                slot,
                phase,
                signatures: chunk.to_vec(),
            };
            let sent = sender.send(Recipients::All, message.encode(), false);
            if sent.is_empty() && self.operators.len() > 1 {
                debug!(
                    slot,
                    phase = phase.as_str(),
                    "no peer took the partial signatures (all offline or limited)"
                );
            }
        }
    }
}
