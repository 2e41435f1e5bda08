//! The end of a run: the end-of-run invariants in their fixed order, then the numbers of the
//! report, from the checker's record, the devnet chain, the engines and the network.

use super::{CryptoCpu, DutyCounts, Percentiles, Report, percentiles};
use crate::{
    SimConfig,
    checker::{
        Observed,
        end::{self, Schedule},
    },
    cluster::setup::Cluster,
};
use cohort_actors::runner::cpu::CryptoWork;
use cohort_devnet::{ChainReport, Kind};
use cohort_ingress::{
    DutyId, Role, keys,
    signing::{self, ForkInfo},
};
use cohort_marshal::Block;
use commonware_cryptography::{Digestible, Hasher, Sha256};
use commonware_runtime::deterministic;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime},
};

/// Checks what is left to check and reports the run.
pub(crate) async fn build(
    context: &deterministic::Context,
    config: &SimConfig,
    cluster: &Cluster,
    mut observed: Observed,
) -> Report {
    let canonical: Vec<Arc<Block>> = observed.canonical.values().cloned().collect();
    end::duty_outcome_reported(&mut observed, config);
    let schedule = Schedule::new(config, cluster.clock);
    end::only_scheduled_duties_decided(
        &mut observed,
        config,
        &cluster.committee,
        &schedule,
        &canonical,
    );
    let decided_duties = end::duty_decided_once(&mut observed, config, &canonical);
    let attesters_by_slot = schedule.attesters_in_run(config);
    end::runner_outcome_matches_chain(&mut observed, config, &decided_duties);
    let chain = cluster.chain.report();
    end::no_conflicting_signatures(&mut observed, config, &chain);
    end::signed_only_finalized(&mut observed, config, &cluster.fork, &canonical);
    end::liveness_after_heal(&mut observed, config, &chain, &attesters_by_slot);
    let payloads = end::one_payload_per_slot(&mut observed, &canonical);
    let engines = end::engine_converged(&mut observed, config, &cluster.engines, &payloads).await;
    let in_payloads = canonical
        .iter()
        .filter_map(|block| block.payload.as_ref())
        .flat_map(|payload| payload.payload_inner.payload_inner.transactions.iter());
    let mut transactions = cluster
        .load
        .report(in_payloads, end::transactions_owed_by(config));
    end::transactions_finalized(&mut observed, config, &transactions);
    transactions.contract_counter = end::contract_counted(
        &mut observed,
        config,
        &cluster.engines,
        &payloads,
        &cluster.load,
        &transactions,
    )
    .await;
    let outcome_digest = outcome_digest(&observed);
    let (waits, consensus) = latency_split(&observed, &canonical);
    // Who blocked whom for what it sent.
    let mut blocked: Vec<(usize, usize)> = cluster
        .oracle
        .blocked()
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|(by, peer)| Some((cluster.index_of(by)?, cluster.index_of(peer)?)))
        .collect();
    blocked.sort_unstable();
    let caught: Vec<(usize, usize)> = observed
        .caught
        .iter()
        .filter_map(|(by, peer)| Some((*by, cluster.index_of(peer)?)))
        .collect();
    end::honest_operators_never_blocked(&mut observed, config, &blocked, "blocked");
    end::honest_operators_never_blocked(
        &mut observed,
        config,
        &caught,
        "caught misbehaving in consensus",
    );
    let invalid_partials_by_operator = invalid_partials_by_sender(&observed, cluster);
    let avs = config.avs.as_ref().map(|_| {
        let end = cluster.clock.slot_start(config.slots + 1);
        for (invariant, detail) in observed.avs.at_end(end) {
            observed.violation(invariant, config.slots, detail);
        }
        observed.avs.report()
    });

    let decided_slots: BTreeSet<u64> = decided_duties
        .iter()
        .filter(|duty| duty.role == Role::Committee)
        .map(|duty| duty.slot)
        .collect();
    let scheduled: u64 = attesters_by_slot.values().sum();
    let decided: u64 = attesters_by_slot
        .iter()
        .filter(|(slot, _)| decided_slots.contains(slot))
        .map(|(_, count)| count)
        .sum();
    let blocks = canonical.iter().filter(|block| block.height > 0);
    let empty_blocks = blocks
        .clone()
        .filter(|block| block.decisions.is_empty() && block.tasks.is_empty())
        .count() as u64;
    let slots_with_block: BTreeSet<u64> = blocks
        .map(|block| block.slot)
        .filter(|slot| *slot < config.slots)
        .collect();
    let live = config.operators
        - (0..config.operators)
            .filter(|i| config.never_starts(*i))
            .count();
    let per_operator_slot = |total: f64| total / (live.max(1) as f64 * config.slots as f64);
    let (submitted, accepted, rejected) = chain_counts(config, &chain);
    Report {
        seed: config.seed,
        operators: config.operators,
        cycle_us: config.cycle.as_micros() as u64,
        crypto_cost_us: config
            .crypto_cost
            .map(|cost| [cost.sign, cost.decode, cost.recover].map(|each| each.as_micros() as u64)),
        crypto_cores: config.crypto_cost.map(|cost| cost.cores.get()),
        validators: config.validators,
        slots: config.slots,
        finalized_height: observed.canonical.keys().last().copied().unwrap_or(0),
        empty_blocks,
        slots_with_block: slots_with_block.len() as u64,
        duties: DutyCounts {
            scheduled,
            decided,
            missed: scheduled - decided,
            committee_scheduled: committee_slots(config, &schedule),
            committee_decided: decided_slots.len() as u64,
        },
        decide_latency_ms: percentiles(observed.latencies),
        block_wait_ms: percentiles(waits),
        consensus_ms: percentiles(consensus),
        submitted,
        accepted,
        rejected,
        expected: expected(config, &schedule, &cluster.fork, &attesters_by_slot),
        submit_latency_ms: percentiles(
            chain
                .submit_latencies_ms
                .values()
                .flatten()
                .copied()
                .collect(),
        ),
        submit_latency_ms_by_role: chain
            .submit_latencies_ms
            .iter()
            .map(|(kind, latencies)| (*kind, percentiles(latencies.clone())))
            .collect::<BTreeMap<Kind, Percentiles>>(),
        head_to_submit_ms_by_role: head_to_submit(config, &chain.submit_latencies_ms),
        share_signatures: observed.share_signatures,
        rejections: chain.rejections.clone(),
        invalid_partials_by_operator,
        avs,
        liveness_from: config.liveness_from(),
        restarts: cluster.restarts.load(Ordering::Relaxed),
        crash_cuts: observed.crash_cuts.clone(),
        blocked,
        caught,
        max_held: observed.max_held,
        execution_blocks: payloads.len() as u64,
        engine_finalized_height: engines.finalized_height,
        engine_finalized_by_operator: engines.finalized_by_operator,
        engine_state_root: engines.state_root.to_string(),
        transactions,
        prebuild: observed.prebuild.clone(),
        messages_per_operator_per_slot: per_operator_slot(
            cluster.received.load(Ordering::Relaxed) as f64
        ),
        crypto_cpu_ms_per_operator_slot: {
            let per = |spent: Duration| {
                spent.as_secs_f64() * 1000.0 / (live.max(1) as f64 * config.slots.max(1) as f64)
            };
            let cpu = &cluster.cpu;
            CryptoCpu {
                sign: per(cpu.spent(CryptoWork::Sign)),
                decode: per(cpu.spent(CryptoWork::Decode)),
                recover_and_verify: per(cpu.spent(CryptoWork::Recover)),
                total: per(cpu.total()),
            }
        },
        outcome_digest,
        runtime_audit: context.auditor().state(),
        violations: observed.violations,
        replay: config.replay_command(),
        wall_ms: 0,
    }
}

