//! Executing Engine API V3 payloads and building them.

use crate::{
    header::{check_child, next_base_fee, next_excess_blob_gas, sealed_block},
    spec::{ChainSpec, GenesisError, genesis},
    state::{MemoryState, Reader, StateChanges, StateStore},
};
use alloy_consensus::{
    Block, BlockBody, EMPTY_OMMER_ROOT_HASH, Header, ReceiptEnvelope, Transaction, TxEnvelope,
    TxReceipt, proofs, transaction::SignerRecoverable,
};
use alloy_eips::{
    eip2718::Decodable2718,
    eip4895::{Withdrawal, Withdrawals},
    eip7840::BlobParams,
};
use alloy_evm::{
    EvmEnv, EvmFactory,
    block::{BlockExecutionError, BlockExecutor},
    eth::{
        EthBlockExecutionCtx, EthBlockExecutor, EthEvmFactory, receipt_builder::AlloyReceiptBuilder,
    },
};
use alloy_hardforks::EthereumHardforks;
use alloy_primitives::{Address, B64, B256, Bloom, Bytes, U256};
use alloy_rpc_types_engine::{ExecutionPayloadV3, PayloadAttributes};
use revm::database::{State, states::bundle_state::BundleRetention};
use std::{borrow::Cow, sync::Arc};

/// How many ancestors' hashes BLOCKHASH can see.
const BLOCK_HASH_HISTORY: usize = 256;

/// A block that executed, with its post-state: the parent of the next block.
#[derive(Clone, Debug)]
pub struct Executed<S = MemoryState> {
    pub header: Header,
    pub hash: B256,
    pub state: S,
    /// Receipts in transaction order (empty for genesis).
    pub receipts: Vec<ReceiptEnvelope>,
    /// The block's transactions and their recovered senders, in order: what a finalized
    /// block's history record keeps for the chain's reads.
    pub transactions: Vec<TxEnvelope>,
    pub senders: Vec<Address>,
    pub withdrawals: Vec<Withdrawal>,
    /// What the block changed (what a persistent store writes).
    pub changes: StateChanges,
    /// Hashes of up to 256 blocks ending with this one, oldest first (BLOCKHASH).
    pub recent_hashes: Arc<Vec<B256>>,
}

impl<S> Executed<S> {
    /// A block known by its header and post-state alone, with no body or receipts to hand
    /// out: genesis, or a finalized block an engine resumes from disk. It is only ever a
    /// parent, so what it changed is not needed either. `hash` is the header's, which every
    /// caller already has at hand.
    pub fn bare(header: Header, hash: B256, state: S, recent_hashes: Vec<B256>) -> Self {
        Self {
            header,
            hash,
            state,
            receipts: Vec::new(),
            transactions: Vec::new(),
            senders: Vec::new(),
            withdrawals: Vec::new(),
            changes: StateChanges::default(),
            recent_hashes: Arc::new(recent_hashes),
        }
    }
}

/// An Engine API V3 `newPayload` call.
#[derive(Clone, Debug)]
pub struct NewPayload {
    pub payload: ExecutionPayloadV3,
    pub versioned_hashes: Vec<B256>,
    pub parent_beacon_block_root: B256,
}

/// A payload built by [`Executor::build`].
#[derive(Clone, Debug)]
pub struct Built<S = MemoryState> {
    pub executed: Executed<S>,
    pub payload: ExecutionPayloadV3,
    /// Transactions left out, by index in the input, with why.
    pub skipped: Vec<(usize, String)>,
    /// Priority fees paid to the fee recipient, in wei.
    pub fees: U256,
}

