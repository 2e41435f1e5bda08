//! A cluster-run AVS in the simulation: deterministic in-process performers (some faulty), a
//! load of tasks submitted to rotating operators by clients that retry elsewhere when the
//! operator they asked goes down, and the invariants every run with tasks must keep.

use crate::report::{Percentiles, percentiles};
use bytes::Bytes;
use cohort_actors::avs::{Performer, TaskEvent};
use cohort_avs_crypto::{
    Address, AuthFields, B256, Bn254PublicKey, HashedMessage, auth_digest, message_hash,
    verify_auth_bn254, verify_batch, verify_result_bn254,
};
use cohort_ingress::{
    SlotClock,
    avs::{ClusterTask, Mailbox, SignedTask, TaskError, TaskId},
    keys::to_hex,
};
use commonware_cryptography::{Hasher, Sha256};
use commonware_runtime::{Clock, Spawner, Supervisor as _, deterministic};
use commonware_utils::channel::mpsc;
use futures::future::BoxFuture;
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// The AVS the simulated cluster runs.
pub const SIM_AVS: [u8; 20] = [0xa5; 20];
/// The address the simulated cluster is registered under as one AVS operator.
pub const SIM_OPERATOR_ADDRESS: [u8; 20] = [0xc0; 20];
/// How long a client gives a task: two slots of the default clock.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(24);
/// How long a slow performer takes.
pub const SLOW_PERFORMER: Duration = Duration::from_secs(3);

/// How an operator's performer misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PerformerFault {
    /// Answers at once with a wrong output.
    Lie,
    /// Answers correctly after [`SLOW_PERFORMER`].
    Slow,
    /// Never answers.
    Hang,
    /// Fails every task, as a crashed performer process does.
    Crash,
}

impl PerformerFault {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lie => "lie",
            Self::Slow => "slow",
            Self::Hang => "hang",
            Self::Crash => "crash",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "lie" => Ok(Self::Lie),
            "slow" => Ok(Self::Slow),
            "hang" => Ok(Self::Hang),
            "crash" => Ok(Self::Crash),
            other => Err(format!(
                "performer fault `{other}`: one of lie, slow, hang, crash"
            )),
        }
    }
}

/// The task load of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AvsLoad {
    /// Tasks submitted per slot, spread evenly over it.
    pub tasks_per_slot: u32,
    /// Operators whose performer misbehaves, and how.
    pub performer_faults: BTreeMap<usize, PerformerFault>,
}

impl AvsLoad {
    /// The `cohort simulate` flags that give this load.
    pub fn flags(&self) -> String {
        let mut flags = format!("--avs-tasks-per-slot {}", self.tasks_per_slot);
        for (operator, fault) in &self.performer_faults {
            flags.push_str(&format!(
                " --avs-performer-fault {operator}:{}",
                fault.name()
            ));
        }
        flags
    }
}

/// The AVS flags of `cohort simulate`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AvsArgs {
    /// Run a cluster-run AVS and submit this many tasks per slot to it, each to the next
    /// operator in turn (0: the cluster runs no AVS).
    #[arg(long, default_value_t = 0)]
    pub avs_tasks_per_slot: u32,
    /// Operator `I`'s performer misbehaves: `I:lie`, `I:slow`, `I:hang` or `I:crash`.
    /// Repeatable, at most f operators.
    #[arg(long, value_parser = parse_performer_fault)]
    pub avs_performer_fault: Vec<(usize, PerformerFault)>,
}

fn parse_performer_fault(text: &str) -> Result<(usize, PerformerFault), String> {
    let (operator, fault) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: expected OPERATOR:FAULT, e.g. 1:lie"))?;
    let operator = operator
        .parse()
        .map_err(|_| format!("`{text}`: operator `{operator}` is not a number"))?;
    Ok((operator, PerformerFault::parse(fault)?))
}

