//! The simulated cluster's transaction load: the devnet's funded account funds a few seed-drawn
//! sender accounts at the first slot (one per 16 transfers a slot), and once that is finalized
//! they send seed-drawn transfers every slot, as users of the cluster chain would; the report
//! says how many the finalized chain executed.
//!
//! The wallet sends each transaction to one operator's transaction relay (the next operator each
//! slot, skipping one that is down), which pools it and sends it on to every peer, as a user's
//! wallet talks to one operator's JSON-RPC port. A transaction stays pending, sent again every
//! slot, until an engine's finalized state has passed its nonce: an operator restarted after a
//! crash or a power cut has lost its pool, and a wallet resends what it has not seen finalized.

use crate::cluster::operator::{Engines, Relays};
use cohort_engine::{Address, AlloyBytes as Bytes, TransactionRefused, U256};
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

/// Transfers one sender signs per slot at most: with finality a slot or two behind, its
/// pending nonces stay well inside the pool's 64-nonce window.
const PER_SENDER_PER_SLOT: u32 = 16;
/// What the funded account gives each sender: enough for a run of transfers and fees.
const SENDER_FUNDS: u128 = 1_000 * 1_000_000_000_000_000_000;

#[derive(Clone)]
pub(crate) struct TxLoad {
    /// The devnet's funded account, which funds the senders at the first slot.
    funder: Wallet,
    /// The accounts the load's transfers come from (seed-drawn keys).
    senders: Vec<Wallet>,
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
        Self {
            funder: wallet(&DEVNET_FUNDED_KEY),
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

    fn sign(&mut self, index: usize, to: Address, value: U256) {
        let wallet = self.wallet(index);
        let nonce = wallet.nonce();
        let raw = wallet
            .transfer(to, value, MAX_FEE_PER_GAS, TIP_PER_GAS)
            .unwrap_or_else(|e| panic!("signing a load transfer: {e}"));
        self.pending.insert((index, nonce), raw);
        self.signed += 1;
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
        self.pending
            .retain(|(index, nonce), _| *nonce >= finalized[*index].0);
        if self.funder.nonce() == 0 {
            for to in addresses.iter().skip(1) {
                self.sign(0, *to, U256::from(SENDER_FUNDS));
            }
        }
        let funded: Vec<usize> = (1..addresses.len())
            .filter(|index| !finalized[*index].1.is_zero())
            .collect();
        if !funded.is_empty() {
            for n in 0..self.per_slot as usize {
                let index = funded[n % funded.len()];
                let to = self.recipient(self.signed);
                let value = U256::from(1 + self.signed % 1_000);
                self.sign(index, to, value);
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

    /// The report, with `finalized` load transactions in the finalized chain, owing those
    /// signed by the start of `owed_by_slot`.
    pub(crate) fn report(&self, finalized: u64, owed_by_slot: Option<u64>) -> TxReport {
        let owed = owed_by_slot
            .and_then(|slot| self.signed_by_slot.range(..=slot).next_back())
            .map_or(0, |(_, signed)| *signed);
        TxReport {
            per_slot: self.per_slot,
            submitted: self.signed,
            owed,
            finalized,
            refused: self.refused,
            first_refusal: self.first_refusal.clone(),
        }
    }
}
