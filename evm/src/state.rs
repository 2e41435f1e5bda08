//! The world state behind the executor: a trait the EVM reads through and block changes are
//! applied to, and an in-memory implementation with an incrementally maintained state root.
//!
//! The executor never writes into the parent's state: it executes against a read view of it and
//! applies the resulting [`StateChanges`] to a clone, so an INVALID block leaves the parent
//! exactly as it was, and a VALID one yields a new state that shares unchanged parts with the
//! parent. A persistent implementation (commonware storage) implements [`StateStore`] too.

use crate::trie::Trie;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_rlp::Decodable;
use alloy_trie::{KECCAK_EMPTY, TrieAccount};
use revm::{database::BundleState, state::Bytecode};
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

/// An account's fields other than its storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountInfo {
    pub nonce: u64,
    pub balance: U256,
    pub code_hash: B256,
}

/// What the EVM needs to read from a state.
pub trait StateReader {
    fn account(&self, address: &Address) -> Option<AccountInfo>;
    /// Zero for an unset slot or a missing account.
    fn storage(&self, address: &Address, slot: &U256) -> U256;
    fn code(&self, code_hash: &B256) -> Option<Bytes>;
}

/// A state blocks can be applied to.
pub trait StateStore: StateReader + Clone {
    fn apply(&mut self, changes: &StateChanges);
    /// The state root; implementations must not rehash what did not change.
    fn state_root(&self) -> B256;
}

/// One account's change in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountChange {
    pub address: Address,
    /// `None`: the account no longer exists (self-destructed, or touched while empty).
    pub info: Option<AccountInfo>,
    /// The account's storage was destroyed before `storage` applies (a contract destroyed and
    /// created again in the block).
    pub wipe_storage: bool,
    /// New slot values; zero clears the slot.
    pub storage: Vec<(U256, U256)>,
}

/// Every state change of one block, in a deterministic order (sorted by address and slot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateChanges {
    pub accounts: Vec<AccountChange>,
    /// New contract code by hash.
    pub codes: Vec<(B256, Bytes)>,
}

impl StateChanges {
    pub(crate) fn from_bundle(bundle: BundleState) -> Self {
        let mut accounts: Vec<AccountChange> = bundle
            .state
            .into_iter()
            .map(|(address, account)| {
                let mut storage: Vec<(U256, U256)> = account
                    .storage
                    .iter()
                    .map(|(slot, value)| (*slot, value.present_value))
                    .collect();
                storage.sort_unstable();
                AccountChange {
                    address,
                    info: account.info.as_ref().map(|info| AccountInfo {
                        nonce: info.nonce,
                        balance: info.balance,
                        code_hash: info.code_hash,
                    }),
                    wipe_storage: account.status.was_destroyed(),
                    storage,
                }
            })
            .collect();
        accounts.sort_unstable_by_key(|change| change.address);
        let mut codes: Vec<(B256, Bytes)> = bundle
            .contracts
            .into_iter()
            .filter(|(hash, _)| *hash != KECCAK_EMPTY)
            .map(|(hash, code)| (hash, code.original_bytes()))
            .collect();
        codes.sort_unstable_by_key(|(hash, _)| *hash);
        Self { accounts, codes }
    }

    /// Folds `later` (the changes of a block after these) into these, so that applying the
    /// result to a state is applying these and then `later`: how a snapshot of many blocks'
    /// changes is kept as one record.
    pub fn merge(&mut self, later: &StateChanges) {
        let mut accounts: BTreeMap<Address, AccountChange> = std::mem::take(&mut self.accounts)
            .into_iter()
            .map(|change| (change.address, change))
            .collect();
        for change in &later.accounts {
            let merged = match (accounts.remove(&change.address), change.info) {
                // Gone, or first seen now: nothing earlier about it matters.
                (_, None) | (None, Some(_)) => change.clone(),
                // Created again after it was gone, or its storage destroyed: the earlier slots
                // must not survive, and applying must drop whatever the base state holds.
                (Some(earlier), Some(_)) if earlier.info.is_none() || change.wipe_storage => {
                    AccountChange {
                        wipe_storage: true,
                        ..change.clone()
                    }
                }
                (Some(earlier), Some(info)) => {
                    let mut slots: BTreeMap<U256, U256> = earlier.storage.into_iter().collect();
                    slots.extend(change.storage.iter().copied());
                    AccountChange {
                        address: change.address,
                        info: Some(info),
                        wipe_storage: earlier.wipe_storage,
                        storage: slots.into_iter().collect(),
                    }
                }
            };
            accounts.insert(change.address, merged);
        }
        self.accounts = accounts.into_values().collect();
        let mut codes: BTreeMap<B256, Bytes> =
            std::mem::take(&mut self.codes).into_iter().collect();
        codes.extend(later.codes.iter().cloned());
        self.codes = codes.into_iter().collect();
    }