/// Why a payload is INVALID. The parent state is never changed by an invalid payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("payload does not decode into a block: {0}")]
    Malformed(String),
    #[error("block hash mismatch: payload says {payload}, header hashes to {computed}")]
    BlockHash { payload: B256, computed: B256 },
    #[error("parent hash {got} is not the parent's hash {parent}")]
    ParentHash { got: B256, parent: B256 },
    #[error("block number {got}, expected {expected} (parent + 1)")]
    Number { got: u64, expected: u64 },
    #[error("timestamp {got} is not after the parent's {parent}")]
    Timestamp { got: u64, parent: u64 },
    #[error("payload V3 at timestamp {0}, before Cancun")]
    NotCancun(u64),
    #[error(
        "gas limit {got} is outside the bounds of the parent's {parent} (change < 1/1024, >= 5000)"
    )]
    GasLimit { got: u64, parent: u64 },
    #[error("gas used {used} exceeds the gas limit {limit}")]
    GasUsedOverLimit { used: u64, limit: u64 },
    #[error("base fee {got}, expected {expected} (EIP-1559 from the parent)")]
    BaseFee { got: u64, expected: u64 },
    #[error("extra data is {0} bytes, at most 32")]
    ExtraData(usize),
    #[error("excess blob gas {got}, expected {expected} (EIP-4844 from the parent)")]
    ExcessBlobGas { got: u64, expected: u64 },
    #[error("blob gas used {0} is over the maximum or not a multiple of the blob size")]
    BlobGasUsedRange(u64),
    #[error("blob gas used {header} in the header, transactions use {computed}")]
    BlobGasUsed { header: u64, computed: u64 },
    #[error(
        "versioned hashes do not match the blob transactions' ({got} given, {expected} in transactions)"
    )]
    VersionedHashes { got: usize, expected: usize },
    #[error("transaction {index}: {reason}")]
    Transaction { index: usize, reason: String },
    #[error("block execution failed: {0}")]
    Execution(String),
    #[error("gas used {header} in the header, execution used {computed}")]
    GasUsed { header: u64, computed: u64 },
    #[error("receipts root {header} in the header, receipts give {computed}")]
    ReceiptsRoot { header: B256, computed: B256 },
    #[error("logs bloom in the header differs from the receipts' bloom")]
    LogsBloom,
    #[error("state root {header} in the header, execution gives {computed}")]
    StateRoot { header: B256, computed: B256 },
}

/// Why a payload could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("attributes timestamp {got} is not after the parent's {parent}")]
    Timestamp { got: u64, parent: u64 },
    #[error("attributes timestamp {0} is before Cancun: only V3 payloads are built")]
    NotCancun(u64),
    #[error("attributes lack {0} (required by V3)")]
    Missing(&'static str),
    #[error("block execution failed: {0}")]
    Execution(String),
}

/// The result of running a block's transactions over a parent.
struct Run<S> {
    receipts: Vec<ReceiptEnvelope>,
    gas_used: u64,
    blob_gas_used: u64,
    changes: StateChanges,
    state: S,
    transactions: Vec<TxEnvelope>,
    senders: Vec<Address>,
    skipped: Vec<(usize, String)>,
    fees: U256,
}

#[derive(Clone, Copy)]
/// Transactions to run: all must execute (a payload), or invalid ones are left out (building).
enum Mode {
    Verify,
    Build,
}

/// The chain's Ethereum execution: genesis, payload execution and payload building.
#[derive(Clone, Debug)]
pub struct Executor {
    spec: ChainSpec,
}

impl Executor {
    /// The executor for the chain a geth-style `genesis.json` describes, and its genesis block.
    pub fn genesis(json: &str) -> Result<(Self, Executed<MemoryState>), GenesisError> {
        let (spec, header, state) = genesis(json)?;
        let hash = header.hash_slow();
        Ok((
            Self { spec },
            Executed::bare(header, hash, state, vec![hash]),
        ))
    }

    pub fn chain_id(&self) -> u64 {
        self.spec.chain_id
    }

    pub fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    /// Executes `new` on top of `parent`: VALID gives the block with its post-state.
    pub fn execute<S: StateStore>(
        &self,
        parent: &Executed<S>,
        new: &NewPayload,
    ) -> Result<Executed<S>, Invalid> {
        let (block, computed) = sealed_block(&new.payload, new.parent_beacon_block_root)?;
        let header = &block.header;
        check_child(&self.spec, &parent.header, parent.hash, header)?;

        let expected: Vec<B256> = block
            .body
            .transactions
            .iter()
            .filter_map(|tx| tx.blob_versioned_hashes())
            .flatten()
            .copied()
            .collect();
        if expected != new.versioned_hashes {
            return Err(Invalid::VersionedHashes {
                got: new.versioned_hashes.len(),
                expected: expected.len(),
            });
        }

        let withdrawals = block
            .body
            .withdrawals
            .as_ref()
            .map(|w| w.as_slice())
            .unwrap_or_default();
        let run = self
            .run(
                parent,
                header,
                withdrawals,
                &block.body.transactions,
                Mode::Verify,
            )
            .map_err(|e| match e {
                RunError::Transaction { index, reason } => Invalid::Transaction { index, reason },
                RunError::Block(reason) => Invalid::Execution(reason),
            })?;

        if run.blob_gas_used != header.blob_gas_used.unwrap_or_default() {
            return Err(Invalid::BlobGasUsed {
                header: header.blob_gas_used.unwrap_or_default(),
                computed: run.blob_gas_used,
            });
        }
        if run.gas_used != header.gas_used {
            return Err(Invalid::GasUsed {
                header: header.gas_used,
                computed: run.gas_used,
            });
        }
        let receipts_root = proofs::calculate_receipt_root(&run.receipts);
        if receipts_root != header.receipts_root {
            return Err(Invalid::ReceiptsRoot {
                header: header.receipts_root,
                computed: receipts_root,
            });
        }
        if bloom(&run.receipts) != header.logs_bloom {
            return Err(Invalid::LogsBloom);
        }
        let state_root = run.state.state_root();
        if state_root != header.state_root {
            return Err(Invalid::StateRoot {
                header: header.state_root,
                computed: state_root,
            });
        }
        Ok(Executed {
            recent_hashes: next_hashes(parent, computed),
            header: block.header,
            hash: computed,
            state: run.state,
            receipts: run.receipts,
            transactions: run.transactions,
            senders: run.senders,
            withdrawals: withdrawals.to_vec(),
            changes: run.changes,
        })
    }

