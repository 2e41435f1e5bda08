//! The simulated cluster's transaction load: the devnet's funded account funds a few seed-drawn
//! sender accounts at the first slot (one per 16 transactions a slot) and deploys a counter
//! contract; once that is finalized the senders send seed-drawn transfers every slot, and once
//! the contract is, every fourth of their transactions calls it instead, as users of the
//! cluster chain would; the report says how many the finalized chain executed, and how far the
//! contract counted (an engine's `eth_call`), which must be exactly the calls finalized.
//!
//! The wallet sends each transaction to one operator's transaction relay (the next operator each
//! slot, skipping one that is down), which pools it and sends it on to every peer, as a user's
//! wallet talks to one operator's JSON-RPC port. A transaction stays pending, sent again every
//! slot, until an engine's finalized state has passed its nonce: an operator restarted after a
//! crash or a power cut has lost its pool, and a wallet resends what it has not seen finalized.

use crate::{
    cluster::operator::{Engines, Relays},
    traced::Traced,
};
use cohort_engine::embedded::EmbeddedEngine;
use cohort_engine::{Address, AlloyBytes as Bytes, TransactionRefused, TxKind, U256};
use cohort_evm::{CallOutcome, CallRequest, DEVNET_FUNDED_KEY, Wallet};
use commonware_cryptography::{Hasher as _, Sha256, sha256::Digest};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Chain id of the devnet genesis the simulated engines run.
const CHAIN_ID: u64 = 1337;
/// Fee cap and tip of every load transaction: far above the devnet's base fee, whatever the
/// blocks do to it over a run.
const MAX_FEE_PER_GAS: u128 = 100_000_000_000;
const TIP_PER_GAS: u128 = 1_000_000_000;

/// What the load did, for the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TxReport {
    pub per_slot: u32,
    /// Transactions signed and offered.
    pub submitted: u64,
    /// Submitted before `owed_by_slot` (the ones the run owes finalized, when it owes liveness).
    pub owed: u64,
    /// Transactions of the load in the finalized cluster chain's payloads.
    pub finalized: u64,
    /// Offers an engine refused for a reason other than already holding the transaction.
    pub refused: u64,
    /// The first refusal's reason, to start a diagnosis from.
    pub first_refusal: Option<String>,
    /// Contract calls signed (part of `submitted`).
    pub contract_calls: u64,
    /// Contract calls in the finalized cluster chain's payloads (part of `finalized`).
    pub contract_calls_finalized: u64,
    /// The contract's counter, read with `eth_call` from the engines at the chain's last
    /// payload; `None` when none is there or the deployment is not finalized.
    pub contract_counter: Option<u64>,
}

/// Transfers one sender signs per slot at most: with finality a slot or two behind, its
/// pending nonces stay well inside the pool's 64-nonce window.
const PER_SENDER_PER_SLOT: u32 = 16;
/// What the funded account gives each sender: enough for a run of transfers and fees.
const SENDER_FUNDS: u128 = 1_000 * 1_000_000_000_000_000_000;
/// One in this many of the senders' transactions calls the contract, once it is deployed.
const CALL_EVERY: u64 = 4;
/// Gas of the deployment and of a call: well above what they use (about 70,000 for a call
/// that sets two fresh slots and logs), so one that runs out is an execution bug.
const DEPLOY_GAS: u64 = 200_000;
const CALL_GAS: u64 = 100_000;

/// The load's contract, runtime code (41 bytes). Called with no data it returns its counter
/// (slot 0), a read for `eth_call`; called with data it adds one to the counter, stores the
/// data's first word under the caller's address, and logs the new count with the caller as
/// topic: a call that writes storage twice and emits a log, which every engine must execute
/// alike.
///
/// ```text
/// 00 CALLDATASIZE  PUSH1 0x0f  JUMPI                     data? go to 0x0f
/// 04 PUSH1 0 SLOAD  PUSH1 0 MSTORE  PUSH1 32 PUSH1 0 RETURN   return slot 0
/// 0f JUMPDEST  PUSH1 0 SLOAD  PUSH1 1 ADD  DUP1  PUSH1 0 SSTORE   slot 0 += 1
/// 1a PUSH1 0 CALLDATALOAD  CALLER  SSTORE                 slot[caller] = data[0..32]
/// 1f PUSH1 0 MSTORE  CALLER  PUSH1 32 PUSH1 0 LOG1  STOP  log(count, topic caller)
/// ```
const COUNTER_RUNTIME: [u8; 41] = [
    0x36, 0x60, 0x0f, 0x57, 0x60, 0x00, 0x54, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3, 0x5b,
    0x60, 0x00, 0x54, 0x60, 0x01, 0x01, 0x80, 0x60, 0x00, 0x55, 0x60, 0x00, 0x35, 0x33, 0x55, 0x60,
    0x00, 0x52, 0x33, 0x60, 0x20, 0x60, 0x00, 0xa1, 0x00,
];

