//! Blocks the beacon node produced, kept as the node's own JSON so that what is published is
//! byte for byte what the node built, with only the signature added.

use crate::{api, chain::Chain};
use cohort_ingress::{BlockHeader, Root};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

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

/// A block as produced: its header (what the proposer signs) and the node's JSON.
#[derive(Clone, Debug)]
pub struct Produced {
    pub header: BlockHeader,
    pub version: String,
    /// The `data` of the production answer: the block, or for Deneb on the block contents
    /// (`block`, `kzg_proofs`, `blobs`).
    pub data: Value,
}

fn field<'a>(block: &'a Value, name: &str) -> Result<&'a Value, String> {
    block
        .get(name)
        .ok_or_else(|| format!("the block has no `{name}`"))
}

fn quoted(block: &Value, name: &str) -> Result<u64, String> {
    field(block, name)?
        .as_str()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| format!("`{name}` is not a decimal string"))
}

fn root(block: &Value, name: &str) -> Result<Root, String> {
    let text = field(block, name)?
        .as_str()
        .ok_or_else(|| format!("`{name}` is not a string"))?;
    api::fixed_hex::<32>(text)
        .map(Root::from)
        .map_err(|err| format!("`{name}`: {err}"))
}

/// Whether the fork's block production answers with block contents (block, proofs, blobs).
fn has_contents(version: &str) -> bool {
    matches!(version, "deneb" | "electra" | "fulu")
}

impl Produced {
    pub fn parse(chain: &Chain, produced: api::ProducedBlock) -> Result<Self, String> {
        let version = produced.version.to_ascii_lowercase();
        let block = if has_contents(&version) {
            field(&produced.data, "block")?
        } else {
            &produced.data
        };
        let body_root = crate::ssz::body_root(chain, &version, field(block, "body")?)?;
        let header = BlockHeader {
            slot: quoted(block, "slot")?,
            proposer_index: quoted(block, "proposer_index")?,
            parent_root: root(block, "parent_root")?,
            state_root: root(block, "state_root")?,
            body_root: Root::from(body_root),
        };
        Ok(Self {
            header,
            version,
            data: produced.data,
        })
    }

    /// The publication body: the block with its signature, in the fork's shape.
    pub fn signed_json(&self, signature: &[u8; 96]) -> Result<Vec<u8>, String> {
        let signature = Value::String(api::hex(signature));
        let body = if has_contents(&self.version) {
            let block = field(&self.data, "block")?.clone();
            serde_json::json!({
                "signed_block": { "message": block, "signature": signature },
                "kzg_proofs": field(&self.data, "kzg_proofs")?.clone(),
                "blobs": field(&self.data, "blobs")?.clone(),
            })
        } else {
            serde_json::json!({ "message": self.data.clone(), "signature": signature })
        };
        serde_json::to_vec(&body).map_err(|err| err.to_string())
    }
}

/// Blocks this operator's nodes produced, until signed and published. Kept a few slots only: a
/// block not signed within its slot is worthless.
#[derive(Clone, Default)]
pub struct ProducedBlocks {
    blocks: Arc<Mutex<BTreeMap<(u64, Root), Produced>>>,
}

/// Slots a produced block is kept for.
const KEEP_SLOTS: u64 = 4;

impl ProducedBlocks {
    pub fn keep(&self, block: Produced) {
        let Ok(mut blocks) = self.blocks.lock() else {
            return;
        };
        let slot = block.header.slot;
        blocks.insert((slot, block.header.body_root), block);
        let oldest = slot.saturating_sub(KEEP_SLOTS);
        *blocks = blocks.split_off(&(oldest, Root::from([0u8; 32])));
    }

    /// The produced block `header` describes, if this operator's nodes built it.
    pub fn take(&self, header: &BlockHeader) -> Option<Produced> {
        let blocks = self.blocks.lock().ok()?;
        let produced = blocks.get(&(header.slot, header.body_root))?;
        (produced.header == *header).then(|| produced.clone())
    }
}
