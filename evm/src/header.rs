//! The rules a block's header follows given its parent's (number, time, gas limit, base fee,
//! blob gas), and the Engine API payload as a block whose hash is checked: what execution
//! checks before running a transaction, and what building fills in.

use crate::{executor::Invalid, spec::ChainSpec};
use alloy_consensus::{Block, Header, TxEnvelope};
use alloy_eips::{
    eip1559::BaseFeeParams,
    eip4844::{DATA_GAS_PER_BLOB, calc_excess_blob_gas},
    eip7840::BlobParams,
};
use alloy_hardforks::EthereumHardforks;
use alloy_primitives::B256;
use alloy_rpc_types_engine::ExecutionPayloadV3;

/// The smallest gas limit a header may have.
const MIN_GAS_LIMIT: u64 = 5000;
/// A block's gas limit moves by less than parent/1024 per block.
const GAS_LIMIT_BOUND_DIVISOR: u64 = 1024;
/// Longest extra data a header may carry.
const MAX_EXTRA_DATA: usize = 32;

/// The header rules a child of `parent` (hashed `parent_hash`) must follow that need only the
/// parent's header.
pub(crate) fn check_child(
    spec: &ChainSpec,
    parent: &Header,
    parent_hash: B256,
    header: &Header,
) -> Result<(), Invalid> {
    if header.parent_hash != parent_hash {
        return Err(Invalid::ParentHash {
            got: header.parent_hash,
            parent: parent_hash,
        });
    }
    if header.number != parent.number + 1 {
        return Err(Invalid::Number {
            got: header.number,
            expected: parent.number + 1,
        });
    }
    if header.timestamp <= parent.timestamp {
        return Err(Invalid::Timestamp {
            got: header.timestamp,
            parent: parent.timestamp,
        });
    }
    if !spec.is_cancun_active_at_timestamp(header.timestamp) {
        return Err(Invalid::NotCancun(header.timestamp));
    }
    if header.extra_data.len() > MAX_EXTRA_DATA {
        return Err(Invalid::ExtraData(header.extra_data.len()));
    }
    if header.gas_limit < MIN_GAS_LIMIT
        || header.gas_limit.abs_diff(parent.gas_limit) >= parent.gas_limit / GAS_LIMIT_BOUND_DIVISOR
    {
        return Err(Invalid::GasLimit {
            got: header.gas_limit,
            parent: parent.gas_limit,
        });
    }
    if header.gas_used > header.gas_limit {
        return Err(Invalid::GasUsedOverLimit {
            used: header.gas_used,
            limit: header.gas_limit,
        });
    }
    let expected = next_base_fee(parent);
    let got = header.base_fee_per_gas.unwrap_or_default();
    if got != expected {
        return Err(Invalid::BaseFee { got, expected });
    }
    let expected = next_excess_blob_gas(parent);
    let got = header.excess_blob_gas.unwrap_or_default();
    if got != expected {
        return Err(Invalid::ExcessBlobGas { got, expected });
    }
    let used = header.blob_gas_used.unwrap_or_default();
    if used > BlobParams::cancun().max_blob_gas_per_block()
        || !used.is_multiple_of(DATA_GAS_PER_BLOB)
    {
        return Err(Invalid::BlobGasUsedRange(used));
    }
    Ok(())
}

/// The block a payload describes and the hash of its header, checked against the payload's
/// block hash: what an engine verifies before trusting anything the payload claims (a payload
/// whose hash it has seen is the same block only if its contents hash to that hash).
pub fn sealed_block(
    payload: &ExecutionPayloadV3,
    parent_beacon_block_root: B256,
) -> Result<(Block<TxEnvelope>, B256), Invalid> {
    // Checked before decoding: the conversion refuses long extra data with a generic error.
    let extra_data = &payload.payload_inner.payload_inner.extra_data;
    if extra_data.len() > MAX_EXTRA_DATA {
        return Err(Invalid::ExtraData(extra_data.len()));
    }
    let mut block = payload
        .clone()
        .try_into_block::<TxEnvelope>()
        .map_err(|e| Invalid::Malformed(e.to_string()))?;
    block.header.parent_beacon_block_root = Some(parent_beacon_block_root);
    let computed = block.header.hash_slow();
    let claimed = payload.payload_inner.payload_inner.block_hash;
    if computed != claimed {
        return Err(Invalid::BlockHash {
            payload: claimed,
            computed,
        });
    }
    Ok((block, computed))
}

/// Sets a payload's block hash to the hash of its contents: tests and byzantine simulations
/// use it to make a changed payload that only execution can refuse.
pub fn reseal(payload: &mut ExecutionPayloadV3, parent_beacon_block_root: B256) {
    payload.payload_inner.payload_inner.block_hash = B256::ZERO;
    if let Err(Invalid::BlockHash { computed, .. }) =
        sealed_block(payload, parent_beacon_block_root)
    {
        payload.payload_inner.payload_inner.block_hash = computed;
    }
}

/// The EIP-1559 base fee of a child of `parent`.
pub fn next_base_fee(parent: &Header) -> u64 {
    // London is active from genesis, so every parent has a base fee.
    parent
        .next_block_base_fee(BaseFeeParams::ethereum())
        .unwrap_or_default()
}

/// EIP-4844 excess blob gas of a child of `parent` (Cancun's target of 3 blobs).
pub(crate) fn next_excess_blob_gas(parent: &Header) -> u64 {
    calc_excess_blob_gas(
        parent.excess_blob_gas.unwrap_or_default(),
        parent.blob_gas_used.unwrap_or_default(),
    )
}