/// Init code: copies the runtime that follows it (41 bytes from byte 11) to memory and
/// returns it: `PUSH1 41 DUP1 PUSH1 11 PUSH1 0 CODECOPY PUSH1 0 RETURN`.
const COUNTER_INIT: [u8; 11] = [
    0x60, 0x29, 0x80, 0x60, 0x0b, 0x60, 0x00, 0x39, 0x60, 0x00, 0xf3,
];

fn counter_init_code() -> Bytes {
    [COUNTER_INIT.as_slice(), COUNTER_RUNTIME.as_slice()]
        .concat()
        .into()
}

#[derive(Clone)]
pub(crate) struct TxLoad {
    /// The devnet's funded account, which funds the senders at the first slot.
    funder: Wallet,
    /// The accounts the load's transfers come from (seed-drawn keys).
    senders: Vec<Wallet>,
    /// Where the funder's deployment (its nonce after funding the senders) puts the contract.
    contract: Address,
    /// Whether an engine's finalized state has the contract yet: calls wait for it.
    deployed: bool,
    /// The signed contract calls, by the SHA-256 of their bytes, to count them in payloads.
    calls: BTreeSet<Digest>,
    seed: u64,
    per_slot: u32,
    /// Signed and not yet seen finalized, by (wallet, nonce); wallet 0 is the funder, `i + 1`
    /// the sender `i`.
    pending: BTreeMap<(usize, u64), Bytes>,
    /// Transactions signed by the start of each slot.
    signed_by_slot: BTreeMap<u64, u64>,
    signed: u64,
    refused: u64,
    first_refusal: Option<String>,
}

impl TxLoad {
    pub(crate) fn new(seed: u64, per_slot: u32) -> Self {
        let wallet = |key: &cohort_engine::B256| {
            Wallet::new(key, CHAIN_ID, 0).unwrap_or_else(|e| panic!("a load key: {e}"))
        };
        let senders = per_slot.div_ceil(PER_SENDER_PER_SLOT) as usize;
        let funder = wallet(&DEVNET_FUNDED_KEY);
        Self {
            contract: funder.address().create(senders as u64),
            deployed: false,
            calls: BTreeSet::new(),
            funder,
            senders: (0..senders as u64)
                .map(|i| {
                    let digest =
                        Sha256::hash(&[b"load-sender", &seed.to_be_bytes(), &i.to_be_bytes()]);
                    wallet(&cohort_engine::B256::from_slice(digest.as_ref()))
                })
                .collect(),
            seed,
            per_slot,
            pending: BTreeMap::new(),
            signed_by_slot: BTreeMap::new(),
            signed: 0,
            refused: 0,
            first_refusal: None,
        }
    }

    /// A recipient drawn from the seed and a counter: the same on every replay.
    fn recipient(&self, counter: u64) -> Address {
        let digest = Sha256::hash(&[&self.seed.to_be_bytes(), &counter.to_be_bytes()]);
        Address::from_slice(&digest.as_ref()[..20])
    }

    fn wallet(&mut self, index: usize) -> &mut Wallet {
        match index {
            0 => &mut self.funder,
            i => &mut self.senders[i - 1],
        }
    }

    fn sign(&mut self, index: usize, to: TxKind, value: U256, input: Bytes, gas: u64) -> Bytes {
        let wallet = self.wallet(index);
        let nonce = wallet.nonce();
        let raw = wallet
            .sign(to, value, input, gas, MAX_FEE_PER_GAS, TIP_PER_GAS)
            .unwrap_or_else(|e| panic!("signing a load transaction: {e}"));
        self.pending.insert((index, nonce), raw.clone());
        self.signed += 1;
        raw
    }

    fn transfer(&mut self, index: usize, to: Address, value: U256) {
        self.sign(index, TxKind::Call(to), value, Bytes::new(), 21_000);
    }

    /// A call with a seed-drawn word for the caller's slot.
    fn call_contract(&mut self, index: usize) {
        let word = Sha256::hash(&[
            b"load-call",
            &self.seed.to_be_bytes(),
            &self.signed.to_be_bytes(),
        ]);
        let input = Bytes::copy_from_slice(word.as_ref());
        let raw = self.sign(
            index,
            TxKind::Call(self.contract),
            U256::ZERO,
            input,
            CALL_GAS,
        );
        self.calls.insert(Sha256::hash(&[raw.as_ref()]));
    }