    /// Changes that create accounts from scratch (genesis allocations).
    pub(crate) fn push_account(
        &mut self,
        address: Address,
        info: AccountInfo,
        storage: Vec<(U256, U256)>,
    ) {
        self.accounts.push(AccountChange {
            address,
            info: Some(info),
            wipe_storage: false,
            storage,
        });
    }
}

#[derive(Clone, Debug)]
struct Account {
    info: AccountInfo,
    /// The storage trie, also where slots are read from (one copy of the storage, shared with
    /// the parent's). Its root is cached in its nodes, so an account whose storage did not
    /// change costs nothing when the state root is taken.
    storage_trie: Trie,
}

/// The whole state in memory. Cloning copies the account and code indexes (one pointer per
/// entry) and shares every account and trie node with the original; changing an account then
/// copies only that account's record and the trie nodes on the changed paths.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    accounts: HashMap<Address, Arc<Account>>,
    codes: HashMap<B256, Bytes>,
    account_trie: Trie,
}

impl MemoryState {
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

impl StateReader for MemoryState {
    fn account(&self, address: &Address) -> Option<AccountInfo> {
        self.accounts.get(address).map(|account| account.info)
    }

    fn storage(&self, address: &Address, slot: &U256) -> U256 {
        let Some(account) = self.accounts.get(address) else {
            return U256::ZERO;
        };
        account
            .storage_trie
            .get(&keccak256(B256::from(*slot)))
            // The trie holds only values this type encoded.
            .and_then(|mut value| U256::decode(&mut value).ok())
            .unwrap_or_default()
    }

    fn code(&self, code_hash: &B256) -> Option<Bytes> {
        if *code_hash == KECCAK_EMPTY {
            return Some(Bytes::new());
        }
        self.codes.get(code_hash).cloned()
    }
}

impl StateStore for MemoryState {
    fn apply(&mut self, changes: &StateChanges) {
        for (hash, code) in &changes.codes {
            self.codes.insert(*hash, code.clone());
        }
        for change in &changes.accounts {
            let key = keccak256(change.address);
            let Some(info) = change.info else {
                self.accounts.remove(&change.address);
                self.account_trie.remove(&key);
                continue;
            };
            let account = self.accounts.entry(change.address).or_insert_with(|| {
                Arc::new(Account {
                    info,
                    storage_trie: Trie::default(),
                })
            });
            let account = Arc::make_mut(account);
            account.info = info;
            if change.wipe_storage {
                account.storage_trie = Trie::default();
            }
            for (slot, value) in &change.storage {
                let slot_key = keccak256(B256::from(*slot));
                if value.is_zero() {
                    account.storage_trie.remove(&slot_key);
                } else {
                    account
                        .storage_trie
                        .insert(&slot_key, alloy_rlp::encode(value));
                }
            }
            let leaf = TrieAccount {
                nonce: account.info.nonce,
                balance: account.info.balance,
                storage_root: account.storage_trie.root(),
                code_hash: account.info.code_hash,
            };
            self.account_trie.insert(&key, alloy_rlp::encode(leaf));
        }
    }