impl AvsArgs {
    /// The load these flags ask for, if any. Performer faults without tasks are kept (as a
    /// load of no tasks), so that validation refuses them instead of dropping them silently.
    pub fn load(&self) -> Option<AvsLoad> {
        if self.avs_tasks_per_slot == 0 && self.avs_performer_fault.is_empty() {
            return None;
        }
        Some(AvsLoad {
            tasks_per_slot: self.avs_tasks_per_slot,
            performer_faults: self.avs_performer_fault.iter().copied().collect(),
        })
    }
}

/// What an honest performer answers: a digest of the payload, so a liar's output differs.
pub fn honest_output(payload: &[u8]) -> Bytes {
    Bytes::copy_from_slice(Sha256::hash(&[b"cohort/sim-performer".as_slice(), payload]).as_ref())
}

/// A deterministic in-process performer.
pub struct SimPerformer {
    pub fault: Option<PerformerFault>,
    pub context: deterministic::Context,
}

impl Performer for SimPerformer {
    fn execute(&self, task: &ClusterTask) -> BoxFuture<'static, Result<Bytes, String>> {
        let payload = task.payload.clone();
        match self.fault {
            None => Box::pin(async move { Ok(honest_output(&payload)) }),
            Some(PerformerFault::Lie) => Box::pin(async move {
                Ok(Bytes::copy_from_slice(
                    Sha256::hash(&[b"a lie".as_slice(), &payload]).as_ref(),
                ))
            }),
            Some(PerformerFault::Slow) => {
                let sleep = self.context.sleep(SLOW_PERFORMER);
                Box::pin(async move {
                    sleep.await;
                    Ok(honest_output(&payload))
                })
            }
            Some(PerformerFault::Hang) => Box::pin(futures::future::pending()),
            Some(PerformerFault::Crash) => {
                Box::pin(async move { Err("the performer process exited".to_string()) })
            }
        }
    }
}

/// The check every simulated operator runs on a task: it must be for the cluster's AVS.
pub fn check(task: &ClusterTask) -> Result<(), String> {
    if task.avs != SIM_AVS {
        return Err(format!(
            "AVS 0x{} is not run by this cluster",
            to_hex(&task.avs)
        ));
    }
    Ok(())
}

/// Every operator's current life's AVS mailbox, for the clients.
pub type Mailboxes = Arc<Mutex<BTreeMap<usize, Mailbox>>>;

/// What a client saw of one task.
#[derive(Clone, Debug)]
pub enum ClientRecord {
    Submitted {
        task: ClusterTask,
        at: SystemTime,
    },
    Ended {
        task_id: TaskId,
        at: SystemTime,
        result: Result<SignedTask, String>,
    },
}

/// When and where a run's tasks go.
pub struct LoadSchedule {
    pub load: AvsLoad,
    pub seed: u64,
    pub clock: SlotClock,
    /// Slots `first..last` get tasks.
    pub slots: (u64, u64),
    pub operators: usize,
}

/// Submits `load.tasks_per_slot` tasks per slot from `first_slot` until `last_slot`, each to the
/// next operator in turn; a client whose operator stops retries at the following ones.
pub fn spawn_load(
    context: &deterministic::Context,
    schedule: LoadSchedule,
    mailboxes: Mailboxes,
    records: mpsc::UnboundedSender<ClientRecord>,
) {
    let LoadSchedule {
        load,
        seed,
        clock,
        slots: (first_slot, last_slot),
        operators,
    } = schedule;
    if load.tasks_per_slot == 0 {
        return;
    }
    context.child("avs_load").spawn(move |context| async move {
        let gap = clock.slot_duration / load.tasks_per_slot;
        // Clients are this task's children, and the runtime aborts a task's children when it
        // ends: it waits for them, or the callers still waiting when the last task goes out
        // would vanish without an answer.
        let mut clients = Vec::new();
        for slot in first_slot..last_slot {
            for i in 0..load.tasks_per_slot {
                context.sleep_until(clock.slot_start(slot) + gap * i).await;
                let number = slot * u64::from(load.tasks_per_slot) + u64::from(i);
                let now = context.current();
                let task = task(seed, number, now + TASK_TIMEOUT);
                let _ = records.send(ClientRecord::Submitted {
                    task: task.clone(),
                    at: now,
                });
                let first = number as usize % operators;
                let mailboxes = mailboxes.clone();
                let records = records.clone();
                clients.push(context.child("client").spawn(move |context| async move {
                    let result = submit(&context, &mailboxes, first, operators, task.clone()).await;
                    let _ = records.send(ClientRecord::Ended {
                        task_id: task.task_id,
                        at: context.current(),
                        result,
                    });
                }));
            }
        }
        futures::future::join_all(clients).await;
    });
}

