//! SubmitTask's checks that need no state, in Hourglass's order, each failure with a gRPC code
//! that says what is wrong. None of them answers UNAVAILABLE, DEADLINE_EXCEEDED,
//! RESOURCE_EXHAUSTED or INTERNAL: Hourglass's clients retry those, and a bad task stays bad.
//!
//! The checks that need state (replay, the AVS's current performer) are the actor's.

use crate::{
    config::{Config, parse_address},
    proto::executor::TaskSubmission,
    signing::{AggregatorRefusal, SignedTask, verify_aggregator},
};
use cohort_avs_crypto::{Address, B256, TaskFields, aggregator_digest};
use tonic::Status;

/// A submission that passed every stateless check.
#[derive(Clone, Debug)]
pub struct CheckedTask {
    /// As sent (the result echoes the performer's copy of it).
    pub task_id: String,
    /// Lowercase: the key replays are found by.
    pub key: String,
    pub task_hash: B256,
    /// Lowercase `0x…`.
    pub avs: String,
    pub avs_bytes: Address,
    pub operator_set_id: u32,
    pub reference_timestamp: u32,
    pub payload: Vec<u8>,
    /// The aggregator's digest of the task: two submissions with one id and different
    /// contents have different digests.
    pub request_hash: String,
}

fn task_id_bytes(text: &str) -> Option<B256> {
    let hex = text.strip_prefix("0x")?;
    if hex.len() != 64 {
        return None;
    }
    let bytes = hex::decode(hex).ok()?;
    Some(B256::from_slice(&bytes))
}

/// Checks `task` against the config: formats, executor, operator set, aggregator signature.
pub fn check(config: &Config, task: TaskSubmission) -> Result<CheckedTask, Status> {
    // 1. Formats.
    let Some(task_hash) = task_id_bytes(&task.task_id) else {
        return Err(Status::invalid_argument(format!(
            "task_id `{}` is not 0x + 64 hex",
            task.task_id
        )));
    };
    let address = |field: &str, value: &str| {
        parse_address(value).ok_or_else(|| {
            Status::invalid_argument(format!("{field} `{value}` is not 0x + 40 hex"))
        })
    };
    let aggregator = address("aggregator_address", &task.aggregator_address)?;
    let avs = address("avs_address", &task.avs_address)?;
    let executor = address("executor_address", &task.executor_address)?;
    if task.signature.is_empty() {
        return Err(Status::invalid_argument("signature is empty"));
    }
    if task.reference_timestamp == 0 {
        return Err(Status::invalid_argument("reference_timestamp is 0"));
    }
    if task.version != 1 {
        return Err(Status::invalid_argument(format!(
            "version {} is not supported (only 1)",
            task.version
        )));
    }
    // 2. The task must be for this executor.
    if executor != config.operator_address {
        return Err(Status::invalid_argument(format!(
            "executor_address {executor} is not this executor ({})",
            config.operator_address
        )));
    }
    // 3. The operator must be in the task's operator set.
    let Some(avs_config) = config.avs.get(&avs) else {
        return Err(Status::not_found(format!(
            "AVS {avs} is not served by this executor"
        )));
    };
    if !avs_config.operator_sets.is_empty()
        && !avs_config.operator_sets.contains(&task.operator_set_id)
    {
        return Err(Status::failed_precondition(format!(
            "operator {} is not in operator set {} of AVS {avs}",
            config.operator_address, task.operator_set_id
        )));
    }
    // 4. The aggregator's signature, over the message with our own address in it.
    let parse = |text: &str| -> Result<Address, Status> {
        text.parse()
            .map_err(|_| Status::invalid_argument(format!("`{text}` is not an address")))
    };
    let avs_bytes = parse(&avs)?;
    let signed = SignedTask {
        task_id: task_hash,
        avs: avs_bytes,
        executor: parse(&config.operator_address)?,
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        task_block_number: task.task_block_number,
        payload: &task.payload,
    };
    match verify_aggregator(&config.aggregators, &parse(&aggregator)?, &signed, &task.signature) {
        Ok(()) => {}
        Err(AggregatorRefusal::Unknown) => {
            return Err(Status::permission_denied(format!(
                "aggregator {aggregator} is not an accepted aggregator"
            )));
        }
        Err(AggregatorRefusal::BadSignature(why)) => {
            return Err(Status::unauthenticated(format!(
                "aggregator signature does not verify: {why}"
            )));
        }
    }
    let request_hash = aggregator_digest(&TaskFields {
        task_id: signed.task_id,
        avs: signed.avs,
        executor: signed.executor,
        operator_set_id: signed.operator_set_id,
        reference_timestamp: signed.reference_timestamp,
        task_block_number: signed.task_block_number,
        payload: signed.payload,
    });
    Ok(CheckedTask {
        key: task.task_id.to_ascii_lowercase(),
        task_id: task.task_id,
        task_hash,
        avs,
        avs_bytes,
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        payload: task.payload,
        request_hash: hex::encode(request_hash),
    })
}