    fn state_root(&self) -> B256 {
        self.account_trie.root()
    }
}

/// The EVM's read view of a parent state and its recent block hashes.
pub(crate) struct Reader<'a, S> {
    pub state: &'a S,
    /// Hashes of the blocks before the one executing, oldest first; the last is the parent.
    pub hashes: &'a [B256],
    /// The parent's number.
    pub parent_number: u64,
}

impl<S> std::fmt::Debug for Reader<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("parent_number", &self.parent_number)
            .finish_non_exhaustive()
    }
}

impl<S: StateReader> revm::DatabaseRef for Reader<'_, S> {
    type Error = std::convert::Infallible;

    fn basic_ref(&self, address: Address) -> Result<Option<revm::state::AccountInfo>, Self::Error> {
        Ok(self.state.account(&address).map(|info| {
            let code = self
                .state
                .code(&info.code_hash)
                .map(Bytecode::new_raw)
                .unwrap_or_default();
            revm::state::AccountInfo {
                balance: info.balance,
                nonce: info.nonce,
                code_hash: info.code_hash,
                code: Some(code),
                ..Default::default()
            }
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, Self::Error> {
        Ok(self
            .state
            .code(&code_hash)
            .map(Bytecode::new_raw)
            .unwrap_or_default())
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, Self::Error> {
        Ok(self.state.storage(&address, &index))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, Self::Error> {
        // BLOCKHASH sees the 256 most recent blocks; revm asks only for those.
        let back = self.parent_number.checked_sub(number);
        Ok(back
            .and_then(|back| {
                let back = usize::try_from(back).ok()?;
                let index = self.hashes.len().checked_sub(1 + back)?;
                self.hashes.get(index).copied()
            })
            .unwrap_or_default())
    }
}

/// Why stored [`StateChanges`] bytes do not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("state changes record is malformed: {0}")]
pub struct ChangesDecodeError(&'static str);

/// Version byte of the [`StateChanges`] record.
const CHANGES_VERSION: u8 = 1;

impl StateChanges {
    /// The record a persistent store keeps per finalized block. Layout (all integers big
    /// endian): version, account count (u32), per account: address, an info flag (0 deleted,
    /// 1 present) with nonce (u64), balance (32) and code hash (32) when present, a wipe flag,
    /// slot count (u32) and (slot, value) pairs of 32 bytes each; then code count (u32) and per
    /// code its hash, length (u32) and bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![CHANGES_VERSION];
        out.extend_from_slice(&(self.accounts.len() as u32).to_be_bytes());
        for change in &self.accounts {
            out.extend_from_slice(change.address.as_slice());
            match change.info {
                None => out.push(0),
                Some(info) => {
                    out.push(1);
                    out.extend_from_slice(&info.nonce.to_be_bytes());
                    out.extend_from_slice(&info.balance.to_be_bytes::<32>());
                    out.extend_from_slice(info.code_hash.as_slice());
                }
            }
            out.push(u8::from(change.wipe_storage));
            out.extend_from_slice(&(change.storage.len() as u32).to_be_bytes());
            for (slot, value) in &change.storage {
                out.extend_from_slice(&slot.to_be_bytes::<32>());
                out.extend_from_slice(&value.to_be_bytes::<32>());
            }
        }
        out.extend_from_slice(&(self.codes.len() as u32).to_be_bytes());
        for (hash, code) in &self.codes {
            out.extend_from_slice(hash.as_slice());
            out.extend_from_slice(&(code.len() as u32).to_be_bytes());
            out.extend_from_slice(code);
        }
        out
    }

    /// Parses [`Self::encode`]'s record. Counts are checked against the bytes left before
    /// anything is allocated, so a damaged record cannot ask for more memory than it holds.
    pub fn decode(bytes: &[u8]) -> Result<Self, ChangesDecodeError> {
        let mut input = Input(bytes);
        if input.take::<1>("version")?[0] != CHANGES_VERSION {
            return Err(ChangesDecodeError("unknown version"));
        }
        // An account is at least 20 + 1 + 1 + 4 bytes.
        let count = input.count(26, "account count")?;
        let mut accounts = Vec::with_capacity(count);
        for _ in 0..count {
            let address = Address::from(input.take::<20>("address")?);
            let info = match input.take::<1>("info flag")?[0] {
                0 => None,
                1 => Some(AccountInfo {
                    nonce: u64::from_be_bytes(input.take::<8>("nonce")?),
                    balance: U256::from_be_bytes(input.take::<32>("balance")?),
                    code_hash: B256::from(input.take::<32>("code hash")?),
                }),
                _ => return Err(ChangesDecodeError("info flag is neither 0 nor 1")),
            };
            let wipe_storage = match input.take::<1>("wipe flag")?[0] {
                0 => false,
                1 => true,
                _ => return Err(ChangesDecodeError("wipe flag is neither 0 nor 1")),
            };
            let slots = input.count(64, "slot count")?;
            let mut storage = Vec::with_capacity(slots);
            for _ in 0..slots {
                let slot = U256::from_be_bytes(input.take::<32>("slot")?);
                let value = U256::from_be_bytes(input.take::<32>("value")?);
                storage.push((slot, value));
            }
            accounts.push(AccountChange {
                address,
                info,
                wipe_storage,
                storage,
            });
        }
        let count = input.count(36, "code count")?;
        let mut codes = Vec::with_capacity(count);
        for _ in 0..count {
            let hash = B256::from(input.take::<32>("code hash")?);
            let len = input.count(1, "code length")?;
            let code = input.slice(len, "code")?;
            if keccak256(code) != hash {
                return Err(ChangesDecodeError("code does not hash to its hash"));
            }
            codes.push((hash, Bytes::copy_from_slice(code)));
        }
        if !input.0.is_empty() {
            return Err(ChangesDecodeError("trailing bytes"));
        }
        Ok(Self { accounts, codes })
    }
}

/// A cursor over a record being decoded.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ChangesDecodeError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(ChangesDecodeError(what))?;
        self.0 = rest;
        Ok(*head)
    }

    fn slice(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], ChangesDecodeError> {
        if self.0.len() < len {
            return Err(ChangesDecodeError(what));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    /// A u32 count of items of at least `min_item` bytes each, refused if the bytes left could
    /// not hold that many.
    fn count(&mut self, min_item: usize, what: &'static str) -> Result<usize, ChangesDecodeError> {
        let count = u32::from_be_bytes(self.take::<4>(what)?) as usize;
        if count.saturating_mul(min_item) > self.0.len() {
            return Err(ChangesDecodeError(what));
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateChanges {
        let code = Bytes::from_static(&[0x60, 0x00, 0x60, 0x00, 0xf3]);
        StateChanges {
            accounts: vec![
                AccountChange {
                    address: Address::repeat_byte(1),
                    info: Some(AccountInfo {
                        nonce: 3,
                        balance: U256::from(10).pow(U256::from(20)),
                        code_hash: keccak256(&code),
                    }),
                    wipe_storage: true,
                    storage: vec![(U256::from(1), U256::from(7)), (U256::MAX, U256::ZERO)],
                },
                AccountChange {
                    address: Address::repeat_byte(2),
                    info: None,
                    wipe_storage: false,
                    storage: Vec::new(),
                },
            ],
            codes: vec![(keccak256(&code), code)],
        }
    }

    #[test]
    fn changes_survive_their_record() {
        let changes = sample();
        assert_eq!(StateChanges::decode(&changes.encode()), Ok(changes));
        let empty = StateChanges::default();
        assert_eq!(StateChanges::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn every_cut_or_flipped_record_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(StateChanges::decode(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(StateChanges::decode(&longer).is_err());
        // A count claiming more items than the bytes hold is refused before allocating.
        let mut huge = vec![CHANGES_VERSION];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            StateChanges::decode(&huge),
            Err(ChangesDecodeError("account count"))
        );
        // A code that does not match its hash is refused.
        let mut wrong_code = bytes;
        let last = wrong_code.len() - 1;
        wrong_code[last] ^= 1;
        assert_eq!(
            StateChanges::decode(&wrong_code),
            Err(ChangesDecodeError("code does not hash to its hash"))
        );
    }
}
