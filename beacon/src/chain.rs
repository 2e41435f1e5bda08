//! What the cluster learns from its beacon nodes at start: the chain's genesis, its timing and
//! the fork it signs for. Everything here comes from the nodes, never from a built-in table, so
//! one binary serves mainnet, testnets and a local dev chain alike.

use crate::{
    api::{self, Data},
    node::{BeaconNode, CallError},
    nodes::{ChainIdentity, Nodes},
};
use cohort_eth_types::PresetKind;
use commonware_runtime::Clock;
use serde_json::{Map, Value};
use tracing::{info, warn};

/// The chain as the nodes describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub genesis_time: u64,
    pub genesis_validators_root: [u8; 32],
    /// The spec's `GENESIS_FORK_VERSION`, as `beacon/genesis` reports it. Not what validators
    /// sign with: that is [`Chain::fork`]'s current version.
    pub genesis_fork_version: [u8; 4],
    pub seconds_per_slot: u64,
    pub slots_per_epoch: u64,
    /// The head state's fork: its `current_version` is what signatures are made for.
    pub fork: api::Fork,
    pub fork_schedule: Vec<api::Fork>,
    /// The first Electra epoch, if the node knows one: from it on, attestations change shape.
    pub electra_fork_epoch: Option<u64>,
    /// The spec's `CAPELLA_FORK_VERSION`: what voluntary exits are signed under in every fork
    /// from Capella on (EIP-7044). `None` if the node's spec does not name it.
    pub capella_fork_version: Option<[u8; 4]>,
    pub sync_committee_size: u64,
    pub epochs_per_sync_committee_period: u64,
    /// The preset the chain runs (container sizes): `PRESET_BASE`, or told by the sync
    /// committee size when a node does not name it.
    pub preset: PresetKind,
}

/// One node as `cohort config check` reports it.
#[derive(Clone, Debug)]
pub struct NodeReport {
    pub url: String,
    pub outcome: Result<NodeFacts, String>,
}

#[derive(Clone, Debug)]
pub struct NodeFacts {
    pub version: String,
    pub genesis_time: u64,
    pub genesis_validators_root: [u8; 32],
    pub genesis_fork_version: [u8; 4],
    pub head_slot: u64,
    pub sync_distance: u64,
    pub is_syncing: bool,
}

/// Reads one `uint64` spec value; nodes write them as decimal strings.
fn spec_u64(spec: &Map<String, Value>, key: &str) -> Result<u64, String> {
    match spec.get(key) {
        Some(Value::String(text)) => text
            .parse()
            .map_err(|_| format!("config/spec {key} = `{text}` is not an integer")),
        Some(Value::Number(number)) => number
            .as_u64()
            .ok_or_else(|| format!("config/spec {key} is not a uint64")),
        Some(other) => Err(format!("config/spec {key} = {other} is not an integer")),
        None => Err(format!("config/spec has no {key}")),
    }
}

/// The first Electra epoch; nodes older than Electra do not name it (and a far-future epoch
/// written as `18446744073709551615` means "not scheduled").
fn electra_epoch(spec: &Map<String, Value>) -> Option<u64> {
    spec_u64(spec, "ELECTRA_FORK_EPOCH")
        .ok()
        .filter(|epoch| *epoch != u64::MAX)
}

async fn facts(node: &BeaconNode) -> Result<NodeFacts, CallError> {
    let genesis: Data<api::Genesis> = node.get("beacon/genesis", "/eth/v1/beacon/genesis").await?;
    let version: Data<api::Version> = node.get("node/version", "/eth/v1/node/version").await?;
    let syncing: Data<api::Syncing> = node.get("node/syncing", "/eth/v1/node/syncing").await?;
    Ok(NodeFacts {
        version: version.data.version,
        genesis_time: genesis.data.genesis_time,
        genesis_validators_root: genesis.data.genesis_validators_root.0,
        genesis_fork_version: genesis.data.genesis_fork_version,
        head_slot: syncing.data.head_slot,
        sync_distance: syncing.data.sync_distance,
        is_syncing: syncing.data.is_syncing,
    })
}

/// Every configured node's version, genesis and sync state (for `cohort config check`).
pub async fn describe<E: Clock + Send + Sync + 'static>(nodes: &Nodes<E>) -> Vec<NodeReport> {
    let mut reports = Vec::new();
    for node in nodes.all() {
        reports.push(NodeReport {
            url: node.url().to_string(),
            outcome: facts(node).await.map_err(|err| err.to_string()),
        });
    }
    reports
}

