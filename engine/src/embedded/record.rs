//! What the embedded engine persists. A metadata store holds the finalized block's header and
//! the recent canonical hashes; a journal holds each finalized block's state changes, item
//! `n - 1` for block `n`. The journal is written and synced first, the metadata second, so the
//! metadata never names a block whose changes are not on disk; on open the journal is cut back
//! to the metadata's block, dropping what a crash left between the two writes.
//!
//! Every [`super::SNAPSHOT_INTERVAL`] blocks the changes since the last snapshot are merged into
//! it (one record: the state as changes from genesis), the snapshot is synced, and only then is
//! the journal pruned below it; a restart applies the snapshot and the changes after it.

use super::{Block, storage_error};
use crate::{EngineError, ExecutionTip};
use alloy_consensus::Header;
use alloy_primitives::B256;
use cohort_evm::{StateChanges, StateStore as _};
use commonware_runtime::{Clock, Metrics, Storage};
use commonware_storage::{
    journal::contiguous::{Contiguous as _, variable::Journal},
    metadata::Metadata,
};
use commonware_utils::sequence::U64;
use std::collections::BTreeMap;
use tracing::{debug, info};

pub(super) const KEY_FINALIZED_HEADER: u64 = 3;
pub(super) const KEY_CANONICAL: u64 = 2;
/// The genesis hash the data was written for (the canonical record forgets block 0).
pub(super) const KEY_GENESIS: u64 = 4;
/// The checkpoint of the block and transaction hash index (see `history`) as of the finalized
/// header: written in the same metadata sync, so an open rewinds the index to that block.
pub(super) const KEY_HASH_INDEX: u64 = 5;
/// In the snapshot store: the state at a finalized block, as the merged changes since genesis.
pub(super) const KEY_SNAPSHOT: u64 = 0;

/// A snapshot: the block number, its state root, then the merged [`StateChanges`] record.
pub(super) fn encode_snapshot(number: u64, state_root: B256, changes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + changes.len());
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(state_root.as_slice());
    out.extend_from_slice(changes);
    out
}

pub(super) fn decode_snapshot(bytes: &[u8]) -> Option<(u64, B256, &[u8])> {
    if bytes.len() < 40 {
        return None;
    }
    let number = u64::from_be_bytes(bytes[..8].try_into().ok()?);
    Some((number, B256::from_slice(&bytes[8..40]), &bytes[40..]))
}
/// Keys the engine wrote before it executed Ethereum blocks (its own state format).
pub(super) const LEGACY_KEYS: [u64; 2] = [0, 1];

pub(super) fn encode_tip(tip: &ExecutionTip, out: &mut Vec<u8>) {
    out.extend_from_slice(tip.hash.as_slice());
    out.extend_from_slice(&tip.number.to_be_bytes());
    out.extend_from_slice(&tip.timestamp.to_be_bytes());
}

pub(super) fn decode_tip(bytes: &[u8]) -> Option<ExecutionTip> {
    if bytes.len() != 48 {
        return None;
    }
    Some(ExecutionTip {
        hash: B256::from_slice(&bytes[..32]),
        number: u64::from_be_bytes(bytes[32..40].try_into().ok()?),
        timestamp: u64::from_be_bytes(bytes[40..48].try_into().ok()?),
    })
}

pub(super) fn corrupt(what: &str) -> EngineError {
    EngineError::Storage(format!(
        "embedded engine storage is corrupt ({what}); the data directory cannot be used"
    ))
}

