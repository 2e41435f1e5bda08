//! The simulated cluster's transaction load: a wallet on the devnet's funded account sends
//! seed-drawn transfers every slot, as a user of the cluster chain would, and the report says
//! how many the finalized chain executed.
//!
//! The wallet sends each transaction to one operator's transaction relay (the next operator each
//! slot, skipping one that is down), which pools it and sends it on to every peer, as a user's
//! wallet talks to one operator's JSON-RPC port. A transaction stays pending, sent again every
//! slot, until an engine's finalized state has passed its nonce: an operator restarted after a
//! crash or a power cut has lost its pool, and a wallet resends what it has not seen finalized.

use crate::cluster::operator::{Engines, Relays};
use cohort_engine::{Address, AlloyBytes as Bytes, U256};
use cohort_evm::{DEVNET_FUNDED_KEY, Wallet};
use commonware_cryptography::{Hasher as _, Sha256};
use serde::Serialize;
use std::collections::BTreeMap;

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
}

#[derive(Clone)]
pub(crate) struct TxLoad {
    wallet: Wallet,
    seed: u64,
    per_slot: u32,
    /// Signed and not yet seen finalized, by nonce.
    pending: BTreeMap<u64, Bytes>,
    /// Transactions signed by the start of each slot.
    signed_by_slot: BTreeMap<u64, u64>,
    refused: u64,
    first_refusal: Option<String>,
}

impl TxLoad {
    pub(crate) fn new(seed: u64, per_slot: u32) -> Self {
        Self {
            wallet: Wallet::new(&DEVNET_FUNDED_KEY, CHAIN_ID, 0)
                .unwrap_or_else(|e| panic!("the devnet's funded key: {e}")),
            seed,
            per_slot,
            pending: BTreeMap::new(),
            signed_by_slot: BTreeMap::new(),
            refused: 0,
            first_refusal: None,
        }
    }

    pub(crate) fn sender(&self) -> Address {
        self.wallet.address()
    }

    /// A recipient drawn from the seed and the nonce: the same on every replay.
    fn recipient(&self, nonce: u64) -> Address {
        let digest = Sha256::hash(&[&self.seed.to_be_bytes(), &nonce.to_be_bytes()]);
        Address::from_slice(&digest.as_ref()[..20])
    }

    /// One slot of load: forgets what finality passed, signs this slot's transfers, and sends
    /// every pending transaction to this slot's operator.
    pub(crate) async fn slot(&mut self, slot: u64, engines: &Engines, relays: &Relays) {
        let engines: Vec<_> = engines
            .lock()
            .map(|engines| engines.values().cloned().collect())
            .unwrap_or_default();
        let mut finalized_nonce = 0;
        for engine in &engines {
            let nonce = engine
                .account(&self.sender())
                .await
                .map_or(0, |account| account.nonce);
            finalized_nonce = finalized_nonce.max(nonce);
        }
        self.pending = self.pending.split_off(&finalized_nonce);
        for _ in 0..self.per_slot {
            let nonce = self.wallet.nonce();
            let to = self.recipient(nonce);
            let value = U256::from(1 + nonce % 1_000);
            let raw = self
                .wallet
                .transfer(to, value, MAX_FEE_PER_GAS, TIP_PER_GAS)
                .unwrap_or_else(|e| panic!("signing a load transfer: {e}"));
            self.pending.insert(nonce, raw);
        }
        self.signed_by_slot.insert(slot, self.wallet.nonce());
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
                    Ok(_) => {}
                    Err(reason) if reason.contains("has stopped") => {
                        up = false;
                        break;
                    }
                    // Pooled there already, or finality passed it between the look and now.
                    Err(reason)
                        if reason == "already pooled"
                            || reason.contains("below the account's nonce") => {}
                    Err(refusal) => {
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

    /// The report, with `finalized` load transactions in the finalized chain, owing those
    /// signed by the start of `owed_by_slot`.
    pub(crate) fn report(&self, finalized: u64, owed_by_slot: Option<u64>) -> TxReport {
        let owed = owed_by_slot
            .and_then(|slot| self.signed_by_slot.range(..=slot).next_back())
            .map_or(0, |(_, signed)| *signed);
        TxReport {
            per_slot: self.per_slot,
            submitted: self.wallet.nonce(),
            owed,
            finalized,
            refused: self.refused,
            first_refusal: self.first_refusal.clone(),
        }
    }
}
