//! The partial-signature container: partials keyed by what they sign, a quorum detected once per
//! key, and recovery that survives operators sending garbage.
//!
//! Partials are kept whoever sent them first and before this operator knows what they are for
//! (a peer's post-consensus message can arrive before this operator processed the same
//! finalization), so a key only counts once this operator computed the same signing root
//! itself: the runner asks [`Quorum::try_recover`] for keys it expects and nothing else.

use super::{
    cpu::CpuMeter,
    crypto::{Candidate, Crypto},
};
use cohort_ingress::{
    Root,
    keys::{self, Signature},
};
use commonware_cryptography::bls12381::primitives::{
    group::Share, sharing::Sharing, variant::MinPk,
};
use std::collections::BTreeMap;

/// The most signing roots one operator may have partials under for one validator in one slot.
///
/// An honest operator signs at most fourteen there: RANDAO reveal, selection proof,
/// attestation, block, aggregate and proof, sync committee message, and a sync selection proof
/// and a contribution and proof for each of the (at most four) sync subcommittees. Without a
/// cap, a peer could send partials over fresh junk roots until the window of slots the runner
/// accepts filled memory; with it, what one peer can make this container hold is bounded by
/// validators and slots. The margin keeps an honest operator clear of it.
pub const MAX_ROOTS_PER_SENDER: usize = 16;

/// What a quorum forms on: one validator's signature over one signing root, in one slot (the
/// slot is first so the container prunes by time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub slot: u64,
    pub validator_index: u64,
    pub signing_root: Root,
}

impl Key {
    fn root_bytes(&self) -> [u8; 32] {
        self.signing_root.0
    }
}

/// A partial signature as it came off the wire: a compressed G2 point, not yet decompressed
/// or subgroup-checked (about 100 µs each). Peers' partials are kept like this and decoded only
/// when a key this operator waits for reaches its threshold, so a sender cannot make the
/// runner decode what it never needs; at 96 bytes it is also a third of a decoded point.
pub type Compressed = [u8; 96];

/// The partials of one key. Kept small: a byzantine sender can open many keys (within
/// [`MAX_ROOTS_PER_SENDER`] and the runner's per-slot budget), each holding one partial.
#[derive(Default)]
struct Entry {
    /// Peers' partials not decoded yet, by share index; grown one at a time.
    partials: Vec<(u32, Compressed)>,
    /// Partials already points: this operator's own (it just signed it) and peers' decoded at
    /// an earlier threshold, so a key that waits for more partials decodes none twice.
    decoded: Vec<(u32, Signature)>,
    /// Operators whose partial for this key failed verification: never taken again.
    rejected: Vec<u32>,
    recovered: bool,
}

impl Entry {
    /// Whether `operator` has a partial here, or had one rejected.
    fn holds(&self, operator: u32) -> bool {
        self.partials.iter().any(|(o, _)| *o == operator)
            || self.decoded.iter().any(|(o, _)| *o == operator)
            || self.rejected.contains(&operator)
    }

    fn len(&self) -> usize {
        self.partials.len() + self.decoded.len()
    }

    fn clear(&mut self) {
        self.partials = Vec::new();
        self.decoded = Vec::new();
    }
}

/// What one recovery attempt gave. Returned by value and consumed at once, so the signature
/// stays inline rather than boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Fewer valid partials than the threshold so far.
    Waiting,
    /// The first quorum of this key: the validator's signature, verified against its key.
    /// `invalid` names operators whose partials were dropped on the way.
    Recovered {
        signature: Signature,
        invalid: Vec<u32>,
    },
    /// The recovered signature did not verify; these operators' partials were invalid and
    /// dropped, and the key waits for more.
    Invalid { invalid: Vec<u32> },
    /// This key was recovered before; a quorum is reported once.
    Done,
}

pub struct Quorum {
    threshold: u32,
    entries: BTreeMap<Key, Entry>,
    /// The cryptography keys are signed, recovered and verified with, in batches.
    crypto: Crypto,
}

impl Quorum {
    pub fn new(threshold: u32, mut crypto: Crypto) -> Self {
        crypto.set_threshold(threshold);
        Self {
            threshold,
            entries: BTreeMap::new(),
            crypto,
        }
    }