async fn chain_of(node: &BeaconNode) -> Result<Chain, String> {
    let genesis: Data<api::Genesis> = node
        .get("beacon/genesis", "/eth/v1/beacon/genesis")
        .await
        .map_err(|err| format!("beacon/genesis: {err}"))?;
    let spec: Data<Map<String, Value>> = node
        .get("config/spec", "/eth/v1/config/spec")
        .await
        .map_err(|err| format!("config/spec: {err}"))?;
    let fork: Data<api::Fork> = node
        .get("beacon/states/fork", "/eth/v1/beacon/states/head/fork")
        .await
        .map_err(|err| format!("beacon/states/head/fork: {err}"))?;
    let schedule: Data<Vec<api::Fork>> = node
        .get("config/fork_schedule", "/eth/v1/config/fork_schedule")
        .await
        .map_err(|err| format!("config/fork_schedule: {err}"))?;
    let spec = spec.data;
    let seconds_per_slot = spec_u64(&spec, "SECONDS_PER_SLOT")?;
    let slots_per_epoch = spec_u64(&spec, "SLOTS_PER_EPOCH")?;
    if seconds_per_slot == 0 || slots_per_epoch == 0 {
        return Err("config/spec gives a zero slot length or epoch length".into());
    }
    let sync_committee_size = spec_u64(&spec, "SYNC_COMMITTEE_SIZE").unwrap_or(512);
    let preset = match spec.get("PRESET_BASE").and_then(Value::as_str) {
        Some(name) => name.trim_matches('\'').parse().map_err(|_| {
            format!("config/spec PRESET_BASE `{name}` is neither mainnet nor minimal")
        })?,
        None if sync_committee_size == 32 => PresetKind::Minimal,
        None => PresetKind::Mainnet,
    };
    Ok(Chain {
        preset,
        genesis_time: genesis.data.genesis_time,
        genesis_validators_root: genesis.data.genesis_validators_root.0,
        genesis_fork_version: genesis.data.genesis_fork_version,
        seconds_per_slot,
        slots_per_epoch,
        fork: fork.data,
        fork_schedule: schedule.data,
        electra_fork_epoch: electra_epoch(&spec),
        capella_fork_version: spec
            .get("CAPELLA_FORK_VERSION")
            .and_then(Value::as_str)
            .and_then(cohort_ingress::keys::decode_hex)
            .and_then(|bytes| bytes.try_into().ok()),
        sync_committee_size,
        epochs_per_sync_committee_period: spec_u64(&spec, "EPOCHS_PER_SYNC_COMMITTEE_PERIOD")
            .unwrap_or(256),
    })
}

/// Learns the chain from the first node that describes it, then checks every other reachable
/// node is on the same chain. A node on another chain fails the start: signing with the wrong
/// genesis is never right, and a misconfigured URL is better found now than mid-duty.
pub async fn discover<E: Clock + Send + Sync + 'static>(nodes: &Nodes<E>) -> Result<Chain, String> {
    let mut chain: Option<(String, Chain)> = None;
    let mut unreachable = Vec::new();
    for node in nodes.all() {
        match chain_of(node).await {
            Ok(found) => match &chain {
                None => {
                    info!(
                        node = %node.url(),
                        genesis_time = found.genesis_time,
                        seconds_per_slot = found.seconds_per_slot,
                        slots_per_epoch = found.slots_per_epoch,
                        fork = %api::hex(&found.fork.current_version),
                        "learned the chain from the beacon node"
                    );
                    nodes.accept(node.url());
                    chain = Some((node.url().to_string(), found));
                }
                Some((first, known)) => {
                    if known.genesis_validators_root != found.genesis_validators_root
                        || known.genesis_fork_version != found.genesis_fork_version
                    {
                        nodes.refuse(node.url());
                        return Err(format!(
                            "beacon node {} is on another chain than {first}: genesis fork \
                             version {} and genesis validators root {} instead of {} and {}",
                            node.url(),
                            api::hex(&found.genesis_fork_version),
                            api::hex(&found.genesis_validators_root),
                            api::hex(&known.genesis_fork_version),
                            api::hex(&known.genesis_validators_root),
                        ));
                    }
                    if known.seconds_per_slot != found.seconds_per_slot
                        || known.slots_per_epoch != found.slots_per_epoch
                    {
                        return Err(format!(
                            "beacon node {} has another slot timing than {first}",
                            node.url()
                        ));
                    }
                    nodes.accept(node.url());
                }
            },
            Err(err) => {
                warn!(node = %node.url(), %err, "beacon node did not describe its chain at start; it is checked when it answers");
                unreachable.push(format!("{}: {err}", node.url()));
            }
        }
    }
    let (_, chain) = chain.ok_or_else(|| {
        format!(
            "no beacon node described its chain: {}",
            unreachable.join("; ")
        )
    })?;
    nodes.set_identity(ChainIdentity {
        genesis_validators_root: chain.genesis_validators_root,
        genesis_fork_version: chain.genesis_fork_version,
    });
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_values_parse_leniently() {
        let spec: Map<String, Value> = serde_json::from_str(
            r#"{"SECONDS_PER_SLOT":"4","SLOTS_PER_EPOCH":"8","EIP4844_FORK_EPOCH":"18446744073709551615","ELECTRA_FORK_EPOCH":"18446744073709551615","SYNC_COMMITTEE_SIZE":"32","X":["a"]}"#,
        )
        .unwrap();
        assert_eq!(spec_u64(&spec, "SECONDS_PER_SLOT"), Ok(4));
        assert_eq!(electra_epoch(&spec), None);
        assert!(spec_u64(&spec, "X").is_err());
        assert!(spec_u64(&spec, "DENEB_FORK_EPOCH").is_err());
        let spec: Map<String, Value> =
            serde_json::from_str(r#"{"ELECTRA_FORK_EPOCH":"364032"}"#).unwrap();
        assert_eq!(electra_epoch(&spec), Some(364032));
    }
}
