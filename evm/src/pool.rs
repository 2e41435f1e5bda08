//! Transactions waiting for a block: checked when they arrive (they decode, carry a signature
//! that recovers a sender, are for this chain, could pay for themselves and are not behind the
//! sender's nonce), bounded in count and size, and handed to the builder in an order a block
//! can execute them.
//!
//! The pool is validated against the finalized state only: a transaction a later block makes
//! invalid is simply left out by the builder, and pruned once the block that passed its nonce
//! is finalized.

use crate::state::StateReader;
use alloy_consensus::{Transaction, TxEnvelope, transaction::SignerRecoverable};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, Bytes, U256};
use std::collections::{BTreeMap, HashMap};

/// Largest encoded transaction accepted (geth's limit for a non-blob transaction).
pub const MAX_TRANSACTION_BYTES: usize = 128 * 1024;
/// A sender may queue this many nonces ahead of its account nonce, so one account cannot fill
/// the pool with transactions that will never execute.
pub const MAX_NONCES_AHEAD: u64 = 64;
/// The least gas a transaction can use.
const INTRINSIC_GAS: u64 = 21_000;
/// A transaction replaces one with the same sender and nonce only if it raises both fee caps by
/// this many percent.
const REPLACEMENT_BUMP_PERCENT: u128 = 10;

/// Why a transaction was not taken into the pool.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("transaction of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("transaction does not decode: {0}")]
    Malformed(String),
    #[error("blob transactions are not accepted (no sidecar path)")]
    Blob,
    #[error("the signature does not recover a sender")]
    Signature,
    #[error("chain id {got:?}, this chain is {expected}")]
    ChainId { got: Option<u64>, expected: u64 },
    #[error("gas limit {got} is below 21000 or above the block gas limit {block}")]
    GasLimit { got: u64, block: u64 },
    #[error("nonce {nonce} is below the account's nonce {account}")]
    NonceTooLow { nonce: u64, account: u64 },
    #[error("nonce {nonce} is more than {MAX_NONCES_AHEAD} ahead of the account's nonce {account}")]
    NonceTooHigh { nonce: u64, account: u64 },
    #[error("balance {balance} cannot pay value plus gas limit times fee cap ({cost})")]
    InsufficientFunds { balance: U256, cost: U256 },
    #[error("a transaction with this nonce is pooled; a replacement must raise its fees by 10%")]
    Underpriced,
    #[error("already pooled")]
    Known,
    #[error("the pool is full ({0} transactions)")]
    Full(usize),
}

/// A transaction in the pool, with what checking it found.
#[derive(Clone, Debug)]
pub struct Pooled {
    pub hash: B256,
    pub sender: Address,
    pub nonce: u64,
    pub raw: Bytes,
    max_fee: u128,
    tip: u128,
}

/// The pool. Deterministic: senders and nonces are kept in sorted maps.
#[derive(Debug)]
pub struct Pool {
    chain_id: u64,
    max_transactions: usize,
    by_sender: BTreeMap<Address, BTreeMap<u64, Pooled>>,
    by_hash: HashMap<B256, (Address, u64)>,
}