    /// Signs each `(slot, share, root)` in one batch (see [`Crypto::sign`]).
    pub fn sign(
        &mut self,
        requests: &[(u64, &Share, [u8; 32])],
        meter: &Option<CpuMeter>,
    ) -> Vec<Signature> {
        self.crypto.sign(requests, meter)
    }

    /// Stores this operator's own partial for `key`, kept as the point it signed so recovery
    /// does not decode it again (see [`Quorum::add_compressed`]).
    pub fn add_own(&mut self, key: Key, operator: u32, signature: Signature) -> bool {
        if !self.admits(&key, operator) {
            return false;
        }
        let decoded = &mut self.entries.entry(key).or_default().decoded;
        decoded.reserve_exact(1);
        decoded.push((operator, signature));
        true
    }

    /// Stores a peer's partial given as a point (see [`Quorum::add_compressed`]).
    pub fn add(&mut self, key: Key, operator: u32, signature: Signature) -> bool {
        self.add_compressed(key, operator, keys::signature_bytes(&signature))
    }

    /// Stores `operator`'s partial for `key`, still compressed. The first partial of an
    /// operator for a key wins: a second one (a replay, or an equivocating peer) is ignored,
    /// and so is a partial under more than [`MAX_ROOTS_PER_SENDER`] roots for the key's
    /// validator and slot. Returns whether it was new.
    pub fn add_compressed(&mut self, key: Key, operator: u32, signature: Compressed) -> bool {
        if !self.admits(&key, operator) {
            return false;
        }
        let partials = &mut self.entries.entry(key).or_default().partials;
        partials.reserve_exact(1);
        partials.push((operator, signature));
        true
    }

    fn admits(&self, key: &Key, operator: u32) -> bool {
        if let Some(entry) = self.entries.get(key)
            && (entry.recovered || entry.holds(operator))
        {
            return false;
        }
        self.roots_held(key, operator) < MAX_ROOTS_PER_SENDER
    }

    /// Under how many roots of `key`'s validator and slot `operator` has a partial (or had one
    /// rejected). Recovered keys do not count: reaching a threshold takes honest operators, who
    /// sign few roots, so those keys cannot pile up.
    fn roots_held(&self, key: &Key, operator: u32) -> usize {
        let bound = |byte: u8| Key {
            slot: key.slot,
            validator_index: key.validator_index,
            signing_root: commonware_cryptography::sha256::Digest([byte; 32]),
        };
        self.entries
            .range(bound(0x00)..=bound(0xff))
            .filter(|(_, entry)| entry.holds(operator))
            .count()
    }

    /// How many partials `key` holds (valid or not yet checked).
    pub fn count(&self, key: &Key) -> usize {
        self.entries.get(key).map_or(0, Entry::len)
    }

    /// Recovers `key`'s signature once a threshold of partials is in (see
    /// [`Quorum::try_recover_many`]).
    pub fn try_recover(&mut self, key: &Key, sharing: &Sharing<MinPk>) -> Recovery {
        self.try_recover_many(&[(*key, sharing)], &None)
            .pop()
            .unwrap_or(Recovery::Waiting)
    }