    /// Builds the payload a leader proposes on `parent`: the transactions (EIP-2718 encoded) in
    /// order, leaving out those that do not decode, recover, fit or execute. The gas limit stays
    /// the parent's.
    pub fn build<S: StateStore>(
        &self,
        parent: &Executed<S>,
        attributes: &PayloadAttributes,
        transactions: &[Bytes],
    ) -> Result<Built<S>, BuildError> {
        if attributes.timestamp <= parent.header.timestamp {
            return Err(BuildError::Timestamp {
                got: attributes.timestamp,
                parent: parent.header.timestamp,
            });
        }
        if !self
            .spec
            .is_cancun_active_at_timestamp(attributes.timestamp)
        {
            return Err(BuildError::NotCancun(attributes.timestamp));
        }
        let withdrawals = attributes
            .withdrawals
            .clone()
            .ok_or(BuildError::Missing("withdrawals"))?;
        let beacon_root = attributes
            .parent_beacon_block_root
            .ok_or(BuildError::Missing("parentBeaconBlockRoot"))?;

        let mut skipped = Vec::new();
        let mut decoded = Vec::with_capacity(transactions.len());
        let mut indexes = Vec::with_capacity(transactions.len());
        for (index, raw) in transactions.iter().enumerate() {
            match TxEnvelope::decode_2718(&mut raw.as_ref()) {
                // Blob transactions need their sidecars in the payload bundle, which this
                // builder does not carry.
                Ok(tx) if tx.is_eip4844() => {
                    skipped.push((index, "blob transactions are not built".into()))
                }
                Ok(tx) => {
                    decoded.push(tx);
                    indexes.push(index);
                }
                Err(e) => skipped.push((index, format!("does not decode: {e}"))),
            }
        }

        let parent_header = &parent.header;
        let mut header = Header {
            parent_hash: parent.hash,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: attributes.suggested_fee_recipient,
            number: parent_header.number + 1,
            gas_limit: parent_header.gas_limit,
            timestamp: attributes.timestamp,
            mix_hash: attributes.prev_randao,
            nonce: B64::ZERO,
            difficulty: U256::ZERO,
            base_fee_per_gas: Some(next_base_fee(parent_header)),
            withdrawals_root: Some(proofs::calculate_withdrawals_root(&withdrawals)),
            excess_blob_gas: Some(next_excess_blob_gas(parent_header)),
            blob_gas_used: Some(0),
            parent_beacon_block_root: Some(beacon_root),
            ..Default::default()
        };

        let mut run = self
            .run(parent, &header, &withdrawals, &decoded, Mode::Build)
            .map_err(|e| match e {
                RunError::Transaction { index, reason } => {
                    BuildError::Execution(format!("transaction {index}: {reason}"))
                }
                RunError::Block(reason) => BuildError::Execution(reason),
            })?;
        for (position, reason) in std::mem::take(&mut run.skipped) {
            skipped.push((indexes[position], reason));
        }
        skipped.sort_unstable_by_key(|(index, _)| *index);

        header.gas_used = run.gas_used;
        header.blob_gas_used = Some(run.blob_gas_used);
        header.receipts_root = proofs::calculate_receipt_root(&run.receipts);
        header.logs_bloom = bloom(&run.receipts);
        header.transactions_root = proofs::calculate_transaction_root(&run.transactions);
        header.state_root = run.state.state_root();
        let block = Block {
            header,
            body: BlockBody {
                transactions: run.transactions.clone(),
                ommers: Vec::new(),
                withdrawals: Some(Withdrawals::new(withdrawals.clone())),
            },
        };
        let hash = block.header.hash_slow();
        let payload = ExecutionPayloadV3::from_block_unchecked(hash, &block);
        Ok(Built {
            executed: Executed {
                recent_hashes: next_hashes(parent, hash),
                header: block.header,
                hash,
                state: run.state,
                receipts: run.receipts,
                transactions: run.transactions,
                senders: run.senders,
                withdrawals,
                changes: run.changes,
            },
            payload,
            skipped,
            fees: run.fees,
        })
    }