/// The agreed chain, height by height: what replays must reproduce bit for bit.
fn outcome_digest(observed: &Observed) -> String {
    let mut input = Vec::new();
    for (height, block) in &observed.canonical {
        input.extend_from_slice(&height.to_be_bytes());
        input.extend_from_slice(block.digest().as_ref());
    }
    Sha256::hash(&[&input]).to_string()
}

/// Each decided committee duty's latency split into waiting for a block (start to the leader
/// building it) and consensus (built to this operator processing its finalization).
fn latency_split(observed: &Observed, canonical: &[Arc<Block>]) -> (Vec<u64>, Vec<u64>) {
    let mut block_of: BTreeMap<DutyId, &Block> = BTreeMap::new();
    for block in canonical {
        for decision in &block.decisions {
            block_of.insert(decision.duty.clone(), block);
        }
    }
    let ms = |later: &SystemTime, earlier: &SystemTime| {
        later
            .duration_since(*earlier)
            .unwrap_or_default()
            .as_millis() as u64
    };
    let mut waits = Vec::new();
    let mut consensus = Vec::new();
    for ((operator, duty), started) in &observed.decided {
        if duty.role != Role::Committee {
            continue;
        }
        let Some(block) = block_of.get(duty) else {
            continue;
        };
        let (Some(proposed), Some(processed)) = (
            observed.proposed.get(&block.digest()),
            observed.processed_at.get(&(*operator, block.height)),
        ) else {
            continue;
        };
        waits.push(ms(proposed, started));
        consensus.push(ms(processed, proposed));
    }
    (waits, consensus)
}

/// Slots of the run with a committee duty: attesters or sync committee members in them.
fn committee_slots(config: &SimConfig, schedule: &Schedule) -> u64 {
    (0..config.slots)
        .filter(|slot| {
            schedule.attesters_by_slot.contains_key(slot)
                || schedule
                    .sync_by_slot
                    .get(slot)
                    .is_some_and(|members| !members.is_empty())
        })
        .count() as u64
}

