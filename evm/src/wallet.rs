//! A signing account for tests, benchmarks and the simulation's transaction load: it keeps its
//! own nonce and signs EIP-1559 transactions deterministically (RFC 6979), so a seeded load
//! produces the same bytes on every run.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, b256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

/// The key of the account the devnet genesis funds (the well-known ethereum-package dev key;
/// public, for development chains only).
pub const DEVNET_FUNDED_KEY: B256 =
    b256!("0xbcdf20249abf0ed6d944c0288fad489e33f66b3960d9e6229c1cd214ed3bbe31");

/// Why a wallet cannot be made or cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("not a secp256k1 secret key: {0}")]
    Key(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

#[derive(Clone, Debug)]
pub struct Wallet {
    signer: PrivateKeySigner,
    chain_id: u64,
    nonce: u64,
}

impl Wallet {
    pub fn new(key: &B256, chain_id: u64, nonce: u64) -> Result<Self, WalletError> {
        let signer =
            PrivateKeySigner::from_bytes(key).map_err(|e| WalletError::Key(e.to_string()))?;
        Ok(Self {
            signer,
            chain_id,
            nonce,
        })
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The nonce the next transaction gets.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Signs an EIP-1559 transaction with the next nonce and takes that nonce.
    pub fn sign(
        &mut self,
        to: TxKind,
        value: U256,
        input: Bytes,
        gas_limit: u64,
        max_fee_per_gas: u128,
        max_priority_fee_per_gas: u128,
    ) -> Result<Bytes, WalletError> {
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce: self.nonce,
            gas_limit,
            max_fee_per_gas,
            max_priority_fee_per_gas,
            to,
            value,
            access_list: Default::default(),
            input,
        };
        let signature = self
            .signer
            .sign_hash_sync(&tx.signature_hash())
            .map_err(|e| WalletError::Sign(e.to_string()))?;
        self.nonce += 1;
        Ok(TxEnvelope::from(tx.into_signed(signature))
            .encoded_2718()
            .into())
    }

    /// A plain transfer of `value` wei (21,000 gas).
    pub fn transfer(
        &mut self,
        to: Address,
        value: U256,
        max_fee_per_gas: u128,
        max_priority_fee_per_gas: u128,
    ) -> Result<Bytes, WalletError> {
        self.sign(
            TxKind::Call(to),
            value,
            Bytes::new(),
            21_000,
            max_fee_per_gas,
            max_priority_fee_per_gas,
        )
    }
}
