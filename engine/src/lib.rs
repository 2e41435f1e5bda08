//! The execution engine the cluster chain drives, in Engine API terms.
//!
//! The executor speaks to an engine only through [`ExecutionEngine`], whose methods are the
//! Engine API calls it needs (`engine_newPayloadV3`, `engine_forkchoiceUpdatedV3`,
//! `engine_getPayloadV3`) plus the one `eth_getBlockByNumber` read it backfills from. Two
//! engines implement it:
//! - [`embedded::EmbeddedEngine`], the default: an Ethereum execution engine in process
//!   ([`cohort_evm`]), deterministic under the simulation runtime, persisted through
//!   commonware storage;
//! - [`remote::RemoteEngine`]: an external execution client over HTTP with a JWT secret.
//!
//! Both execute real Ethereum blocks with real RLP header hashes, so given the same genesis
//! file they agree on every block.

pub mod embedded;
mod error;
pub mod remote;

pub use alloy_primitives::{Address, B256, Bytes as AlloyBytes, TxKind, U256};
pub use alloy_rpc_types_engine::{
    ExecutionPayloadV1, ExecutionPayloadV2, ExecutionPayloadV3, ForkchoiceState, ForkchoiceUpdated,
    PayloadAttributes, PayloadId, PayloadStatus, PayloadStatusEnum,
};

pub use error::{EngineError, PayloadDecodeError, TransactionRefused};

use std::future::Future;

/// A block on the execution chain, as far as the cluster chain needs to name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutionTip {
    pub hash: B256,
    pub number: u64,
    pub timestamp: u64,
}

impl ExecutionTip {
    pub fn of(payload: &ExecutionPayloadV3) -> Self {
        let inner = &payload.payload_inner.payload_inner;
        Self {
            hash: inner.block_hash,
            number: inner.block_number,
            timestamp: inner.timestamp,
        }
    }
}

/// Which block `eth_getBlockByNumber` should return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockTag {
    Latest,
    Finalized,
    Number(u64),
}

/// The Engine API calls the executor makes. Implementations must be cheap to clone (the
/// executor and the committee's block checks share one engine).
pub trait ExecutionEngine: Clone + Send + Sync + 'static {
    /// `engine_newPayloadV3`: validate and execute `payload` (no blobs, so no versioned
    /// hashes) on top of its parent. VALID, INVALID, SYNCING (parent unknown) or ACCEPTED.
    fn new_payload(
        &self,
        payload: ExecutionPayloadV3,
        parent_beacon_block_root: B256,
    ) -> impl Future<Output = Result<PayloadStatus, EngineError>> + Send;

    /// `engine_forkchoiceUpdatedV3`: move head, safe and finalized; with `attributes`, start
    /// building a payload on the new head and return its id.
    fn forkchoice_updated(
        &self,
        state: ForkchoiceState,
        attributes: Option<PayloadAttributes>,
    ) -> impl Future<Output = Result<ForkchoiceUpdated, EngineError>> + Send;

    /// `engine_getPayloadV3`: the payload built for `id`.
    fn get_payload(
        &self,
        id: PayloadId,
    ) -> impl Future<Output = Result<ExecutionPayloadV3, EngineError>> + Send;

    /// `eth_getBlockByNumber`: the canonical block at `tag`, if the engine has one.
    fn block_by_number(
        &self,
        tag: BlockTag,
    ) -> impl Future<Output = Result<Option<ExecutionTip>, EngineError>> + Send;

    /// A signed transaction (EIP-2718 bytes) for the engine's pool: its hash, or why it was
    /// refused. An engine without a pool of its own here refuses every one.
    fn submit_transaction(
        &self,
        raw: AlloyBytes,
    ) -> impl Future<Output = Result<B256, TransactionRefused>> + Send {
        let _ = raw;
        std::future::ready(Err(TransactionRefused::Refused(
            "this engine takes transactions on its own JSON-RPC port".to_string(),
        )))
    }
}

/// Encodes a payload as SSZ, the form a cluster block carries it in.
pub fn encode_payload(payload: &ExecutionPayloadV3) -> Vec<u8> {
    ssz::Encode::as_ssz_bytes(payload)
}

/// Decodes a payload a peer sent, refusing anything over `max_bytes` before parsing it.
pub fn decode_payload(
    bytes: &[u8],
    max_bytes: usize,
) -> Result<ExecutionPayloadV3, PayloadDecodeError> {
    if bytes.len() > max_bytes {
        return Err(PayloadDecodeError::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    <ExecutionPayloadV3 as ssz::Decode>::from_ssz_bytes(bytes).map_err(PayloadDecodeError::Ssz)
}