/// What the beacon chain saw of the run's slots, by kind: (submitted, accepted, rejected).
type ByKind = BTreeMap<Kind, u64>;

fn chain_counts(config: &SimConfig, chain: &ChainReport) -> (ByKind, ByKind, ByKind) {
    let in_run = |objects: &[(Kind, u64, u64)], kind: Kind| {
        objects
            .iter()
            .filter(|(k, slot, _)| *k == kind && *slot < config.slots)
            .count() as u64
    };
    let mut submitted = ByKind::new();
    let mut accepted = ByKind::new();
    let mut rejected = ByKind::new();
    for kind in Kind::ALL {
        let stats = chain.stats.get(&kind).cloned().unwrap_or_default();
        submitted.insert(kind, in_run(&chain.submitted, kind));
        accepted.insert(kind, in_run(&chain.accepted, kind));
        rejected.insert(kind, stats.rejected);
    }
    (submitted, accepted, rejected)
}

/// What the run's slots scheduled, by kind: every attester, one proposal per slot, every
/// attester whose selection proof makes it an aggregator, a sync committee message per member
/// and slot, and a contribution per member, slot and subcommittee whose selection proof makes
/// the member its aggregator.
fn expected(
    config: &SimConfig,
    schedule: &Schedule,
    fork: &ForkInfo,
    attesters_by_slot: &BTreeMap<u64, u64>,
) -> ByKind {
    let mut aggregators = 0;
    for epoch in 0..=schedule.epochs {
        for duty in schedule.beacon.duties(epoch) {
            if duty.slot >= config.slots {
                continue;
            }
            let proof = keys::sign(
                &keys::interop_secret(duty.validator_index),
                &signing::compute_signing_root(
                    signing::slot_root(duty.slot),
                    fork.domain(signing::DOMAIN_SELECTION_PROOF),
                ),
            );
            if signing::is_aggregator(duty.committee_length, &keys::signature_bytes(&proof)) {
                aggregators += 1;
            }
        }
    }
    let spec = schedule.clock.sync_committee;
    let mut sync_messages = 0;
    let mut contributions = 0;
    for (slot, members) in schedule.sync_by_slot.range(..config.slots) {
        sync_messages += members.len() as u64;
        for member in members {
            for subcommittee in member.subcommittees(&spec) {
                // With a modulo of one every proof selects: no need to sign it here.
                let selected = spec.aggregator_modulo() == 1 || {
                    let proof = keys::sign(
                        &keys::interop_secret(member.validator_index),
                        &fork.sync_selection_proof_signing_root(*slot, subcommittee),
                    );
                    signing::is_sync_committee_aggregator(&spec, &keys::signature_bytes(&proof))
                };
                if selected {
                    contributions += 1;
                }
            }
        }
    }
    ByKind::from([
        (Kind::Attestation, attesters_by_slot.values().sum()),
        (Kind::Proposal, config.slots),
        (Kind::Aggregate, aggregators),
        (Kind::SyncMessage, sync_messages),
        (Kind::Contribution, contributions),
    ])
}

/// The runners' count of invalid partials, by the simulation index of the sender (the
/// events name it by share index + 1).
fn invalid_partials_by_sender(observed: &Observed, cluster: &Cluster) -> BTreeMap<usize, u64> {
    use commonware_cryptography::Signer as _;
    let mut by_position: BTreeMap<usize, usize> = BTreeMap::new();
    for (index, key) in cluster.keys.iter().enumerate() {
        if let Some(position) = cluster.participants.position(&key.public_key()) {
            by_position.insert(position, index);
        }
    }
    let mut invalid: BTreeMap<usize, u64> = BTreeMap::new();
    for (sender, count) in &observed.invalid_partials {
        let position = usize::try_from(*sender).ok().and_then(|s| s.checked_sub(1));
        if let Some(index) = position.and_then(|p| by_position.get(&p)) {
            *invalid.entry(*index).or_default() += count;
        }
    }
    invalid
}

/// Submission delays counted from the head event instead of the slot start, for the roles a
/// head event starts, when the run fixes when every beacon node sees the head.
fn head_to_submit(
    config: &SimConfig,
    from_slot_start: &BTreeMap<Kind, Vec<u64>>,
) -> BTreeMap<Kind, Percentiles> {
    let Some(head_at) = config.head_at else {
        return BTreeMap::new();
    };
    let head_ms = head_at.as_millis() as u64;
    [Kind::Attestation, Kind::SyncMessage]
        .into_iter()
        .filter_map(|kind| {
            let latencies = from_slot_start.get(&kind)?;
            let after_head = latencies
                .iter()
                .map(|ms| ms.saturating_sub(head_ms))
                .collect();
            Some((kind, percentiles(after_head)))
        })
        .collect()
}
