//! What a finalized block leaves behind for the chain's reads: its header, transactions with
//! their senders, receipts and withdrawals, as one versioned record a persistent store keeps.
//!
//! Senders are kept rather than recovered again: a receipt or transaction read would otherwise
//! cost a signature recovery per transaction of the block.

use crate::executor::Executed;
use alloy_consensus::{Header, ReceiptEnvelope, Transaction as _, TxEnvelope};
use alloy_eips::{
    eip2718::{Decodable2718 as _, Encodable2718 as _},
    eip4895::Withdrawal,
};
use alloy_primitives::{Address, B256, Bytes};
use alloy_rlp::{Decodable as _, Encodable as _};

/// Version byte in front of the record's RLP.
const RECORD_VERSION: u8 = 1;

/// A finalized block as the chain's reads need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockRecord {
    pub header: Header,
    /// The header's hash (computed, never stored).
    pub hash: B256,
    pub transactions: Vec<TxEnvelope>,
    /// The sender of each transaction, in order.
    pub senders: Vec<Address>,
    pub receipts: Vec<ReceiptEnvelope>,
    pub withdrawals: Vec<Withdrawal>,
}

/// Why stored record bytes do not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("block record is malformed: {0}")]
pub struct RecordDecodeError(String);

/// Where one transaction sits and what it cost: the derived fields of a receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Gas this transaction used (the receipt's cumulative gas minus the previous one's).
    pub gas_used: u64,
    /// Index of its first log among the block's logs.
    pub first_log_index: u64,
    /// What it paid per gas: the base fee plus its effective tip.
    pub effective_gas_price: u128,
    /// The contract a creation made.
    pub contract_address: Option<Address>,
}

impl BlockRecord {
    /// The record of an executed block.
    pub fn of<S>(executed: &Executed<S>) -> Self {
        Self {
            header: executed.header.clone(),
            hash: executed.hash,
            transactions: executed.transactions.clone(),
            senders: executed.senders.clone(),
            receipts: executed.receipts.clone(),
            withdrawals: executed.withdrawals.clone(),
        }
    }

    /// Version byte, then an RLP list of: the header, the transactions (EIP-2718 bytes), the
    /// senders, the receipts (EIP-2718 bytes) and the withdrawals.
    pub fn encode(&self) -> Vec<u8> {
        let transactions: Vec<Bytes> = self
            .transactions
            .iter()
            .map(|tx| tx.encoded_2718().into())
            .collect();
        let receipts: Vec<Bytes> = self
            .receipts
            .iter()
            .map(|receipt| receipt.encoded_2718().into())
            .collect();
        let payload_length = self.header.length()
            + transactions.length()
            + self.senders.length()
            + receipts.length()
            + self.withdrawals.length();
        let mut out = Vec::with_capacity(1 + payload_length + 9);
        out.push(RECORD_VERSION);
        alloy_rlp::Header {
            list: true,
            payload_length,
        }
        .encode(&mut out);
        self.header.encode(&mut out);
        transactions.encode(&mut out);
        self.senders.encode(&mut out);
        receipts.encode(&mut out);
        self.withdrawals.encode(&mut out);
        out
    }

    /// The record [`Self::encode`] wrote; anything else (another version, trailing bytes,
    /// counts that differ) is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        let fail = |what: &str| RecordDecodeError(what.to_string());
        let (&version, mut rest) = bytes.split_first().ok_or_else(|| fail("empty"))?;
        if version != RECORD_VERSION {
            return Err(RecordDecodeError(format!("unknown version {version}")));
        }
        let list = alloy_rlp::Header::decode(&mut rest).map_err(|_| fail("list header"))?;
        if !list.list || list.payload_length != rest.len() {
            return Err(fail("list length"));
        }
        let header = Header::decode(&mut rest).map_err(|_| fail("header"))?;
        let transactions = Vec::<Bytes>::decode(&mut rest).map_err(|_| fail("transactions"))?;
        let senders = Vec::<Address>::decode(&mut rest).map_err(|_| fail("senders"))?;
        let receipts = Vec::<Bytes>::decode(&mut rest).map_err(|_| fail("receipts"))?;
        let withdrawals = Vec::<Withdrawal>::decode(&mut rest).map_err(|_| fail("withdrawals"))?;
        if !rest.is_empty() {
            return Err(fail("trailing bytes"));
        }
        if senders.len() != transactions.len() || receipts.len() != transactions.len() {
            return Err(fail("transaction, sender and receipt counts differ"));
        }
        let transactions = transactions
            .iter()
            .map(|raw| TxEnvelope::decode_2718_exact(raw))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| fail("a transaction"))?;
        let receipts = receipts
            .iter()
            .map(|raw| ReceiptEnvelope::decode_2718_exact(raw))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| fail("a receipt"))?;
        Ok(Self {
            hash: header.hash_slow(),
            header,
            transactions,
            senders,
            receipts,
            withdrawals,
        })
    }

    /// Index of the transaction with `hash`.
    pub fn position(&self, hash: &B256) -> Option<usize> {
        self.transactions.iter().position(|tx| tx.tx_hash() == hash)
    }

    /// The derived receipt fields of transaction `index`.
    pub fn placement(&self, index: usize) -> Option<Placement> {
        let tx = self.transactions.get(index)?;
        let receipt = self.receipts.get(index)?;
        let before = index
            .checked_sub(1)
            .and_then(|previous| self.receipts.get(previous))
            .map_or(0, |r| r.cumulative_gas_used());
        let first_log_index = self.receipts[..index]
            .iter()
            .map(|r| r.logs().len() as u64)
            .sum();
        let base_fee = self.header.base_fee_per_gas.unwrap_or_default();
        let contract_address = match tx.kind() {
            alloy_primitives::TxKind::Create => Some(self.senders.get(index)?.create(tx.nonce())),
            alloy_primitives::TxKind::Call(_) => None,
        };
        Some(Placement {
            gas_used: receipt.cumulative_gas_used().saturating_sub(before),
            first_log_index,
            effective_gas_price: tx.effective_gas_price(Some(base_fee)),
            contract_address,
        })
    }
}