    /// Runs the block's system call, transactions and withdrawals against a read view of the
    /// parent, then applies the changes to a copy of the parent's state.
    fn run<S: StateStore>(
        &self,
        parent: &Executed<S>,
        header: &Header,
        withdrawals: &[Withdrawal],
        transactions: &[TxEnvelope],
        mode: Mode,
    ) -> Result<Run<S>, RunError> {
        let reader = Reader {
            state: &parent.state,
            hashes: &parent.recent_hashes,
            parent_number: parent.header.number,
        };
        let mut db = State::builder()
            .with_database_ref(reader)
            .with_bundle_update()
            .build();
        let env = EvmEnv::for_eth_block(
            header,
            &self.spec,
            self.spec.chain_id,
            Some(BlobParams::cancun()),
        );
        let evm = EthEvmFactory::default().create_evm(&mut db, env);
        let ctx = EthBlockExecutionCtx {
            parent_hash: header.parent_hash,
            parent_beacon_block_root: header.parent_beacon_block_root,
            ommers: &[],
            withdrawals: Some(Cow::Borrowed(withdrawals)),
            extra_data: header.extra_data.clone(),
            tx_count_hint: Some(transactions.len()),
            slot_number: None,
        };
        let mut executor =
            EthBlockExecutor::new(evm, ctx, &self.spec, AlloyReceiptBuilder::default());
        executor
            .apply_pre_execution_changes()
            .map_err(|e| RunError::Block(e.to_string()))?;

        let base_fee = header.base_fee_per_gas.unwrap_or_default();
        let mut included = Vec::with_capacity(transactions.len());
        let mut senders = Vec::with_capacity(transactions.len());
        let mut skipped = Vec::new();
        let mut fees = U256::ZERO;
        for (index, tx) in transactions.iter().enumerate() {
            let recovered = match tx.clone().try_into_recovered() {
                Ok(recovered) => recovered,
                Err(_) => {
                    let reason = "the signature does not recover a sender".to_string();
                    match mode {
                        Mode::Verify => return Err(RunError::Transaction { index, reason }),
                        Mode::Build => {
                            skipped.push((index, reason));
                            continue;
                        }
                    }
                }
            };
            let sender = recovered.signer();
            match executor.execute_transaction(recovered) {
                Ok(gas) => {
                    senders.push(sender);
                    let tip = tx.effective_tip_per_gas(base_fee).unwrap_or_default();
                    fees += U256::from(tip) * U256::from(gas.tx_gas_used());
                    included.push(tx.clone());
                }
                Err(e) => {
                    let reason = match &e {
                        BlockExecutionError::Validation(v) => v.to_string(),
                        other => other.to_string(),
                    };
                    match (mode, e.as_validation().is_some()) {
                        (Mode::Build, true) => skipped.push((index, reason)),
                        (Mode::Build, false) => return Err(RunError::Block(reason)),
                        (Mode::Verify, _) => return Err(RunError::Transaction { index, reason }),
                    }
                }
            }
        }
        let (_evm, result) = executor
            .finish()
            .map_err(|e| RunError::Block(e.to_string()))?;
        db.merge_transitions(BundleRetention::PlainState);
        let changes = StateChanges::from_bundle(db.take_bundle());
        let mut state = parent.state.clone();
        state.apply(&changes);
        Ok(Run {
            receipts: result.receipts,
            gas_used: result.gas_used,
            blob_gas_used: result.blob_gas_used,
            changes,
            state,
            transactions: included,
            senders,
            skipped,
            fees,
        })
    }
}

enum RunError {
    Transaction { index: usize, reason: String },
    Block(String),
}

fn bloom(receipts: &[ReceiptEnvelope]) -> Bloom {
    receipts.iter().fold(Bloom::ZERO, |mut acc, receipt| {
        acc.accrue_bloom(&receipt.bloom());
        acc
    })
}

fn next_hashes<S>(parent: &Executed<S>, hash: B256) -> Arc<Vec<B256>> {
    let mut hashes = parent.recent_hashes.as_ref().clone();
    hashes.push(hash);
    if hashes.len() > BLOCK_HASH_HISTORY {
        hashes.drain(..hashes.len() - BLOCK_HASH_HISTORY);
    }
    Arc::new(hashes)
}
