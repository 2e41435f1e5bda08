//! The cluster a run plays on, and the run itself: set-up ([`setup`]), each operator's lives
//! and what a crash leaves ([`lifecycle`]), one operator's actors ([`operator`]), and the slot
//! loop that feeds the checker and hands everything over when the power goes.
//!
//! A power cut splits a run over two deterministic runtimes: the second one recovers the first
//! one's storage (unsynced writes cut as the fault config says) and carries on with the
//! checker's record and the world outside the cluster ([`Carried`]).

mod lifecycle;
pub(crate) mod operator;
pub(crate) mod setup;

use crate::{Report, SimConfig, checker::Observed, report};
use cohort_actors::runner::cpu::CpuMeter;
use cohort_devnet::DevnetChain;
use commonware_runtime::{Clock, Runner as _, deterministic};
use commonware_utils::probability::Probability;
use lifecycle::crash_offset;
use setup::Cluster;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Instant, SystemTime},
};

/// Runs one simulation to completion and reports what happened.
pub fn run(config: &SimConfig) -> Report {
    run_with_keys(config, None)
}

/// Operators' identities and validator shares to run on instead of the ones a run derives
/// from its seed (interop keys split afresh): for example shares a reshare produced. Operator
/// `i` holds `shares[i]`, whose index must be `i`: operators in share order, the order of their
/// set (the runner and consensus both use set positions); the validators are the interop validators `0..config.validators`,
/// whose public keys the devnet chain checks signatures against.
#[derive(Clone, Debug)]
pub struct ClusterKeys {
    pub operators: Vec<commonware_cryptography::ed25519::PrivateKey>,
    pub shares: Vec<Arc<std::collections::BTreeMap<u64, cohort_ingress::keys::ValidatorShare>>>,
}

/// [`run`] on given keys.
pub fn run_with_keys(config: &SimConfig, keys: Option<ClusterKeys>) -> Report {
    let wall = Instant::now();
    let runtime = deterministic::Config::new()
        .with_seed(config.seed)
        .with_cycle(config.cycle)
        .with_timeout(None);
    let outcome = match config.power_cut() {
        None => {
            let config = config.clone();
            deterministic::Runner::new(runtime)
                .start(|context| async move { simulate(context, config, keys, Stage::Whole).await })
        }
        Some(_) => {
            // Unsynced writes keep a seed-drawn half of their bytes when the power goes.
            let storage = deterministic::FaultConfig::default().write(deterministic::WriteConfig {
                failure_rate: Probability::from_f64(0.0).expect("0 is a probability"),
                retention_rate: Probability::from_f64(0.5).expect("0.5 is a probability"),
                mode: deterministic::PartialWriteMode::Subset,
            });
            let before = config.clone();
            let keys_before = keys.clone();
            let (outcome, checkpoint) =
                deterministic::Runner::new(runtime.with_storage_fault_config(storage))
                    .start_and_recover(|context| async move {
                        simulate(context, before, keys_before, Stage::UntilCut).await
                    });
            let carried = match outcome {
                Outcome::Cut(carried) => carried,
                done @ Outcome::Done(_) => return finish(done, wall),
            };
            let after = config.clone();
            deterministic::Runner::from(checkpoint).start(|context| async move {
                simulate(context, after, keys, Stage::AfterCut(carried)).await
            })
        }
    };
    finish(outcome, wall)
}

fn finish(outcome: Outcome, wall: Instant) -> Report {
    let mut report = match outcome {
        Outcome::Done(report) => *report,
        // Only the stage before a power cut stops at it, and `run` restarts after that one.
        Outcome::Cut(_) => unreachable!("a run stopped at its power cut after restarting"),
    };
    report.wall_ms = wall.elapsed().as_millis() as u64;
    report
}

/// Which part of a run one runtime plays: all of it, or the part before or after a power cut
/// (two runtimes, the second recovered from the first's storage).
enum Stage {
    Whole,
    UntilCut,
    AfterCut(Box<Carried>),
}

/// What outlives a power cut: the checker's record and the world outside the cluster. Nothing
/// here may hold a runtime context, or the first runtime refuses to stop.
pub(crate) struct Carried {
    pub genesis: SystemTime,
    pub observed: Observed,
    pub chain: DevnetChain,
    pub received: Arc<AtomicU64>,
    pub cpu: CpuMeter,
    pub restarts: u64,
    pub load: crate::load::TxLoad,
}

