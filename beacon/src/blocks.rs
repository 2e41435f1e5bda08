//! Blocks as the beacon node built them, kept as the node's own JSON: what the cluster agrees
//! on is the whole block, and what is published is byte for byte what the node built, with
//! only the signature added.

use crate::{api, chain::Chain};
use bytes::Bytes;
use cohort_eth_types::{Fork, block_header};
use cohort_ingress::{BlockHeader, BlockProposal, MAX_BLOCK_CONTENTS_BYTES, Root};
use serde_json::Value;

/// The fork's name at `epoch`, as the API's `version` and `Eth-Consensus-Version` write it.
pub fn fork_name(chain: &Chain, epoch: u64) -> &'static str {
    // The fork schedule lists every fork with the epoch it starts; the names follow the order
    // forks happened in. A schedule with more forks than names known here ends at the newest.
    const NAMES: [&str; 7] = [
        "phase0",
        "altair",
        "bellatrix",
        "capella",
        "deneb",
        "electra",
        "fulu",
    ];
    let mut schedule: Vec<&api::Fork> = chain.fork_schedule.iter().collect();
    schedule.sort_by_key(|fork| fork.epoch);
    // Forks scheduled at the same epoch (a dev chain starting at capella) all count.
    let started = schedule.iter().filter(|fork| fork.epoch <= epoch).count();
    NAMES[started.saturating_sub(1).min(NAMES.len() - 1)]
}

fn field<'a>(block: &'a Value, name: &str) -> Result<&'a Value, String> {
    block
        .get(name)
        .ok_or_else(|| format!("the block has no `{name}`"))
}

/// Whether the fork's block production answers with block contents (block, proofs, blobs).
fn has_contents(fork: Fork) -> bool {
    fork >= Fork::Deneb
}

fn fork_of(version: &str) -> Result<Fork, String> {
    version
        .parse()
        .map_err(|_| format!("unknown fork `{version}`"))
}

/// The header of a block in the node's JSON: its own fields and its body's SSZ root in the
/// fork's shape, so what the cluster signs is exactly what the node built.
fn header_of(chain: &Chain, fork: Fork, data: &Value) -> Result<BlockHeader, String> {
    let block = if has_contents(fork) {
        field(data, "block")?
    } else {
        data
    };
    let header = block_header(fork, chain.preset, block).map_err(|err| err.to_string())?;
    Ok(BlockHeader {
        slot: header.slot,
        proposer_index: header.proposer_index,
        parent_root: Root::from(header.parent_root.0),
        state_root: Root::from(header.state_root.0),
        body_root: Root::from(header.body_root.0),
    })
}

/// The proposal the cluster agrees on, from the node's production answer.
pub fn proposal(chain: &Chain, produced: api::ProducedBlock) -> Result<BlockProposal, String> {
    let version = produced.version.to_ascii_lowercase();
    let fork = fork_of(&version)?;
    let header = header_of(chain, fork, &produced.data)?;
    let contents = serde_json::to_vec(&produced.data).map_err(|err| err.to_string())?;
    if contents.len() > MAX_BLOCK_CONTENTS_BYTES {
        return Err(format!(
            "the block is {} bytes, over the {MAX_BLOCK_CONTENTS_BYTES} bytes a cluster \
             message carries; this slot's block cannot be agreed on",
            contents.len()
        ));
    }
    Ok(BlockProposal {
        header,
        fork: version,
        contents: Bytes::from(contents),
    })
}

/// Whether `proposal`'s header is exactly the one its contents give.
pub fn check(chain: &Chain, proposal: &BlockProposal) -> Result<(), String> {
    let fork = fork_of(&proposal.fork)?;
    let data: Value = serde_json::from_slice(&proposal.contents)
        .map_err(|err| format!("the block's contents are not JSON: {err}"))?;
    let header = header_of(chain, fork, &data)?;
    if header != proposal.header {
        return Err(format!(
            "the header (slot {}, proposer {}, body root {}) is not the contents' (slot {}, \
             proposer {}, body root {})",
            proposal.header.slot,
            proposal.header.proposer_index,
            proposal.header.body_root,
            header.slot,
            header.proposer_index,
            header.body_root
        ));
    }
    Ok(())
}

/// The publication body: the block with its signature, in the fork's shape.
pub fn signed_json(proposal: &BlockProposal, signature: &[u8; 96]) -> Result<Vec<u8>, String> {
    let fork = fork_of(&proposal.fork)?;
    let data: Value = serde_json::from_slice(&proposal.contents)
        .map_err(|err| format!("the block's contents are not JSON: {err}"))?;
    let signature = Value::String(api::hex(signature));
    let body = if has_contents(fork) {
        serde_json::json!({
            "signed_block": { "message": field(&data, "block")?, "signature": signature },
            "kzg_proofs": field(&data, "kzg_proofs")?,
            "blobs": field(&data, "blobs")?,
        })
    } else {
        serde_json::json!({ "message": data, "signature": signature })
    };
    serde_json::to_vec(&body).map_err(|err| err.to_string())
}
