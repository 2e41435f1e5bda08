//! What both test files need: the devnet's funded key, signed transactions, a test contract.
#![allow(dead_code)]

use alloy_consensus::{SignableTransaction, TxEip1559, TxEip2930, TxEnvelope, TxLegacy};
use alloy_eips::{eip2718::Encodable2718, eip2930::AccessList};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, address, b256, hex};
use alloy_rpc_types_engine::ExecutionPayloadV3;
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

pub const CHAIN_ID: u64 = 1337;
/// The devnet genesis funds this account (the well-known ethereum-package dev key).
pub const FUNDED: Address = address!("0x8943545177806ed17b9f23f0a21ee5948ecaa776");
const FUNDED_KEY: B256 =
    b256!("0xbcdf20249abf0ed6d944c0288fad489e33f66b3960d9e6229c1cd214ed3bbe31");
pub const RECIPIENT: Address = address!("0x000000000000000000000000000000000000beef");

pub fn funded() -> PrivateKeySigner {
    let signer = PrivateKeySigner::from_bytes(&FUNDED_KEY).expect("valid key");
    assert_eq!(
        signer.address(),
        FUNDED,
        "the key is the genesis-funded account's"
    );
    signer
}

/// Runtime: `v = calldata[0..32]`; zero reverts; otherwise `sstore(0, v)` and `log1(v, 0x2a)`.
const RUNTIME: &str = "600035801560175780600055600052602a60206000a1005b60006000fd";
/// Constructor: `sstore(1, 7)`, `log1(0x01)` with no data, then returns [`RUNTIME`].
const INIT: &str = "6007600155600160006000a1601d8060176000396000f3";

/// Creates a contract whose every call stores `blockhash(number - 1)` in slot 0.
pub fn blockhash_creation_code() -> Bytes {
    hex::decode("600980600b6000396000f3600143034060005500")
        .expect("hex")
        .into()
}

/// Init code: `tstore(0, 0x2a)`, then `sstore(2, tload(0))`, returning no code. Slot 2 of the
/// created account is 0x2a only if transient storage (EIP-1153) holds within the frame.
pub fn transient_storage_creation_code() -> Bytes {
    hex::decode("602a60005d60005c60025500").expect("hex").into()
}

/// Init code: `sstore(0, 1)`, then returns a runtime that self-destructs to [`RECIPIENT`]. Under
/// EIP-6780 a later call only moves the balance: code and storage stay.
pub fn selfdestruct_later_creation_code() -> Bytes {
    hex::decode("600160005560048060106000396000f361beefff")
        .expect("hex")
        .into()
}

/// Init code that self-destructs to [`RECIPIENT`] at once: under EIP-6780 an account destroyed
/// in the transaction that created it is gone, and its value goes to the beneficiary.
pub fn selfdestruct_at_once_creation_code() -> Bytes {
    hex::decode("61beefff").expect("hex").into()
}

pub fn contract_creation_code() -> Bytes {
    let mut code = hex::decode(INIT).expect("hex");
    code.extend(hex::decode(RUNTIME).expect("hex"));
    code.into()
}

pub fn runtime_code() -> Bytes {
    hex::decode(RUNTIME).expect("hex").into()
}

/// The address a contract created by `sender` at `nonce` gets.
pub fn created_address(sender: Address, nonce: u64) -> Address {
    sender.create(nonce)
}

pub fn call_data(value: u64) -> Bytes {
    B256::from(U256::from(value)).0.to_vec().into()
}

fn sign<T: SignableTransaction<alloy_primitives::Signature>>(
    signer: &PrivateKeySigner,
    tx: T,
) -> alloy_consensus::Signed<T> {
    let signature = signer
        .sign_hash_sync(&tx.signature_hash())
        .expect("signing");
    tx.into_signed(signature)
}

/// The priority fee [`eip1559`] offers.
pub const TIP: u128 = 1_000_000_000;

/// An EIP-1559 transaction, 2718-encoded.
pub fn eip1559(nonce: u64, to: TxKind, value: U256, input: Bytes, gas_limit: u64) -> Bytes {
    eip1559_with_tip(nonce, to, value, input, gas_limit, TIP)
}

/// An EIP-1559 transaction offering `tip` per gas to the block's fee recipient.
pub fn eip1559_with_tip(
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas_limit: u64,
    tip: u128,
) -> Bytes {
    let tx = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: tip,
        to,
        value,
        access_list: AccessList::default(),
        input,
    };
    TxEnvelope::from(sign(&funded(), tx)).encoded_2718().into()
}

/// A legacy (EIP-155) transaction.
pub fn legacy(nonce: u64, to: TxKind, value: U256, input: Bytes, gas_limit: u64) -> Bytes {
    let tx = TxLegacy {
        chain_id: Some(CHAIN_ID),
        nonce,
        gas_price: 20_000_000_000,
        gas_limit,
        to,
        value,
        input,
    };
    TxEnvelope::from(sign(&funded(), tx)).encoded_2718().into()
}

/// An EIP-2930 transaction.
pub fn eip2930(nonce: u64, to: TxKind, value: U256, input: Bytes, gas_limit: u64) -> Bytes {
    let tx = TxEip2930 {
        chain_id: CHAIN_ID,
        nonce,
        gas_price: 20_000_000_000,
        gas_limit,
        to,
        value,
        access_list: AccessList::default(),
        input,
    };
    TxEnvelope::from(sign(&funded(), tx)).encoded_2718().into()
}

/// The payload's block hash recomputed after a field was changed, so that the payload reaches
/// the rule under test instead of failing the hash check.
pub fn reseal(payload: &mut ExecutionPayloadV3, parent_beacon_block_root: B256) {
    let mut block = payload
        .clone()
        .into_block_raw()
        .expect("payload converts to a block");
    block.header.parent_beacon_block_root = Some(parent_beacon_block_root);
    payload.payload_inner.payload_inner.block_hash = block.header.hash_slow();
}

/// An EIP-1559 transfer whose signature (r = 0) recovers no sender.
pub fn unrecoverable(nonce: u64) -> Bytes {
    let tx = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(RECIPIENT),
        value: U256::from(1),
        access_list: AccessList::default(),
        input: Bytes::new(),
    };
    let signature = alloy_primitives::Signature::new(U256::ZERO, U256::from(1), false);
    let hash = tx.signature_hash();
    TxEnvelope::from(alloy_consensus::Signed::new_unchecked(tx, signature, hash))
        .encoded_2718()
        .into()
}
