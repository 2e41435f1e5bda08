//! A Merkle Patricia Trie whose nodes remember their hash.
//!
//! The state root must not cost a rehash of the whole state every block: a node's encoding is
//! computed once and kept until the node is replaced, so an update rehashes only the nodes on
//! the paths it changed. Nodes are shared (`Arc`) and never mutated in place, so cloning a trie
//! (the parent state a block executes against) is cheap and leaves the parent untouched.
//!
//! Every key of Ethereum's secure tries is a 32-byte hash (64 nibbles), so no key is a prefix of
//! another and branches never carry a value.

use alloy_primitives::{B256, keccak256};
use alloy_rlp::{Encodable, Header};
use alloy_trie::EMPTY_ROOT_HASH;
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
enum Kind {
    Leaf {
        path: Vec<u8>,
        value: Vec<u8>,
    },
    Extension {
        path: Vec<u8>,
        child: Arc<Node>,
    },
    Branch {
        children: Box<[Option<Arc<Node>>; 16]>,
    },
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    /// The node's reference in its parent: its RLP if shorter than 32 bytes, else the RLP
    /// string of its keccak.
    reference: OnceLock<Vec<u8>>,
    /// Its full RLP encoding (kept for the root, whose hash is taken whatever its length).
    encoded: OnceLock<Vec<u8>>,
}

impl Node {
    fn new(kind: Kind) -> Arc<Self> {
        Arc::new(Self {
            kind,
            reference: OnceLock::new(),
            encoded: OnceLock::new(),
        })
    }

    fn leaf(path: &[u8], value: Vec<u8>) -> Arc<Self> {
        Self::new(Kind::Leaf {
            path: path.to_vec(),
            value,
        })
    }

    /// An extension over `path` to `child`, or `child` itself when `path` is empty.
    fn extension(path: &[u8], child: Arc<Node>) -> Arc<Self> {
        if path.is_empty() {
            return child;
        }
        Self::new(Kind::Extension {
            path: path.to_vec(),
            child,
        })
    }

    fn encoded(&self) -> &[u8] {
        self.encoded.get_or_init(|| {
            #[cfg(test)]
            tests::ENCODINGS.with(|n| n.set(n.get() + 1));
            let mut payload = Vec::new();
            match &self.kind {
                Kind::Leaf { path, value } => {
                    hex_prefix(path, true).as_slice().encode(&mut payload);
                    value.as_slice().encode(&mut payload);
                }
                Kind::Extension { path, child } => {
                    hex_prefix(path, false).as_slice().encode(&mut payload);
                    payload.extend_from_slice(child.reference());
                }
                Kind::Branch { children } => {
                    for child in children.iter() {
                        match child {
                            Some(child) => payload.extend_from_slice(child.reference()),
                            None => payload.push(alloy_rlp::EMPTY_STRING_CODE),
                        }
                    }
                    payload.push(alloy_rlp::EMPTY_STRING_CODE);
                }
            }
            let mut out = Vec::with_capacity(payload.len() + 3);
            Header {
                list: true,
                payload_length: payload.len(),
            }
            .encode(&mut out);
            out.extend_from_slice(&payload);
            out
        })
    }

    fn reference(&self) -> &[u8] {
        self.reference.get_or_init(|| {
            let encoded = self.encoded();
            if encoded.len() < 32 {
                encoded.to_vec()
            } else {
                let mut out = Vec::with_capacity(33);
                keccak256(encoded).as_slice().encode(&mut out);
                out
            }
        })
    }
}

/// The compact (hex-prefix) encoding of a nibble path.
fn hex_prefix(path: &[u8], leaf: bool) -> Vec<u8> {
    let flag = if leaf { 2u8 } else { 0 };
    let mut out = Vec::with_capacity(path.len() / 2 + 1);
    let rest = if path.len() % 2 == 1 {
        out.push(((flag + 1) << 4) | path[0]);
        &path[1..]
    } else {
        out.push(flag << 4);
        path
    };
    for pair in rest.chunks(2) {
        out.push((pair[0] << 4) | pair[1]);
    }
    out
}