impl Pool {
    pub fn new(chain_id: u64, max_transactions: usize) -> Self {
        Self {
            chain_id,
            max_transactions,
            by_sender: BTreeMap::new(),
            by_hash: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn contains(&self, hash: &B256) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Checks `raw` (EIP-2718 bytes) against `state` and pools it; its hash on success.
    pub fn insert<S: StateReader>(
        &mut self,
        raw: Bytes,
        state: &S,
        block_gas_limit: u64,
    ) -> Result<Pooled, PoolError> {
        let pooled = self.check(raw, state, block_gas_limit)?;
        let queue = self.by_sender.entry(pooled.sender).or_default();
        if let Some(held) = queue.get(&pooled.nonce) {
            let bumped = |old: u128| old + old * REPLACEMENT_BUMP_PERCENT / 100;
            if pooled.max_fee < bumped(held.max_fee) || pooled.tip < bumped(held.tip) {
                return Err(PoolError::Underpriced);
            }
            self.by_hash.remove(&held.hash);
        } else if self.by_hash.len() >= self.max_transactions {
            if queue.is_empty() {
                self.by_sender.remove(&pooled.sender);
            }
            return Err(PoolError::Full(self.max_transactions));
        }
        self.by_hash
            .insert(pooled.hash, (pooled.sender, pooled.nonce));
        self.by_sender
            .entry(pooled.sender)
            .or_default()
            .insert(pooled.nonce, pooled.clone());
        Ok(pooled)
    }

    fn check<S: StateReader>(
        &self,
        raw: Bytes,
        state: &S,
        block_gas_limit: u64,
    ) -> Result<Pooled, PoolError> {
        if raw.len() > MAX_TRANSACTION_BYTES {
            return Err(PoolError::TooLarge {
                len: raw.len(),
                max: MAX_TRANSACTION_BYTES,
            });
        }
        let tx = TxEnvelope::decode_2718(&mut raw.as_ref())
            .map_err(|e| PoolError::Malformed(e.to_string()))?;
        // Trailing bytes would give a second encoding of the same transaction.
        if tx.encode_2718_len() != raw.len() {
            return Err(PoolError::Malformed("trailing bytes".into()));
        }
        // Known before anything costly: a wallet resending what it has not seen finalized
        // costs a decode, not a signature recovery.
        if self.by_hash.contains_key(tx.tx_hash()) {
            return Err(PoolError::Known);
        }
        if tx.is_eip4844() {
            return Err(PoolError::Blob);
        }
        if let Some(got) = tx.chain_id()
            && got != self.chain_id
        {
            return Err(PoolError::ChainId {
                got: Some(got),
                expected: self.chain_id,
            });
        }
        let gas_limit = tx.gas_limit();
        if !(INTRINSIC_GAS..=block_gas_limit).contains(&gas_limit) {
            return Err(PoolError::GasLimit {
                got: gas_limit,
                block: block_gas_limit,
            });
        }
        let sender = tx.recover_signer().map_err(|_| PoolError::Signature)?;
        let account = state.account(&sender).unwrap_or_default();
        let nonce = tx.nonce();
        if nonce < account.nonce {
            return Err(PoolError::NonceTooLow {
                nonce,
                account: account.nonce,
            });
        }
        if nonce - account.nonce >= MAX_NONCES_AHEAD {
            return Err(PoolError::NonceTooHigh {
                nonce,
                account: account.nonce,
            });
        }
        let max_fee = tx.max_fee_per_gas();
        let cost = U256::from(gas_limit)
            .saturating_mul(U256::from(max_fee))
            .saturating_add(tx.value());
        if account.balance < cost {
            return Err(PoolError::InsufficientFunds {
                balance: account.balance,
                cost,
            });
        }
        Ok(Pooled {
            hash: *tx.tx_hash(),
            sender,
            nonce,
            tip: tx.max_priority_fee_per_gas().unwrap_or(max_fee),
            max_fee,
            raw,
        })
    }

    /// Transactions for a block on `state`: per sender, the run of consecutive nonces starting
    /// at its account nonce, senders in address order, until `max_bytes` of transactions.
    pub fn select<S: StateReader>(&self, state: &S, max_bytes: usize) -> Vec<Bytes> {
        let mut selected = Vec::new();
        let mut bytes = 0;
        for (sender, queue) in &self.by_sender {
            let first = state.account(sender).unwrap_or_default().nonce;
            for ((nonce, pooled), expected) in queue.range(first..).zip(first..) {
                if *nonce != expected {
                    break;
                }
                if bytes + pooled.raw.len() > max_bytes {
                    return selected;
                }
                bytes += pooled.raw.len();
                selected.push(pooled.raw.clone());
            }
        }
        selected
    }

    /// Drops every transaction whose nonce `state` has passed (included, or replaced by one
    /// that was).
    pub fn prune<S: StateReader>(&mut self, state: &S) {
        let by_hash = &mut self.by_hash;
        self.by_sender.retain(|sender, queue| {
            let account = state.account(sender).unwrap_or_default().nonce;
            let kept = queue.split_off(&account);
            for pooled in queue.values() {
                by_hash.remove(&pooled.hash);
            }
            *queue = kept;
            !queue.is_empty()
        });
    }
}
