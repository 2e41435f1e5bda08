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
    pub task_block_number: u64,
    /// Who signed the task, and the signature: what the cluster's other operators check again
    /// before they vouch for a cluster-run AVS's task.
    pub aggregator: Address,
    pub aggregator_signature: Vec<u8>,
    /// For a cluster-run AVS: answered by the cluster, not by this operator's key.
    pub cluster: bool,
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
    let claim = Claim {
        task_hash,
        avs,
        aggregator,
        executor,
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        task_block_number: task.task_block_number,
        payload: &task.payload,
        signature: &task.signature,
    };
    let signers = check_claim(config, &claim)?;
    let cluster = config
        .avs
        .get(&claim.avs)
        .is_some_and(|entry| entry.cluster);
    let avs = claim.avs;
    Ok(CheckedTask {
        key: task.task_id.to_ascii_lowercase(),
        task_id: task.task_id,
        task_hash,
        avs,
        avs_bytes: signers.avs,
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        task_block_number: task.task_block_number,
        aggregator: signers.aggregator,
        aggregator_signature: task.signature,
        cluster,
        payload: task.payload,
        request_hash: hex::encode(signers.request_hash),
    })
}

/// What a claim that passed [`check_claim`] names, parsed.
struct Signers {
    avs: Address,
    aggregator: Address,
    /// The aggregator's digest of the task.
    request_hash: B256,
}

/// What the aggregator signed, its formats checked: addresses lowercase `0x…`.
struct Claim<'a> {
    task_hash: B256,
    avs: String,
    aggregator: String,
    executor: String,
    operator_set_id: u32,
    reference_timestamp: u32,
    task_block_number: u64,
    payload: &'a [u8],
    signature: &'a [u8],
}

/// Steps 2 to 4: the task is for this executor (the cluster, for a cluster-run AVS), an AVS it
/// serves and an operator set it is in, and the aggregator's signature holds.
fn check_claim(config: &Config, claim: &Claim<'_>) -> Result<Signers, Status> {
    let avs = &claim.avs;
    // 2. The task must be for this executor.
    let expected = config.executor_for(avs);
    if claim.executor != expected {
        return Err(Status::invalid_argument(format!(
            "executor_address {} is not this executor ({expected})",
            claim.executor
        )));
    }
    // 3. The operator must be in the task's operator set.
    let Some(avs_config) = config.avs.get(avs) else {
        return Err(Status::not_found(format!(
            "AVS {avs} is not served by this executor"
        )));
    };
    if !avs_config.operator_sets.is_empty()
        && !avs_config.operator_sets.contains(&claim.operator_set_id)
    {
        return Err(Status::failed_precondition(format!(
            "operator {expected} is not in operator set {} of AVS {avs}",
            claim.operator_set_id
        )));
    }
    // 4. The aggregator's signature, over the message with our own address in it.
    let parse = |text: &str| -> Result<Address, Status> {
        text.parse()
            .map_err(|_| Status::invalid_argument(format!("`{text}` is not an address")))
    };
    let avs_bytes = parse(avs)?;
    let signed = SignedTask {
        task_id: claim.task_hash,
        avs: avs_bytes,
        executor: parse(expected)?,
        operator_set_id: claim.operator_set_id,
        reference_timestamp: claim.reference_timestamp,
        task_block_number: claim.task_block_number,
        payload: claim.payload,
    };
    let aggregator = parse(&claim.aggregator)?;
    match verify_aggregator(&config.aggregators, &aggregator, &signed, claim.signature) {
        Ok(()) => {}
        Err(AggregatorRefusal::Unknown) => {
            return Err(Status::permission_denied(format!(
                "aggregator {} is not an accepted aggregator",
                claim.aggregator
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
    Ok(Signers {
        avs: avs_bytes,
        aggregator,
        request_hash,
    })
}

/// A task another operator of the cluster received, as the cluster chain orders it: checked
/// again here, since an operator vouches only for tasks it can check itself. The AVS must be
/// cluster-run here, and the aggregator's signature must name the cluster as executor.
pub struct OrderedTask<'a> {
    pub task_id: B256,
    pub avs: Address,
    pub aggregator: Address,
    pub operator_set_id: u32,
    pub reference_timestamp: u32,
    pub task_block_number: u64,
    pub payload: &'a [u8],
    pub signature: &'a [u8],
}

/// See [`OrderedTask`]; the error says why this operator will not vouch for it.
pub fn check_ordered(config: &Config, task: &OrderedTask<'_>) -> Result<(), String> {
    let avs = format!("{:#x}", task.avs);
    if !config.avs.get(&avs).is_some_and(|entry| entry.cluster) {
        return Err(format!("AVS {avs} is not cluster-run on this operator"));
    }
    let Some(cluster) = &config.cluster_operator_address else {
        return Err("no avs.cluster_operator_address on this operator".into());
    };
    let claim = Claim {
        task_hash: task.task_id,
        avs,
        aggregator: format!("{:#x}", task.aggregator),
        executor: cluster.clone(),
        operator_set_id: task.operator_set_id,
        reference_timestamp: task.reference_timestamp,
        task_block_number: task.task_block_number,
        payload: task.payload,
        signature: task.signature,
    };
    check_claim(config, &claim)
        .map(|_| ())
        .map_err(|status| status.message().to_string())
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
            cluster_operator_address: None,
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
                    cluster: false,
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

    /// For a cluster-run AVS the aggregator signs for the cluster's address: a task naming
    /// this operator's own address is refused, one naming the cluster's passes and is marked
    /// cluster-run. Another operator checks the task as ordered with the same rules.
    #[test]
    fn a_cluster_run_avs_takes_tasks_for_the_cluster_and_checks_them_when_ordered() {
        let mut config = config();
        let cluster = format!("0x{}", "c1".repeat(20));
        config.cluster_operator_address = Some(cluster.clone());
        for avs in config.avs.values_mut() {
            avs.cluster = true;
        }
        // Signed for this operator's own address: not for this executor.
        let err = check(&config, submission(&config)).expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());

        // Signed for the cluster: accepted, and ordered elsewhere it checks the same.
        let mut cluster_config = config.clone();
        cluster_config.operator_address = cluster.clone();
        let mut task = submission(&cluster_config);
        task.executor_address = cluster.clone();
        let checked = check(&config, task.clone()).expect("valid");
        assert!(checked.cluster);
        let ordered = |config: &Config, payload: &[u8], signature: &[u8]| {
            check_ordered(
                config,
                &OrderedTask {
                    task_id: checked.task_hash,
                    avs: checked.avs_bytes,
                    aggregator: checked.aggregator,
                    operator_set_id: checked.operator_set_id,
                    reference_timestamp: checked.reference_timestamp,
                    task_block_number: checked.task_block_number,
                    payload,
                    signature,
                },
            )
        };
        let signature = &checked.aggregator_signature;
        ordered(&config, &checked.payload, signature).expect("vouched for");
        let forged = ordered(&config, b"square:4", signature).expect_err("forged");
        assert!(forged.contains("does not verify"), "{forged}");

        // An AVS this operator does not run as the cluster's is not vouched for.
        let mut per_operator = config.clone();
        for avs in per_operator.avs.values_mut() {
            avs.cluster = false;
        }
        let refused =
            ordered(&per_operator, &checked.payload, signature).expect_err("not cluster-run here");
        assert!(refused.contains("not cluster-run"), "{refused}");
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