async fn submit(
    context: &deterministic::Context,
    mailboxes: &Mailboxes,
    first: usize,
    operators: usize,
    task: ClusterTask,
) -> Result<SignedTask, String> {
    let deadline = task.deadline();
    let mut attempt = 0;
    loop {
        let operator = (first + attempt) % operators;
        attempt += 1;
        let mailbox = mailboxes
            .lock()
            .ok()
            .and_then(|m| m.get(&operator).cloned());
        if let Some(mut mailbox) = mailbox {
            match mailbox.submit(task.clone()).await {
                Ok(signed) => return Ok(signed),
                // The operator went down (or was not up yet): ask the next one, as a caller
                // retries, after a pause once every operator was asked.
                Err(TaskError::Stopped) => {}
                Err(err) => return Err(err.to_string()),
            }
        }
        if attempt % operators == 0 {
            if context.current() + RETRY_PAUSE >= deadline {
                return Err("no operator answered before the deadline".into());
            }
            context.sleep(RETRY_PAUSE).await;
        }
    }
}

/// How long a client waits before asking every operator again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Task `number` of a run: its id and payload are functions of the seed.
fn task(seed: u64, number: u64, deadline: SystemTime) -> ClusterTask {
    let id = Sha256::hash(&[
        b"cohort/sim-task".as_slice(),
        &seed.to_be_bytes(),
        &number.to_be_bytes(),
    ]);
    let mut task_id = [0u8; 32];
    task_id.copy_from_slice(id.as_ref());
    ClusterTask {
        task_id,
        avs: SIM_AVS,
        aggregator: [0xaa; 20],
        operator_set_id: 1,
        reference_timestamp: number as u32,
        task_block_number: number,
        deadline_ms: deadline
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        payload: Bytes::from(number.to_be_bytes().to_vec()),
        aggregator_signature: Bytes::new(),
    }
}

/// What the checker keeps about tasks while the run goes.
#[derive(Default)]
pub(crate) struct AvsObserved {
    tasks: BTreeMap<TaskId, (ClusterTask, SystemTime)>,
    ended: BTreeMap<TaskId, Result<(), String>>,
    latencies: Vec<u64>,
    /// Submitted before a power cut and never answered: the cut took them.
    lost_to_power_cut: BTreeSet<TaskId>,
    ordered: BTreeMap<TaskId, BTreeMap<usize, u64>>,
    partial_digests: BTreeMap<TaskId, BTreeSet<[u8; 32]>>,
    bad_partials: BTreeMap<usize, u64>,
    disagreements: BTreeMap<usize, u64>,
    pub(crate) signed_by_cluster: u64,
    /// Signed results not checked yet: checked together once per slot.
    unverified: Vec<(ClusterTask, SignedTask)>,
    /// The first submission and the last signed answer: the window throughput is taken over.
    first_submitted: Option<SystemTime>,
    last_signed: Option<SystemTime>,
}

/// Signed results per slot checked one by one, as an aggregator checks them; those beyond are
/// checked in one batch (a random linear combination), so a load of thousands of tasks per
/// second is checked in full without a pairing per signature.
const VERIFY_ONE_BY_ONE: usize = 64;