/// Rebuilds the finalized block from the genesis state and the journaled changes, and checks it
/// against the stored header and canonical hashes.
pub(super) async fn resume<E: Storage + Clock + Metrics>(
    metadata: &Metadata<E, U64, Vec<u8>>,
    snapshot: &Metadata<E, U64, Vec<u8>>,
    journal: &Journal<E, Vec<u8>>,
    genesis: Block,
    header: Header,
) -> Result<(Block, BTreeMap<u64, ExecutionTip>, u64), EngineError> {
    let number = header.number;
    if journal.bounds().end != number {
        return Err(corrupt(&format!(
            "finalized block {number} but state changes for {} blocks",
            journal.bounds().end
        )));
    }
    let mut canonical = BTreeMap::new();
    for chunk in metadata
        .get(&U64::new(KEY_CANONICAL))
        .ok_or_else(|| corrupt("canonical hashes missing"))?
        .chunks(48)
    {
        let tip = decode_tip(chunk).ok_or_else(|| corrupt("canonical hash"))?;
        canonical.insert(tip.number, tip);
    }
    let hash = header.hash_slow();
    let finalized_tip = ExecutionTip {
        hash,
        number,
        timestamp: header.timestamp,
    };
    if canonical.get(&number) != Some(&finalized_tip) {
        return Err(corrupt("finalized block missing from canonical hashes"));
    }
    if canonical
        .get(&0)
        .is_some_and(|stored| stored.hash != genesis.hash)
    {
        return Err(EngineError::Genesis(
            "the engine's data was written for a chain with another genesis; give it the \
             genesis file it started with"
                .into(),
        ));
    }
    let mut state = genesis.state;
    let snapshot_at = match snapshot.get(&U64::new(KEY_SNAPSHOT)) {
        None => 0,
        Some(bytes) => {
            let (at, root, record) = decode_snapshot(bytes).ok_or_else(|| corrupt("snapshot"))?;
            if at > number {
                return Err(corrupt(&format!(
                    "snapshot at block {at}, above the finalized block {number}"
                )));
            }
            let changes = StateChanges::decode(record)
                .map_err(|e| corrupt(&format!("snapshot at block {at}: {e}")))?;
            state.apply(&changes);
            if state.state_root() != root {
                return Err(corrupt(&format!("snapshot at block {at}: state root")));
            }
            at
        }
    };
    if journal.bounds().start > snapshot_at {
        return Err(corrupt(&format!(
            "state changes from block {} kept, the snapshot is at block {snapshot_at}",
            journal.bounds().start + 1
        )));
    }
    for position in snapshot_at..number {
        let bytes = journal.read(position).await.map_err(storage_error)?;
        let changes = StateChanges::decode(&bytes)
            .map_err(|e| corrupt(&format!("state changes of block {}: {e}", position + 1)))?;
        state.apply(&changes);
    }
    if state.state_root() != header.state_root {
        return Err(corrupt(&format!(
            "replayed state root {} is not the finalized header's {}",
            state.state_root(),
            header.state_root
        )));
    }
    // BLOCKHASH needs the 256 most recent hashes, which the canonical record keeps.
    let first = number.saturating_sub(255);
    let recent_hashes: Vec<B256> = (first..=number)
        .map(|n| canonical.get(&n).map(|tip| tip.hash))
        .collect::<Option<_>>()
        .ok_or_else(|| corrupt("recent canonical hashes missing"))?;
    info!(
        number,
        %hash,
        accounts = state.len(),
        snapshot_at,
        replayed = number - snapshot_at,
        "embedded engine resumed from its finalized block (snapshot plus the changes after it)"
    );
    Ok((
        Block::bare(header, hash, state, recent_hashes),
        canonical,
        snapshot_at,
    ))
}

/// Merges the journaled changes since the last snapshot into it, syncs it at block `number`,
/// and only then prunes the journal below it. Runs inside a finalization's commit, after the
/// finalized header is on disk.
pub(super) async fn take_snapshot<E: Storage + Clock + Metrics>(
    journal: Journal<E, Vec<u8>>,
    mut snapshot: Metadata<E, U64, Vec<u8>>,
    snapshot_at: u64,
    number: u64,
    state_root: B256,
) -> Result<(Journal<E, Vec<u8>>, Metadata<E, U64, Vec<u8>>, u64), String> {
    let mut merged = match snapshot.get(&U64::new(KEY_SNAPSHOT)) {
        None => StateChanges::default(),
        Some(bytes) => {
            let (_, _, record) = decode_snapshot(bytes).ok_or("the snapshot is malformed")?;
            StateChanges::decode(record).map_err(|e| e.to_string())?
        }
    };
    for position in snapshot_at..number {
        let bytes = journal.read(position).await.map_err(|e| e.to_string())?;
        let changes = StateChanges::decode(&bytes).map_err(|e| e.to_string())?;
        merged.merge(&changes);
    }
    snapshot.put(
        U64::new(KEY_SNAPSHOT),
        encode_snapshot(number, state_root, &merged.encode()),
    );
    let snapshot = snapshot.sync().await.map_err(|e| e.to_string())?;
    let (journal, _) = journal.prune(number).await.map_err(|e| e.to_string())?;
    debug!(
        number,
        accounts = merged.accounts.len(),
        "embedded engine took a state snapshot and pruned the changes before it"
    );
    Ok((journal, snapshot, number))
}
