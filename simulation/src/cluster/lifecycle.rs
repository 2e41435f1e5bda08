//! Each operator's lives in a run (start, crash, restart) as one task per operator, and the
//! storage a crash leaves behind for the next life: the cut disk and the slashing-protection
//! record the restarted runner reads.

use super::{
    operator::{self, Engines, OperatorSetup},
    setup::Crashed,
};
use crate::{SimConfig, disk::Disk};
use cohort_actors::runner::slashing::{SlashingProtection, Watermarks};
use cohort_ingress::SlotClock;
use cohort_marshal::PublicKey;
use commonware_cryptography::{Hasher, Sha256};
use commonware_p2p::simulated::Oracle;
use commonware_runtime::{Clock, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::channel::mpsc;
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};
use tracing::Instrument as _;

/// Each life of an operator: (start, crash) times; none for an operator that never starts.
/// Storage outlives every life.
pub(super) fn lives(
    config: &SimConfig,
    index: usize,
    genesis: SystemTime,
    clock: SlotClock,
) -> Vec<(SystemTime, Option<SystemTime>)> {
    let offline = config.offline().filter(|o| o.operator == index).last();
    let crash = config.crashes().filter(|c| c.operator == index).last();
    match (offline, crash) {
        (Some(offline), _) => offline
            .start_slot
            .map(|slot| (clock.slot_start(slot), None))
            .into_iter()
            .collect(),
        (None, Some(crash)) => {
            let offset = crash_offset(config.seed, index, crash.slot, config.slot_duration);
            let mut lives = vec![(genesis, Some(clock.slot_start(crash.slot) + offset))];
            if let Some(restart) = crash.restart_slot {
                lives.push((clock.slot_start(restart), None));
            }
            lives
        }
        (None, None) => vec![(genesis, None)],
    }
}

/// Runs one operator's lives in turn: each starts the operator from its storage, and a crash
/// aborts every task of the life.
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_lifecycle(
    context: &deterministic::Context,
    setup: OperatorSetup,
    lives: Vec<(SystemTime, Option<SystemTime>)>,
    after_power_cut: bool,
    oracle: &Oracle<PublicKey, deterministic::Context>,
    crash_sender: &mpsc::UnboundedSender<Crashed>,
    restarts: &Arc<AtomicU64>,
    engines: &Engines,
) {
    let index = setup.index;
    let oracle = oracle.clone();
    let crash_sender = crash_sender.clone();
    let restarts = restarts.clone();
    let engines = engines.clone();
    context
        .child("lifecycle")
        .with_attribute("operator", index)
        .spawn(move |context| async move {
            for (life, (start, crash_at)) in lives.into_iter().enumerate() {
                context.sleep_until(start).await;
                if life > 0 || after_power_cut {
                    restarts.fetch_add(1, Ordering::Relaxed);
                }
                let disk = setup.disk.clone();
                let setup = setup.clone();
                let oracle = oracle.clone();
                let operator = context.child("operator").spawn(move |context| {
                    async move {
                        let _handles = operator::start(context, &oracle, setup).await;
                        futures::future::pending::<()>().await;
                    }
                    .instrument(tracing::info_span!("operator", operator = index))
                });
                match crash_at {
                    Some(at) => {
                        context.sleep_until(at).await;
                        // Aborting the operator's task aborts every task it spawned.
                        operator.abort();
                        let _ = operator.await;
                        // The engine's storage must be closed before the next life opens it.
                        if let Ok(mut engines) = engines.lock() {
                            engines.remove(&index);
                        }
                        // Aborted tasks are dropped, with every storage handle they held,
                        // when the executor next gets to them: let it.
                        context.sleep(Duration::from_millis(1)).await;
                        // Every handle of the life is closed: the disk keeps what a crash
                        // would have let reach it, and the next life reads that.
                        let cuts = disk.crash(&context, life as u64).await;
                        let record = durable_record(&context, index).await;
                        let _ = crash_sender.send(Crashed {
                            operator: index,
                            record,
                            cuts,
                        });
                    }
                    None => {
                        let _ = operator.await;
                    }
                }
            }
        });
}

/// The disk of operator `index`: one that a lone crash cuts, unless the run keeps the runtime's
/// own behaviour (`--no-crash-cut`: a crash loses every unsynced write) or the operator never
/// crashes alone.
pub(super) fn disk(config: &SimConfig, index: usize) -> Disk {
    let crashes = config.crashes().any(|c| c.operator == index);
    let disk = Disk::new(config.seed, index, config.crash_cut && crashes);
    #[cfg(feature = "test-hooks")]
    if config.injected_bug == Some(crate::InjectedBug::UnsyncedSlashing) {
        return disk.with_lying_partition(slashing_partition(index));
    }
    disk
}

/// Where operator `index` keeps its slashing-protection record (the operator's partition
/// prefix is `operator-{index}`).
fn slashing_partition(index: usize) -> String {
    format!("operator-{index}-slashing")
}

/// The slashing-protection record operator `index` reopens with, read as its runner reads it.
async fn durable_record(
    context: &deterministic::Context,
    index: usize,
) -> Result<BTreeMap<u64, Watermarks>, String> {
    let store =
        SlashingProtection::init(context.child("restart_record"), slashing_partition(index))
            .await
            .map_err(|err| err.to_string())?;
    store.watermarks().map_err(|err| err.to_string())
}

/// Where in its slot an operator crashes (or, for `usize::MAX`, the whole cluster loses
/// power): drawn from the seed, anywhere in the slot.
pub(crate) fn crash_offset(
    seed: u64,
    operator: usize,
    slot: u64,
    slot_duration: Duration,
) -> Duration {
    let digest = Sha256::hash(&[
        b"crash",
        &seed.to_le_bytes(),
        &(operator as u64).to_le_bytes(),
        &slot.to_le_bytes(),
    ]);
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    let millis = slot_duration.as_millis().max(1) as u64;
    Duration::from_millis(u64::from_le_bytes(bytes) % millis)
}