    /// Recovers every key given (with its validator's sharing) that has a threshold of
    /// partials in, in one batch: peers' partials are decoded (once), the signature is
    /// interpolated and checked against the validator's key together with the batch's others
    /// over the same root; if it fails, each of its partials is checked against its share's
    /// key, the bad ones are dropped (and their operators remembered for this key), and
    /// recovery is tried again from the good ones. One answer per key, in order.
    pub fn try_recover_many(
        &mut self,
        keys: &[(Key, &Sharing<MinPk>)],
        meter: &Option<CpuMeter>,
    ) -> Vec<Recovery> {
        let mut answers: Vec<Option<Recovery>> = Vec::with_capacity(keys.len());
        let mut asked = Vec::new();
        let mut candidates = Vec::new();
        for (at, (key, sharing)) in keys.iter().enumerate() {
            let answer = match self.entries.get_mut(key) {
                None => Some(Recovery::Waiting),
                Some(entry) if entry.recovered => Some(Recovery::Done),
                Some(entry) if entry.len() < self.threshold as usize => Some(Recovery::Waiting),
                // Only now, with a threshold in for a key this operator waits for, are peers'
                // points decoded; one that is not a valid point is an invalid partial like any
                // other.
                Some(entry) => {
                    asked.push((at, *key));
                    candidates.push(Candidate {
                        slot: key.slot,
                        root: key.root_bytes(),
                        sharing,
                        decoded: std::mem::take(&mut entry.decoded),
                        compressed: std::mem::take(&mut entry.partials),
                    });
                    None
                }
            };
            answers.push(answer);
        }
        let settled = if candidates.is_empty() {
            Vec::new()
        } else {
            self.crypto.recover(candidates, meter)
        };
        for ((at, key), settled) in asked.into_iter().zip(settled) {
            let Some(entry) = self.entries.get_mut(&key) else {
                answers[at] = Some(Recovery::Waiting);
                continue;
            };
            entry.rejected.extend(&settled.invalid);
            let invalid = settled.invalid;
            answers[at] = Some(match settled.signature {
                Some(signature) => {
                    entry.recovered = true;
                    entry.clear();
                    Recovery::Recovered { signature, invalid }
                }
                None => {
                    entry.decoded = settled.decoded;
                    if invalid.is_empty() {
                        // Every partial checks out alone yet recovery failed: only possible
                        // with duplicate indices, which `add` rules out. Wait rather than loop.
                        Recovery::Waiting
                    } else {
                        Recovery::Invalid { invalid }
                    }
                }
            });
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or(Recovery::Waiting))
            .collect()
    }

    /// Forgets every key of a slot before `slot`.
    pub fn prune(&mut self, slot: u64) {
        let keep = Key {
            slot,
            validator_index: 0,
            signing_root: commonware_cryptography::sha256::Digest([0u8; 32]),
        };
        self.entries = self.entries.split_off(&keep);
        self.crypto.prune(slot);
    }