fn nibbles(key: &B256) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (i, byte) in key.iter().enumerate() {
        out[2 * i] = byte >> 4;
        out[2 * i + 1] = byte & 0x0f;
    }
    out
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A secure Merkle Patricia Trie over 32-byte keys (already hashed by the caller).
#[derive(Clone, Debug, Default)]
pub struct Trie {
    root: Option<Arc<Node>>,
}

impl Trie {
    /// The trie's root hash; only nodes changed since the last call are hashed.
    pub fn root(&self) -> B256 {
        match &self.root {
            None => EMPTY_ROOT_HASH,
            Some(root) => keccak256(root.encoded()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    pub fn get(&self, key: &B256) -> Option<&[u8]> {
        let path = nibbles(key);
        let mut path: &[u8] = &path;
        let mut node = self.root.as_ref()?;
        loop {
            match &node.kind {
                Kind::Leaf { path: p, value } => {
                    return (p.as_slice() == path).then_some(value.as_slice());
                }
                Kind::Extension { path: p, child } => {
                    path = path.strip_prefix(p.as_slice())?;
                    node = child;
                }
                Kind::Branch { children } => {
                    node = children[path[0] as usize].as_ref()?;
                    path = &path[1..];
                }
            }
        }
    }

    /// Sets `key` to `value`; an empty value removes the key.
    pub fn insert(&mut self, key: &B256, value: Vec<u8>) {
        if value.is_empty() {
            self.remove(key);
            return;
        }
        let path = nibbles(key);
        self.root = Some(insert(self.root.as_ref(), &path, value));
    }

    pub fn remove(&mut self, key: &B256) {
        if self.get(key).is_none() {
            return;
        }
        let path = nibbles(key);
        if let Some(root) = self.root.take() {
            self.root = remove(&root, &path);
        }
    }
}

fn insert(node: Option<&Arc<Node>>, path: &[u8], value: Vec<u8>) -> Arc<Node> {
    let Some(node) = node else {
        return Node::leaf(path, value);
    };
    match &node.kind {
        Kind::Leaf { path: p, value: v } => {
            let c = common_prefix(p, path);
            if c == p.len() {
                return Node::leaf(path, value);
            }
            let mut children: Box<[Option<Arc<Node>>; 16]> = Box::default();
            children[p[c] as usize] = Some(Node::leaf(&p[c + 1..], v.clone()));
            children[path[c] as usize] = Some(Node::leaf(&path[c + 1..], value));
            Node::extension(&path[..c], Node::new(Kind::Branch { children }))
        }
        Kind::Extension { path: p, child } => {
            let c = common_prefix(p, path);
            if c == p.len() {
                return Node::extension(p, insert(Some(child), &path[c..], value));
            }
            let mut children: Box<[Option<Arc<Node>>; 16]> = Box::default();
            children[p[c] as usize] = Some(Node::extension(&p[c + 1..], child.clone()));
            children[path[c] as usize] = Some(Node::leaf(&path[c + 1..], value));
            Node::extension(&path[..c], Node::new(Kind::Branch { children }))
        }
        Kind::Branch { children } => {
            let mut children = children.clone();
            let slot = &mut children[path[0] as usize];
            *slot = Some(insert(slot.as_ref(), &path[1..], value));
            Node::new(Kind::Branch { children })
        }
    }
}

/// Removes `path`, which the caller checked is present; `None` when nothing is left.
fn remove(node: &Arc<Node>, path: &[u8]) -> Option<Arc<Node>> {
    match &node.kind {
        Kind::Leaf { .. } => None,
        Kind::Extension { path: p, child } => {
            let rest = remove(child, &path[p.len()..])?;
            Some(prepend(p, rest))
        }
        Kind::Branch { children } => {
            let mut children = children.clone();
            let index = path[0] as usize;
            children[index] = children[index]
                .as_ref()
                .and_then(|child| remove(child, &path[1..]));
            let mut left = children.iter().enumerate().filter(|(_, c)| c.is_some());
            match (left.next(), left.next()) {
                (Some((only, Some(child))), None) => Some(prepend(&[only as u8], child.clone())),
                (None, _) => None,
                _ => Some(Node::new(Kind::Branch { children })),
            }
        }
    }
}

/// `node` moved under `prefix`: paths merge so that no extension points at a leaf or another
/// extension (the canonical form every client hashes).
fn prepend(prefix: &[u8], node: Arc<Node>) -> Arc<Node> {
    match &node.kind {
        Kind::Leaf { path, value } => Node::leaf(&[prefix, path].concat(), value.clone()),
        Kind::Extension { path, child } => Node::extension(&[prefix, path].concat(), child.clone()),
        Kind::Branch { .. } => Node::extension(prefix, node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_trie::{HashBuilder, Nibbles};
    use std::collections::BTreeMap;

    /// The root a from-scratch build over the sorted entries gives (alloy-trie's builder).
    fn reference_root(entries: &BTreeMap<B256, Vec<u8>>) -> B256 {
        let mut builder = HashBuilder::default();
        for (key, value) in entries {
            builder.add_leaf(Nibbles::unpack(key), value);
        }
        builder.root()
    }

    /// A small deterministic generator (no dependency just for tests).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    #[test]
    fn empty_trie_has_the_empty_root() {
        assert_eq!(Trie::default().root(), EMPTY_ROOT_HASH);
    }

    #[test]
    fn incremental_root_matches_a_full_rebuild_through_inserts_updates_and_removals() {
        let mut rng = Lcg(7);
        let mut trie = Trie::default();
        let mut entries = BTreeMap::new();
        // Few distinct keys so that updates and removals hit existing ones; keys hashed from a
        // small space share prefixes rarely, so also use keys differing in late nibbles.
        let keys: Vec<B256> = (0..300u64)
            .map(|i| {
                if i.is_multiple_of(3) {
                    let mut k = keccak256(i.to_be_bytes());
                    k.0[31] = (i % 7) as u8;
                    k.0[0..30].copy_from_slice(&[0xab; 30]);
                    k
                } else {
                    keccak256(i.to_be_bytes())
                }
            })
            .collect();
        for round in 0..2000 {
            let key = keys[(rng.next() % keys.len() as u64) as usize];
            if rng.next().is_multiple_of(3) {
                trie.remove(&key);
                entries.remove(&key);
            } else {
                // Values short and long, so both embedded and hashed children appear.
                let len = 1 + (rng.next() % 40) as usize;
                let value = vec![(rng.next() % 255 + 1) as u8; len];
                trie.insert(&key, value.clone());
                entries.insert(key, value);
            }
            if round % 50 == 0 {
                assert_eq!(trie.root(), reference_root(&entries), "round {round}");
            }
        }
        assert_eq!(trie.root(), reference_root(&entries));
        for (key, value) in &entries {
            assert_eq!(trie.get(key), Some(value.as_slice()));
        }
        // Removing everything leaves the empty trie.
        for key in entries.keys() {
            trie.remove(key);
        }
        assert!(trie.is_empty());
        assert_eq!(trie.root(), EMPTY_ROOT_HASH);
    }

    thread_local! {
        /// Node encodings computed on this thread (each costs a keccak when referenced).
        pub(super) static ENCODINGS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn an_update_rehashes_only_its_path() {
        let mut trie = Trie::default();
        for i in 0..10_000u64 {
            trie.insert(&keccak256(i.to_be_bytes()), vec![1; 40]);
        }
        trie.root();
        let full = ENCODINGS.with(|n| n.replace(0));
        assert!(full > 10_000, "the first root encodes every node ({full})");
        trie.insert(&keccak256(77u64.to_be_bytes()), vec![2; 40]);
        trie.root();
        // 10,000 random keys make a trie about 4 branch levels deep: the update re-encodes
        // the leaf and the branches above it, nothing else.
        let after_update = ENCODINGS.with(|n| n.replace(0));
        assert!(after_update <= 6, "{after_update} nodes re-encoded");
        trie.root();
        assert_eq!(
            ENCODINGS.with(|n| n.get()),
            0,
            "an unchanged trie re-encodes nothing"
        );
    }

    #[test]
    fn a_clone_keeps_its_root_when_the_original_changes() {
        let mut trie = Trie::default();
        for i in 0..50u64 {
            trie.insert(&keccak256(i.to_be_bytes()), vec![1; 40]);
        }
        let before = trie.root();
        let snapshot = trie.clone();
        trie.insert(&keccak256(3u64.to_be_bytes()), vec![2; 40]);
        trie.remove(&keccak256(4u64.to_be_bytes()));
        assert_ne!(trie.root(), before);
        assert_eq!(snapshot.root(), before);
    }
}