/// A violation the AVS invariants found: (invariant, detail).
pub(crate) type AvsViolation = (&'static str, String);

impl AvsObserved {
    pub(crate) fn on_client(&mut self, record: ClientRecord) -> Vec<AvsViolation> {
        let mut violations = Vec::new();
        match record {
            ClientRecord::Submitted { task, at } => {
                self.first_submitted.get_or_insert(at);
                self.tasks.insert(task.task_id, (task, at));
            }
            ClientRecord::Ended {
                task_id,
                at,
                result,
            } => {
                if let Some((task, submitted)) = self.tasks.get(&task_id) {
                    self.latencies.push(
                        at.duration_since(*submitted)
                            .map_or(0, |d| d.as_millis() as u64),
                    );
                    if let Ok(signed) = &result {
                        self.last_signed = Some(self.last_signed.map_or(at, |last| last.max(at)));
                        self.unverified.push((task.clone(), signed.clone()));
                        if signed.output != honest_output(&task.payload) {
                            violations.push((
                                "avs_honest_output",
                                format!(
                                    "task 0x{}: the cluster signed an output no honest performer gave",
                                    to_hex(&task_id)
                                ),
                            ));
                        }
                    }
                }
                self.ended.insert(task_id, result.map(|_| ()));
            }
        }
        violations
    }

    pub(crate) fn on_event(&mut self, operator: usize, event: TaskEvent) -> Vec<AvsViolation> {
        let mut violations = Vec::new();
        match event {
            TaskEvent::Ordered { height, task_id } => {
                let log = self.ordered.entry(task_id).or_default();
                let first = *log.entry(operator).or_insert(height);
                if log.values().any(|h| *h != first) {
                    violations.push((
                        "avs_task_log",
                        format!(
                            "task 0x{} was first ordered at different heights: {log:?}",
                            to_hex(&task_id)
                        ),
                    ));
                }
            }
            TaskEvent::PartialSigned { task_id, digest } => {
                let digests = self.partial_digests.entry(task_id).or_default();
                digests.insert(digest);
                if digests.len() > 1 {
                    violations.push((
                        "avs_one_output",
                        format!(
                            "task 0x{}: partials signed for {} different outputs",
                            to_hex(&task_id),
                            digests.len()
                        ),
                    ));
                }
            }
            TaskEvent::Signed(_) => self.signed_by_cluster += 1,
            TaskEvent::BadPartial { operator, .. } => {
                *self.bad_partials.entry(operator as usize).or_default() += 1;
            }
            TaskEvent::Disagreed { operator, .. } => {
                *self.disagreements.entry(operator as usize).or_default() += 1;
            }
            TaskEvent::Decided { .. } | TaskEvent::Failed { .. } => {}
        }
        violations
    }

    /// Checks the signed results that came since the last call: both signatures of each
    /// against the cluster's key.
    pub(crate) fn verify_signed(&mut self, group: &Bn254PublicKey) -> Vec<AvsViolation> {
        let unverified = std::mem::take(&mut self.unverified);
        let split = unverified.len().min(VERIFY_ONE_BY_ONE);
        let (alone, batched) = unverified.split_at(split);
        let mut violations: Vec<AvsViolation> = alone
            .iter()
            .flat_map(|(task, signed)| verify(task, signed, group))
            .collect();
        violations.extend(verify_batched(batched, group));
        violations
    }

    /// The power went: tasks in flight are lost with the clients that waited for them.
    pub(crate) fn on_power_cut(&mut self) {
        for task_id in self.tasks.keys() {
            if !self.ended.contains_key(task_id) {
                self.lost_to_power_cut.insert(*task_id);
            }
        }
    }

    /// At the end: every task whose deadline passed ended in a signed result or an error.
    pub(crate) fn at_end(&self, now: SystemTime) -> Vec<AvsViolation> {
        let mut violations = Vec::new();
        for (task_id, (task, _)) in &self.tasks {
            let deadline = task.deadline();
            if deadline + Duration::from_secs(1) < now
                && !self.ended.contains_key(task_id)
                && !self.lost_to_power_cut.contains(task_id)
            {
                violations.push((
                    "avs_task_ends",
                    format!(
                        "task 0x{} passed its deadline without an answer to its caller",
                        to_hex(task_id)
                    ),
                ));
            }
        }
        violations
    }

    pub(crate) fn report(&self) -> AvsReport {
        let mut failures: BTreeMap<String, u64> = BTreeMap::new();
        for result in self.ended.values() {
            if let Err(reason) = result {
                // Group by the error's kind, without the task-specific detail.
                let kind = reason.split(':').next().unwrap_or(reason).to_string();
                *failures.entry(kind).or_default() += 1;
            }
        }
        let signed = self.ended.values().filter(|r| r.is_ok()).count() as u64;
        let window_ms = match (self.first_submitted, self.last_signed) {
            (Some(first), Some(last)) => last.duration_since(first).map_or(0, |d| d.as_millis()),
            _ => 0,
        };
        AvsReport {
            submitted: self.tasks.len() as u64,
            signed,
            // Tenths, so a light load does not read as none.
            signed_per_second: (u128::from(signed) * 10_000)
                .checked_div(window_ms)
                .map_or(0.0, |tenths| tenths as f64 / 10.0),
            failed: self.ended.values().filter(|r| r.is_err()).count() as u64,
            lost_to_power_cut: self.lost_to_power_cut.len() as u64,
            latency_ms: percentiles(self.latencies.clone()),
            failures,
            bad_partials_by_operator: self.bad_partials.clone(),
            disagreements_by_operator: self.disagreements.clone(),
        }
    }
}

/// Checks a signed result as an aggregator would: both signatures against the cluster's key.
fn verify(task: &ClusterTask, signed: &SignedTask, group: &Bn254PublicKey) -> Vec<AvsViolation> {
    let task_id = B256::from(task.task_id);
    let hash = message_hash(&task_id, &signed.output);
    let mut violations = Vec::new();
    if let Err(err) = verify_result_bn254(
        group,
        task.reference_timestamp,
        &hash,
        &signed.result_signature,
    ) {
        violations.push((
            "avs_signature_valid",
            format!("task 0x{}: result signature: {err}", to_hex(&task.task_id)),
        ));
    }
    let auth = AuthFields {
        task_id,
        avs: Address::from(task.avs),
        operator: Address::from(SIM_OPERATOR_ADDRESS),
        operator_set_id: task.operator_set_id,
        result_signature: &signed.result_signature,
    };
    if let Err(err) = verify_auth_bn254(group, &auth, &signed.auth_signature) {
        violations.push((
            "avs_signature_valid",
            format!("task 0x{}: auth signature: {err}", to_hex(&task.task_id)),
        ));
    }
    violations
}

/// [`verify`] for many results at once: every result and auth signature in one batch check,
/// which names each one that fails.
fn verify_batched(
    results: &[(ClusterTask, SignedTask)],
    group: &Bn254PublicKey,
) -> Vec<AvsViolation> {
    let mut messages = Vec::with_capacity(results.len() * 2);
    for (task, signed) in results {
        let task_id = B256::from(task.task_id);
        let hash = message_hash(&task_id, &signed.output);
        messages.push(HashedMessage::certificate(task.reference_timestamp, &hash));
        let auth = AuthFields {
            task_id,
            avs: Address::from(task.avs),
            operator: Address::from(SIM_OPERATOR_ADDRESS),
            operator_set_id: task.operator_set_id,
            result_signature: &signed.result_signature,
        };
        messages.push(HashedMessage::gnark(auth_digest(&auth).as_slice()));
    }
    let items: Vec<(HashedMessage, &[u8])> = results
        .iter()
        .flat_map(|(_, signed)| {
            [
                signed.result_signature.as_slice(),
                signed.auth_signature.as_slice(),
            ]
        })
        .zip(&messages)
        .map(|(signature, message)| (*message, signature))
        .collect();
    verify_batch(group, &items)
        .into_iter()
        .enumerate()
        .filter(|(_, valid)| !valid)
        .map(|(index, _)| {
            let (task, _) = &results[index / 2];
            let which = if index % 2 == 0 { "result" } else { "auth" };
            (
                "avs_signature_valid",
                format!(
                    "task 0x{}: {which} signature does not verify against the cluster's key",
                    to_hex(&task.task_id)
                ),
            )
        })
        .collect()
}

/// The tasks part of a run's report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AvsReport {
    pub submitted: u64,
    pub signed: u64,
    /// Tasks signed per simulated second, from the first submission to the last signed answer.
    pub signed_per_second: f64,
    pub failed: u64,
    pub lost_to_power_cut: u64,
    /// Simulated time from a client's submission to its answer (signed or error).
    pub latency_ms: Percentiles,
    /// Failed tasks by the kind of error their callers got.
    pub failures: BTreeMap<String, u64>,
    /// Partial signatures found invalid, by the simulation index of the operator that sent them.
    pub bad_partials_by_operator: BTreeMap<usize, u64>,
    /// Performer outputs that differed from the one the cluster decided, by operator.
    pub disagreements_by_operator: BTreeMap<usize, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_avs_crypto::{Bn254Key, sign_auth_bn254, sign_result_bn254};

    fn signed(key: &Bn254Key, number: u64) -> (ClusterTask, SignedTask) {
        let task = task(7, number, SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        let output = honest_output(&task.payload);
        let task_id = B256::from(task.task_id);
        let result_signature = sign_result_bn254(
            key,
            task.reference_timestamp,
            &message_hash(&task_id, &output),
        )
        .to_vec();
        let auth_signature = sign_auth_bn254(
            key,
            &AuthFields {
                task_id,
                avs: Address::from(task.avs),
                operator: Address::from(SIM_OPERATOR_ADDRESS),
                operator_set_id: task.operator_set_id,
                result_signature: &result_signature,
            },
        )
        .to_vec();
        let signed = SignedTask {
            task_id: task.task_id,
            output,
            result_signature,
            auth_signature,
        };
        (task, signed)
    }

    #[test]
    fn a_bad_signature_is_named_whether_checked_alone_or_in_a_batch() {
        let key = Bn254Key::from_be_bytes(&[7u8; 31]).expect("key");
        let mut observed = AvsObserved::default();
        let results: Vec<_> = (0..(VERIFY_ONE_BY_ONE as u64 + 40))
            .map(|n| signed(&key, n))
            .collect();
        let alone = 3;
        let batched = VERIFY_ONE_BY_ONE + 17;
        let mut bad = results.clone();
        // A result signature from another key, checked alone; an auth signature that is another
        // task's, checked in the batch.
        let other = Bn254Key::from_be_bytes(&[9u8; 31]).expect("key");
        bad[alone].1.result_signature = signed(&other, alone as u64).1.result_signature;
        bad[batched].1.auth_signature = results[batched + 1].1.auth_signature.clone();
        observed.unverified = results;
        assert!(observed.verify_signed(key.public_key()).is_empty());
        observed.unverified = bad.clone();
        let violations = observed.verify_signed(key.public_key());
        let named: Vec<String> = violations
            .iter()
            .map(|(_, detail)| detail.clone())
            .collect();
        // The auth signature is over the result signature, so a wrong result breaks both.
        assert_eq!(violations.len(), 3, "{named:?}");
        assert!(named[0].contains(&to_hex(&bad[alone].0.task_id)) && named[0].contains("result"));
        assert!(named[1].contains(&to_hex(&bad[alone].0.task_id)) && named[1].contains("auth"));
        assert!(named[2].contains(&to_hex(&bad[batched].0.task_id)) && named[2].contains("auth"));
        assert!(
            violations
                .iter()
                .all(|(invariant, _)| *invariant == "avs_signature_valid")
        );
    }
}