    /// How many keys hold partials (for tests and gauges).
    pub fn keys(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::crypto::Parallel;
    use super::*;
    use cohort_ingress::keys::{interop_secret, sign, sign_partial, split};
    use rand::SeedableRng as _;

    fn test_crypto() -> Crypto {
        Crypto::new(Parallel::Sequential, rand::rngs::StdRng::seed_from_u64(1))
    }

    fn setup() -> (keys::SplitKey, Key, [u8; 32]) {
        let mut rng = commonware_utils::test_rng();
        let split = split(&mut rng, &interop_secret(5), 4, 3).unwrap();
        let root = [7u8; 32];
        let key = Key {
            slot: 3,
            validator_index: 5,
            signing_root: commonware_cryptography::sha256::Digest(root),
        };
        (split, key, root)
    }

    #[test]
    fn quorum_recovers_the_full_key_signature_once() {
        let (split, key, root) = setup();
        let mut quorum = Quorum::new(3, test_crypto());
        for share in &split.shares[..2] {
            let partial = sign_partial(share, &root);
            assert!(quorum.add(key, partial.index.get(), partial.value));
            assert_eq!(quorum.try_recover(&key, &split.sharing), Recovery::Waiting);
        }
        let third = sign_partial(&split.shares[2], &root);
        assert!(quorum.add(key, 2, third.value));
        assert_eq!(
            quorum.try_recover(&key, &split.sharing),
            Recovery::Recovered {
                signature: sign(&interop_secret(5), &root),
                invalid: vec![]
            }
        );
        let fourth = sign_partial(&split.shares[3], &root);
        assert!(
            !quorum.add(key, 3, fourth.value),
            "late partials are not kept"
        );
        assert_eq!(quorum.try_recover(&key, &split.sharing), Recovery::Done);
    }

    #[test]
    fn bad_partials_are_dropped_reported_and_recovery_retried() {
        let (split, key, root) = setup();
        let mut quorum = Quorum::new(3, test_crypto());
        // Operator 1 signs another root: a valid point, a wrong partial.
        let wrong = sign_partial(&split.shares[1], &[9u8; 32]);
        quorum.add(key, 0, sign_partial(&split.shares[0], &root).value);
        quorum.add(key, 1, wrong.value);
        quorum.add(key, 2, sign_partial(&split.shares[2], &root).value);
        assert_eq!(
            quorum.try_recover(&key, &split.sharing),
            Recovery::Invalid { invalid: vec![1] }
        );
        assert_eq!(quorum.count(&key), 2);
        // The liar cannot try again for this key.
        assert!(!quorum.add(key, 1, wrong.value));
        quorum.add(key, 3, sign_partial(&split.shares[3], &root).value);
        match quorum.try_recover(&key, &split.sharing) {
            Recovery::Recovered { signature, invalid } => {
                assert!(invalid.is_empty());
                assert_eq!(signature, sign(&interop_secret(5), &root));
            }
            other => panic!("expected recovery, got {other:?}"),
        }
    }

    #[test]
    fn a_sender_floods_only_a_few_roots_per_validator_and_slot() {
        let (split, key, root) = setup();
        let mut quorum = Quorum::new(3, test_crypto());
        let junk = sign_partial(&split.shares[1], &[9u8; 32]).value;
        let other_root = |i: u8| Key {
            signing_root: commonware_cryptography::sha256::Digest([i; 32]),
            ..key
        };
        // Operator 1 sends partials under a hundred fresh roots: only the first few are kept.
        let kept = (100..200u8)
            .filter(|i| quorum.add(other_root(*i), 1, junk))
            .count();
        assert_eq!(kept, MAX_ROOTS_PER_SENDER);
        assert_eq!(quorum.keys(), MAX_ROOTS_PER_SENDER);
        // Joining a root another operator opened counts too.
        assert!(quorum.add(other_root(0), 0, junk));
        assert!(!quorum.add(other_root(0), 1, junk));
        // Its cap is per validator and slot, and costs nobody else anything.
        assert!(quorum.add(Key { slot: 4, ..key }, 1, junk));
        assert!(quorum.add(
            Key {
                validator_index: 6,
                ..key
            },
            1,
            junk
        ));
        for share in [0, 2, 3] {
            let partial = sign_partial(&split.shares[share], &root);
            assert!(quorum.add(key, share as u32, partial.value));
        }
        assert!(matches!(
            quorum.try_recover(&key, &split.sharing),
            Recovery::Recovered { .. }
        ));
        // Pruning the slot frees the cap with the keys.
        quorum.prune(4);
        assert_eq!(quorum.keys(), 1);
        assert!(quorum.add(
            Key {
                slot: 4,
                ..other_root(100)
            },
            1,
            junk
        ));
    }

    #[test]
    fn first_partial_per_operator_wins_and_prune_forgets_old_slots() {
        let (split, key, root) = setup();
        let mut quorum = Quorum::new(3, test_crypto());
        assert!(quorum.add(key, 0, sign_partial(&split.shares[0], &root).value));
        assert!(!quorum.add(key, 0, sign_partial(&split.shares[1], &root).value));
        assert_eq!(quorum.count(&key), 1);
        quorum.prune(3);
        assert_eq!(quorum.keys(), 1);
        quorum.prune(4);
        assert_eq!(quorum.keys(), 0);
    }

    /// Counts the bytes this thread allocates, so a test can weigh what a key costs.
    struct Counting;

    thread_local! {
        static ALLOCATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator; only adds a thread-local count.
    unsafe impl std::alloc::GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
            // SAFETY: the caller upholds `alloc`'s contract.
            unsafe { std::alloc::System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: `ptr` came from `alloc` above with this layout.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Item 6 of issue 21: a key a lone (byzantine) sender opens must cost little, since a
    /// sender may open tens of thousands per slot at 10,000 validators. Before, each held a
    /// one-element map of decoded points, about 3 KB.
    #[test]
    fn a_key_a_lone_sender_opens_costs_a_few_hundred_bytes() {
        let (split, key, _) = setup();
        let junk = sign_partial(&split.shares[1], &[9u8; 32]).value;
        let mut quorum = Quorum::new(3, test_crypto());
        let keys = 1_000u64;
        let before = ALLOCATED.with(|a| a.get());
        for i in 0..keys {
            let mut root = [0u8; 32];
            root[..8].copy_from_slice(&i.to_be_bytes());
            let key = Key {
                validator_index: i,
                signing_root: commonware_cryptography::sha256::Digest(root),
                ..key
            };
            assert!(quorum.add(key, 1, junk));
        }
        let per_key = (ALLOCATED.with(|a| a.get()) - before) as u64 / keys;
        assert!(per_key <= 512, "{per_key} bytes allocated per key");
    }
}
