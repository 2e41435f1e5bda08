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
    match verify_aggregator(
        &config.aggregators,
        &parse(&aggregator)?,
        &signed,
        &task.signature,
    ) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{AvsConfig, Timings},
        signing::{AggregatorKey, OperatorKey},
    };
    use cohort_avs_crypto::{EcdsaKey, Eip712Domain, sign_aggregator_ecdsa};
    use std::{collections::BTreeMap, time::Duration};
    use tonic::Code;

    fn key(byte: u8) -> EcdsaKey {
        EcdsaKey::from_bytes(&[byte; 32]).expect("key")
    }

    fn config() -> Config {
        let operator = key(1);
        let avs = format!("0x{}", "a1".repeat(20));
        let d = Duration::from_secs(1);
        Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            management_listen: None,
            metrics_listen: None,
            operator_address: format!("{:#x}", operator.address()),
            operator_key: OperatorKey(cohort_avs_crypto::OperatorKey::Ecdsa {
                key: operator,
                domain: Eip712Domain::eigenlayer("1", Address::ZERO),
            }),
            artifacts_dir: ".".into(),
            data_dir: ".".into(),
            auth_enabled: false,
            limits: Timings {
                health_interval: d,
                health_timeout: d,
                health_failures: 1,
                stage_timeout: d,
                stop_grace: d,
                drain_timeout: d,
                restart_backoff: d,
                restart_backoff_max: d,
                max_restarts: 1,
                task_timeout: d,
                stop_timeout: d,
            },
            aggregators: vec![AggregatorKey::Ecdsa {
                address: key(2).address(),
            }],
            avs: BTreeMap::from([(
                avs.clone(),
                AvsConfig {
                    address: avs,
                    operator_sets: vec![0],
                    max_concurrent_tasks: 1,
                    queue_depth: 1,
                    args: vec![],
                    env: BTreeMap::new(),
                    fixed_port: None,
                    initial: None,
                },
            )]),
        }
    }

    fn submission(config: &Config) -> TaskSubmission {
        let avs: Address = config
            .avs
            .keys()
            .next()
            .expect("avs")
            .parse()
            .expect("address");
        let task_id = B256::repeat_byte(7);
        let fields = TaskFields {
            task_id,
            avs,
            executor: config.operator_address.parse().expect("operator"),
            operator_set_id: 0,
            reference_timestamp: 5,
            task_block_number: 9,
            payload: b"square:3",
        };
        TaskSubmission {
            task_id: format!("{task_id:#x}"),
            aggregator_address: format!("{:#x}", key(2).address()),
            avs_address: format!("{avs:#x}"),
            payload: b"square:3".to_vec(),
            signature: sign_aggregator_ecdsa(&key(2), &fields).to_vec(),
            operator_set_id: 0,
            reference_timestamp: 5,
            executor_address: config.operator_address.to_uppercase().replace("0X", "0x"),
            task_block_number: 9,
            version: 1,
        }
    }

    #[test]
    fn a_good_task_passes_and_the_executor_address_is_case_insensitive() {
        let config = config();
        let checked = check(&config, submission(&config)).expect("valid");
        assert_eq!(checked.payload, b"square:3");
        assert_eq!(checked.key, checked.task_id.to_ascii_lowercase());
    }

    #[test]
    fn each_failure_has_its_code_in_hourglass_order() {
        let config = config();
        type Break = Box<dyn Fn(&mut TaskSubmission)>;
        let cases: Vec<(Break, Code)> = vec![
            (
                Box::new(|t| t.task_id = "0x12".into()),
                Code::InvalidArgument,
            ),
            (
                Box::new(|t| t.avs_address = "x".into()),
                Code::InvalidArgument,
            ),
            (Box::new(|t| t.signature.clear()), Code::InvalidArgument),
            (
                Box::new(|t| t.reference_timestamp = 0),
                Code::InvalidArgument,
            ),
            (Box::new(|t| t.version = 0), Code::InvalidArgument),
            (
                Box::new(|t| t.executor_address = format!("0x{}", "00".repeat(20))),
                Code::InvalidArgument,
            ),
            (
                Box::new(|t| t.avs_address = format!("0x{}", "bb".repeat(20))),
                Code::NotFound,
            ),
            (
                Box::new(|t| t.operator_set_id = 4),
                Code::FailedPrecondition,
            ),
            (
                Box::new(|t| t.aggregator_address = format!("0x{}", "cc".repeat(20))),
                Code::PermissionDenied,
            ),
            (
                Box::new(|t| t.payload = b"square:4".to_vec()),
                Code::Unauthenticated,
            ),
            (
                Box::new(|t| t.task_block_number = 10),
                Code::Unauthenticated,
            ),
            // Format problems come before the signature check.
            (
                Box::new(|t| {
                    t.payload.clear();
                    t.reference_timestamp = 0;
                }),
                Code::InvalidArgument,
            ),
        ];
        for (i, (break_it, code)) in cases.into_iter().enumerate() {
            let mut task = submission(&config);
            break_it(&mut task);
            let err = check(&config, task).expect_err("refused");
            assert_eq!(err.code(), code, "case {i}: {}", err.message());
        }
    }
}