enum Outcome {
    Cut(Box<Carried>),
    Done(Box<Report>),
}

async fn simulate(
    context: deterministic::Context,
    config: SimConfig,
    keys: Option<ClusterKeys>,
    stage: Stage,
) -> Outcome {
    // Log lines carry this runtime's time while it runs.
    let _clock = crate::logs::PublishedClock::publish(&context);
    let (carried, until_cut) = match stage {
        Stage::Whole => (None, false),
        Stage::UntilCut => (None, true),
        Stage::AfterCut(carried) => (Some(*carried), false),
    };
    let mut cluster = Cluster::start(&context, &config, carried.as_ref(), keys.as_ref()).await;
    let (observed, first_slot) = match carried {
        Some(carried) => {
            let mut observed = carried.observed;
            // Whatever ran when the power went ended with it; nothing of it is owed.
            for operator in 0..config.operators {
                observed.on_crash(operator);
            }
            let cut = config.power_cut().map_or(0, |cut| cut.slot);
            (observed, cut)
        }
        None => (Observed::default(), 0),
    };
    let cut = config.power_cut().filter(|_| until_cut);
    let observed = match run_slots(&context, &config, &mut cluster, observed, first_slot, cut).await
    {
        Slots::Cut(observed) => {
            return Outcome::Cut(Box::new(Carried {
                genesis: cluster.genesis,
                observed,
                chain: cluster.chain,
                received: cluster.received,
                cpu: cluster.cpu,
                restarts: cluster.restarts.load(Ordering::Relaxed),
                load: cluster.load.clone(),
            }));
        }
        Slots::Done(observed) => observed,
    };
    let report = report::build(&context, &config, &cluster, observed).await;
    Outcome::Done(Box::new(report))
}

/// How the slot loop ended.
enum Slots {
    /// At the power cut, with the checker's record so far.
    Cut(Observed),
    /// After the run's last slot.
    Done(Observed),
}

/// Checks invariants slot by slot while the cluster runs; one extra slot lets the last slot's
/// decisions finalize. With a power cut to stop at, stops at its seed-drawn point instead.
async fn run_slots(
    context: &deterministic::Context,
    config: &SimConfig,
    cluster: &mut Cluster,
    mut observed: Observed,
    first_slot: u64,
    cut: Option<crate::faults::PowerCut>,
) -> Slots {
    let clock = cluster.clock;
    let cut_at = cut.map(|cut| {
        let offset = crash_offset(config.seed, usize::MAX, cut.slot, config.slot_duration);
        (cut.slot, clock.slot_start(cut.slot) + offset)
    });
    for slot in first_slot..=config.slots {
        if slot < config.slots {
            cluster
                .load
                .slot(slot, &cluster.engines, &cluster.relays)
                .await;
        }
        match cut_at {
            Some((cut_slot, at)) if slot == cut_slot => context.sleep_until(at).await,
            _ => context.sleep_until(clock.slot_start(slot + 1)).await,
        }
        while let Ok((operator, observation)) = cluster.observations.try_recv() {
            observed.observe(operator, observation, slot);
        }
        if let Some((group, records)) = &mut cluster.avs {
            while let Ok(record) = records.try_recv() {
                for (invariant, detail) in observed.avs.on_client(record) {
                    observed.violation(invariant, slot, detail);
                }
            }
            for (invariant, detail) in observed.avs.verify_signed(group) {
                observed.violation(invariant, slot, detail);
            }
        }
        while let Ok(crashed) = cluster.crashes.try_recv() {
            observed.on_crash(crashed.operator);
            observed.on_restart_record(crashed.operator, &crashed.record, slot);
            observed.crash_cuts.add(&crashed.cuts);
        }
        observed.on_held(
            &commonware_runtime::Metrics::encode(context),
            config.validators,
            config.operators as u64,
            slot,
        );
        if cut_at.is_some_and(|(cut_slot, _)| slot == cut_slot) {
            // The power goes: hand the record on, holding nothing of this runtime.
            observed.avs.on_power_cut();
            if let Ok(mut engines) = cluster.engines.lock() {
                engines.clear();
            }
            cluster.chain.set_clock(Arc::new(|| SystemTime::UNIX_EPOCH));
            return Slots::Cut(observed);
        }
    }
    Slots::Done(observed)
}