    /// One slot of load: forgets what finality passed, signs this slot's transfers (the
    /// senders' funding first, their transfers once it is finalized), and sends every pending
    /// transaction to this slot's operator.
    pub(crate) async fn slot(&mut self, slot: u64, engines: &Engines, relays: &Relays) {
        if self.per_slot == 0 {
            return;
        }
        let engines: Vec<_> = engines
            .lock()
            .map(|engines| engines.values().cloned().collect())
            .unwrap_or_default();
        let addresses: Vec<Address> = std::iter::once(self.funder.address())
            .chain(self.senders.iter().map(Wallet::address))
            .collect();
        // Per wallet, the nonce and balance the most advanced engine has finalized.
        let mut finalized = vec![(0u64, U256::ZERO); addresses.len()];
        for engine in &engines {
            for (index, address) in addresses.iter().enumerate() {
                if let Some(account) = engine.account(address).await
                    && account.nonce >= finalized[index].0
                {
                    finalized[index] = (account.nonce, account.balance);
                }
            }
        }
        if !self.deployed {
            for engine in &engines {
                // A created contract starts at nonce 1 (EIP-161).
                if engine
                    .account(&self.contract)
                    .await
                    .is_some_and(|account| account.nonce > 0)
                {
                    self.deployed = true;
                    break;
                }
            }
        }
        self.pending
            .retain(|(index, nonce), _| *nonce >= finalized[*index].0);
        if self.funder.nonce() == 0 {
            for to in addresses.iter().skip(1) {
                self.transfer(0, *to, U256::from(SENDER_FUNDS));
            }
            self.sign(
                0,
                TxKind::Create,
                U256::ZERO,
                counter_init_code(),
                DEPLOY_GAS,
            );
        }
        let funded: Vec<usize> = (1..addresses.len())
            .filter(|index| !finalized[*index].1.is_zero())
            .collect();
        if !funded.is_empty() {
            for n in 0..self.per_slot as usize {
                let index = funded[n % funded.len()];
                if self.deployed && self.signed.is_multiple_of(CALL_EVERY) {
                    self.call_contract(index);
                } else {
                    let to = self.recipient(self.signed);
                    let value = U256::from(1 + self.signed % 1_000);
                    self.transfer(index, to, value);
                }
            }
        }
        self.signed_by_slot.insert(slot, self.signed);
        let relays: Vec<_> = relays
            .lock()
            .map(|relays| relays.values().cloned().collect())
            .unwrap_or_default();
        if relays.is_empty() {
            return;
        }
        // This slot's operator, or the next one that is up.
        let first = slot as usize % relays.len();
        for offset in 0..relays.len() {
            let relay = &relays[(first + offset) % relays.len()];
            let mut up = true;
            for raw in self.pending.values() {
                match relay.submit(raw.clone()).await {
                    Ok(Ok(_)) => {}
                    Err(_stopped) => {
                        up = false;
                        break;
                    }
                    // Pooled there already, or finality passed it between the look and now.
                    Ok(Err(TransactionRefused::Known | TransactionRefused::Stale(_))) => {}
                    Ok(Err(TransactionRefused::Refused(refusal))) => {
                        self.refused += 1;
                        self.first_refusal.get_or_insert(refusal);
                    }
                }
            }
            if up {
                return;
            }
        }
    }

    /// The report, given the finalized chain's payload transactions, owing those signed by
    /// the start of `owed_by_slot`.
    pub(crate) fn report<'a>(
        &self,
        finalized: impl IntoIterator<Item = &'a Bytes>,
        owed_by_slot: Option<u64>,
    ) -> TxReport {
        let owed = owed_by_slot
            .and_then(|slot| self.signed_by_slot.range(..=slot).next_back())
            .map_or(0, |(_, signed)| *signed);
        let (mut transactions, mut calls) = (0, 0);
        for raw in finalized {
            transactions += 1;
            if self.calls.contains(&Sha256::hash(&[raw.as_ref()])) {
                calls += 1;
            }
        }
        TxReport {
            per_slot: self.per_slot,
            submitted: self.signed,
            owed,
            finalized: transactions,
            refused: self.refused,
            first_refusal: self.first_refusal.clone(),
            contract_calls: self.calls.len() as u64,
            contract_calls_finalized: calls,
            contract_counter: None,
        }
    }

    /// The contract's counter as `engine`'s finalized state has it, read with `eth_call`'s
    /// path; `None` before the deployment is finalized there (a call to an empty account
    /// returns nothing).
    pub(crate) async fn counter(
        &self,
        engine: &EmbeddedEngine<Traced>,
    ) -> Result<Option<U256>, String> {
        let request = CallRequest {
            to: Some(self.contract),
            ..CallRequest::default()
        };
        match engine.call(&request).await {
            Ok(CallOutcome::Success { output, .. }) if output.is_empty() => Ok(None),
            Ok(CallOutcome::Success { output, .. }) => U256::try_from_be_slice(&output)
                .map(Some)
                .ok_or_else(|| format!("the counter returned {} bytes", output.len())),
            Ok(other) => Err(format!("reading the counter failed: {other:?}")),
            Err(e) => Err(format!("reading the counter failed: {e}")),
        }
    }
}
