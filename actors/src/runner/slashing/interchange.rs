//! Watermarks as they travel between clients (EIP-3076 interchange), and merging them into the
//! store so that a key moved in from another client or cluster keeps every refusal it had.

use super::{AttestationMark, BlockMark, Error, Record, SlashingProtection, UNKNOWN_ROOT, records};
use commonware_runtime::{Clock, Metrics, Storage};
use commonware_utils::sequence::U64;
use std::fmt;

/// One validator's watermarks as they travel between clients (EIP-3076 interchange): the last
/// attestation and block this store lets a signature go past. A signing root of `None` is unknown
/// (an interchange may omit it): nothing at that target or slot is signed again, since a matching
/// root is the only proof that a request is the very message already signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermarks {
    pub attestation: Option<AttestationWatermark>,
    pub block: Option<BlockWatermark>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttestationWatermark {
    pub source_epoch: u64,
    pub target_epoch: u64,
    pub signing_root: Option<[u8; 32]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockWatermark {
    pub slot: u64,
    pub signing_root: Option<[u8; 32]>,
}

fn known(root: [u8; 32]) -> Option<[u8; 32]> {
    (root != UNKNOWN_ROOT).then_some(root)
}

impl From<Record> for Watermarks {
    fn from(record: Record) -> Self {
        Self {
            attestation: record.attestation.map(|mark| AttestationWatermark {
                source_epoch: mark.source_epoch,
                target_epoch: mark.target_epoch,
                signing_root: known(mark.signing_root),
            }),
            block: record.block.map(|mark| BlockWatermark {
                slot: mark.slot,
                signing_root: known(mark.signing_root),
            }),
        }
    }
}

/// The root to keep when merging two marks, `order` comparing `a`'s target or slot with `b`'s:
/// the higher mark's root. Of two roots for the same target or slot, the same root stays, two
/// different ones (or an unknown one) leave nothing that may be signed again.
fn merged_root(order: std::cmp::Ordering, a: [u8; 32], b: [u8; 32]) -> [u8; 32] {
    match order {
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Equal if a == b => a,
        std::cmp::Ordering::Equal => UNKNOWN_ROOT,
    }
}

/// The safer of two attestation marks: the higher source and the higher target, each of which
/// only ever narrows what may be signed. The root survives only if it belongs to the higher
/// target (and, on a tie, both sides agree on it).
fn merge_attestation(
    a: Option<AttestationMark>,
    b: Option<AttestationMark>,
) -> Option<AttestationMark> {
    let (a, b) = match (a, b) {
        (None, other) | (other, None) => return other,
        (Some(a), Some(b)) => (a, b),
    };
    Some(AttestationMark {
        source_epoch: a.source_epoch.max(b.source_epoch),
        target_epoch: a.target_epoch.max(b.target_epoch),
        signing_root: merged_root(
            a.target_epoch.cmp(&b.target_epoch),
            a.signing_root,
            b.signing_root,
        ),
    })
}

fn merge_block(a: Option<BlockMark>, b: Option<BlockMark>) -> Option<BlockMark> {
    let (a, b) = match (a, b) {
        (None, other) | (other, None) => return other,
        (Some(a), Some(b)) => (a, b),
    };
    Some(BlockMark {
        slot: a.slot.max(b.slot),
        signing_root: merged_root(a.slot.cmp(&b.slot), a.signing_root, b.signing_root),
    })
}

impl Watermarks {
    /// As a stored record; `None` if the attestation's source is after its target, which no
    /// signed attestation has.
    fn to_record(self) -> Option<Record> {
        let attestation = match self.attestation {
            Some(mark) if mark.source_epoch > mark.target_epoch => return None,
            Some(mark) => Some(AttestationMark {
                source_epoch: mark.source_epoch,
                target_epoch: mark.target_epoch,
                signing_root: mark.signing_root.unwrap_or(UNKNOWN_ROOT),
            }),
            None => None,
        };
        let block = self.block.map(|mark| BlockMark {
            slot: mark.slot,
            signing_root: mark.signing_root.unwrap_or(UNKNOWN_ROOT),
        });
        Some(Record { attestation, block })
    }

    /// The safest combination of two validators' watermarks: whatever either refuses, the
    /// result refuses. Merging the same watermarks again changes nothing.
    pub fn merge(self, other: Self) -> Self {
        let (Some(a), Some(b)) = (self.to_record(), other.to_record()) else {
            // A source after its target was never signed: hand the invalid side on, so that
            // [SlashingProtection::merge] refuses it rather than this inventing a watermark.
            return if self.to_record().is_none() {
                self
            } else {
                other
            };
        };
        Record {
            attestation: merge_attestation(a.attestation, b.attestation),
            block: merge_block(a.block, b.block),
        }
        .into()
    }
}

/// Why watermarks could not be merged into a store.
#[derive(Debug)]
pub enum MergeError {
    Store(Error),
    /// An attestation whose source is after its target cannot have been signed: the data that
    /// says so is wrong, and nothing of it is trusted.
    SourceAfterTarget {
        validator_index: u64,
    },
}

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(err) => err.fmt(f),
            Self::SourceAfterTarget { validator_index } => write!(
                f,
                "validator {validator_index}: an attestation's source epoch is after its target"
            ),
        }
    }
}

impl std::error::Error for MergeError {}

impl<E: Storage + Clock + Metrics> SlashingProtection<E> {
    /// Every validator's watermarks, by validator index (for an EIP-3076 export).
    pub fn watermarks(&self) -> Result<std::collections::BTreeMap<u64, Watermarks>, Error> {
        let metadata = self.metadata.as_ref().ok_or(Error::Poisoned)?;
        records(metadata)
            .map(|stored| stored.map(|(validator_index, record)| (validator_index, record.into())))
            .collect()
    }

    /// Merges `incoming` into the store, keeping for each validator the safest of what it has
    /// and what comes in ([Watermarks::merge]), in one durable write; returns how many
    /// validators' records changed. All or nothing: invalid incoming data changes no record.
    pub async fn merge(
        &mut self,
        incoming: &std::collections::BTreeMap<u64, Watermarks>,
    ) -> Result<usize, MergeError> {
        for (validator_index, watermarks) in incoming {
            if watermarks.to_record().is_none() {
                return Err(MergeError::SourceAfterTarget {
                    validator_index: *validator_index,
                });
            }
        }
        let mut metadata = self
            .metadata
            .take()
            .ok_or(MergeError::Store(Error::Poisoned))?;
        let mut changed = 0;
        for (validator_index, watermarks) in incoming {
            let key = U64::new(*validator_index);
            let current = match metadata.get(&key) {
                Some(bytes) => {
                    Record::from_bytes(*validator_index, bytes).map_err(MergeError::Store)?
                }
                None => Record::default(),
            };
            let merged = Watermarks::from(current)
                .merge(*watermarks)
                .to_record()
                .ok_or(MergeError::SourceAfterTarget {
                    validator_index: *validator_index,
                })?;
            if merged != current {
                metadata.put(key, merged.to_bytes());
                changed += 1;
            }
        }
        if changed > 0 {
            metadata = metadata
                .sync()
                .await
                .map_err(|err| MergeError::Store(err.into()))?;
        }
        self.metadata = Some(metadata);
        Ok(changed)
    }
}
