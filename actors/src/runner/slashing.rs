//! Slashing protection for this operator's validator shares.
//!
//! A share signature alone is harmless, but any `t` operators that sign two conflicting messages
//! with their shares hand the cluster everything needed to reconstruct a slashable validator
//! signature. Each operator refusing, on its own, to sign a conflict with its share is what keeps
//! the cluster from ever producing one, whatever the other operators or beacon nodes do.
//!
//! The rules are EIP-3076's minimal (low-watermark) conditions: per validator we keep only the
//! highest attestation source and target and the highest block slot, with the signing root of the
//! last target and slot. That is one fixed-size record per validator however long the node runs,
//! and it is conservative: it refuses some messages that would not be slashable (an attestation
//! for an older target than one already signed), never one that would be.
//!
//! Records live in a [Metadata] store because it commits a whole set of changes atomically and
//! checks them with a checksum: one batch of requests (every signature of a slot, thousands of
//! validators) costs one durable write, and a torn write is detected on restart instead of
//! silently rolling a watermark back.

use cohort_ingress::keys::to_hex;
use commonware_codec::{Copying, ReadExt as _, Write as _};
use commonware_runtime::{Clock, Metrics, Storage, telemetry::metrics::Registered};
use commonware_storage::metadata::{self, Metadata};
use commonware_utils::sequence::U64;
use prometheus_client::metrics::counter::Counter;
use std::fmt;
use tracing::{debug, warn};

/// What the runner asks to sign; defined with the runner's events so the simulation sees the
/// same requests this store allowed.
pub use cohort_ingress::runner::SignRequest;

mod interchange;
mod keeper;
pub use interchange::{AttestationWatermark, BlockWatermark, MergeError, Watermarks};
pub use keeper::{SlashingKeeper, SlashingStatus};

/// Why a request must not be signed, with the record it conflicts with (for the operator who has
/// to find out which beacon node or peer asked for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No valid attestation has its source after its target; signing one is never needed.
    SourceAfterTarget {
        validator_index: u64,
        source_epoch: u64,
        target_epoch: u64,
    },
    /// The target is below the recorded one. It may be surrounded by a signed vote or merely
    /// late; the low watermark cannot tell, so both are refused.
    OlderTarget {
        validator_index: u64,
        target_epoch: u64,
        recorded_target_epoch: u64,
    },
    /// A different attestation for a target already signed.
    DoubleVote {
        validator_index: u64,
        target_epoch: u64,
        recorded_root: [u8; 32],
        signing_root: [u8; 32],
    },
    /// A newer target whose source is below the recorded source: it would surround a signed vote.
    SurroundVote {
        validator_index: u64,
        source_epoch: u64,
        target_epoch: u64,
        recorded_source_epoch: u64,
        recorded_target_epoch: u64,
    },
    /// A block for a slot below the recorded one.
    OlderBlock {
        validator_index: u64,
        slot: u64,
        recorded_slot: u64,
    },
    /// A different block for a slot already signed.
    DoubleBlock {
        validator_index: u64,
        slot: u64,
        recorded_root: [u8; 32],
        signing_root: [u8; 32],
    },
}

impl Refusal {
    pub const fn validator_index(&self) -> u64 {
        match *self {
            Self::SourceAfterTarget {
                validator_index, ..
            }
            | Self::OlderTarget {
                validator_index, ..
            }
            | Self::DoubleVote {
                validator_index, ..
            }
            | Self::SurroundVote {
                validator_index, ..
            }
            | Self::OlderBlock {
                validator_index, ..
            }
            | Self::DoubleBlock {
                validator_index, ..
            } => validator_index,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SourceAfterTarget {
                validator_index,
                source_epoch,
                target_epoch,
            } => write!(
                f,
                "validator {validator_index}: attestation source epoch {source_epoch} is after its \
                 target epoch {target_epoch}"
            ),
            Self::OlderTarget {
                validator_index,
                target_epoch,
                recorded_target_epoch,
            } => write!(
                f,
                "validator {validator_index}: attestation target epoch {target_epoch} is below the \
                 recorded target epoch {recorded_target_epoch} (older or surrounded)"
            ),
            Self::DoubleVote {
                validator_index,
                target_epoch,
                recorded_root,
                signing_root,
            } => write!(
                f,
                "validator {validator_index}: double vote for target epoch {target_epoch}: root 0x{} \
                 differs from the recorded root 0x{}",
                to_hex(signing_root),
                to_hex(recorded_root)
            ),
            Self::SurroundVote {
                validator_index,
                source_epoch,
                target_epoch,
                recorded_source_epoch,
                recorded_target_epoch,
            } => write!(
                f,
                "validator {validator_index}: attestation {source_epoch}->{target_epoch} surrounds \
                 the recorded attestation {recorded_source_epoch}->{recorded_target_epoch}"
            ),
            Self::OlderBlock {
                validator_index,
                slot,
                recorded_slot,
            } => write!(
                f,
                "validator {validator_index}: block slot {slot} is below the recorded block slot \
                 {recorded_slot}"
            ),
            Self::DoubleBlock {
                validator_index,
                slot,
                recorded_root,
                signing_root,
            } => write!(
                f,
                "validator {validator_index}: double block for slot {slot}: root 0x{} differs from \
                 the recorded root 0x{}",
                to_hex(signing_root),
                to_hex(recorded_root)
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// The store cannot vouch for anything: nothing may be signed until it is re-opened.
#[derive(Debug)]
pub enum Error {
    /// Opening or writing the store failed; a failed write also poisons the store.
    Storage(metadata::Error),
    /// A stored record that passed the checksum is still not one this module writes: refusing to
    /// start beats guessing a watermark.
    Corrupt {
        validator_index: u64,
        reason: &'static str,
    },
    /// An earlier write failed or its future was dropped, so what is durable is unknown and the
    /// in-memory records went with the handle; re-open with [SlashingProtection::init].
    Poisoned,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(err) => write!(f, "slashing protection storage: {err}"),
            Self::Corrupt {
                validator_index,
                reason,
            } => write!(
                f,
                "slashing protection record of validator {validator_index} is corrupt: {reason}"
            ),
            Self::Poisoned => f.write_str(
                "slashing protection store lost after a failed or abandoned write; re-open it",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Storage(err) => Some(err),
            Self::Corrupt { .. } | Self::Poisoned => None,
        }
    }
}

impl From<metadata::Error> for Error {
    fn from(err: metadata::Error) -> Self {
        Self::Storage(err)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AttestationMark {
    source_epoch: u64,
    target_epoch: u64,
    signing_root: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockMark {
    slot: u64,
    signing_root: [u8; 32],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Record {
    attestation: Option<AttestationMark>,
    block: Option<BlockMark>,
}

/// Bumped when the layout changes, so an old node refuses a newer store instead of misreading it.
const RECORD_VERSION: u8 = 1;
const HAS_ATTESTATION: u8 = 1;
const HAS_BLOCK: u8 = 2;
/// version, flags, source, target, attestation root, slot, block root.
const RECORD_LEN: usize = 1 + 1 + 8 + 8 + 32 + 8 + 32;

/// A stored root of zeros stands for an unknown root: no real signing root (a SHA-256 output) is
/// zero, so a request can never match it and every request at that target or slot is refused.
const UNKNOWN_ROOT: [u8; 32] = [0; 32];

impl Record {
    /// Stored as plain bytes (not a codec type) because [Metadata] panics on a value it cannot
    /// decode; parsing here turns a bad record into an [Error] instead.
    fn to_bytes(self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.attestation.is_some() {
            flags |= HAS_ATTESTATION;
        }
        if self.block.is_some() {
            flags |= HAS_BLOCK;
        }
        let attestation = self.attestation.unwrap_or(AttestationMark {
            source_epoch: 0,
            target_epoch: 0,
            signing_root: [0; 32],
        });
        let block = self.block.unwrap_or(BlockMark {
            slot: 0,
            signing_root: [0; 32],
        });
        let mut bytes = Vec::with_capacity(RECORD_LEN);
        RECORD_VERSION.write(&mut bytes);
        flags.write(&mut bytes);
        attestation.source_epoch.write(&mut bytes);
        attestation.target_epoch.write(&mut bytes);
        attestation.signing_root.write(&mut bytes);
        block.slot.write(&mut bytes);
        block.signing_root.write(&mut bytes);
        bytes
    }

    fn from_bytes(validator_index: u64, bytes: &[u8]) -> Result<Self, Error> {
        let corrupt = |reason| Error::Corrupt {
            validator_index,
            reason,
        };
        if bytes.len() != RECORD_LEN {
            return Err(corrupt("unexpected record length"));
        }
        let mut buf = Copying(bytes);
        let short = |_| corrupt("record too short");
        if u8::read(&mut buf).map_err(short)? != RECORD_VERSION {
            return Err(corrupt("unknown record version"));
        }
        let flags = u8::read(&mut buf).map_err(short)?;
        if flags & !(HAS_ATTESTATION | HAS_BLOCK) != 0 {
            return Err(corrupt("unknown record flags"));
        }
        let attestation = AttestationMark {
            source_epoch: u64::read(&mut buf).map_err(short)?,
            target_epoch: u64::read(&mut buf).map_err(short)?,
            signing_root: <[u8; 32]>::read(&mut buf).map_err(short)?,
        };
        let block = BlockMark {
            slot: u64::read(&mut buf).map_err(short)?,
            signing_root: <[u8; 32]>::read(&mut buf).map_err(short)?,
        };

        let attestation = if flags & HAS_ATTESTATION != 0 {
            if attestation.source_epoch > attestation.target_epoch {
                return Err(corrupt("recorded source epoch after target epoch"));
            }
            Some(attestation)
        } else if attestation.source_epoch != 0
            || attestation.target_epoch != 0
            || attestation.signing_root != [0; 32]
        {
            return Err(corrupt("absent attestation mark is not zeroed"));
        } else {
            None
        };
        let block = if flags & HAS_BLOCK != 0 {
            Some(block)
        } else if block.slot != 0 || block.signing_root != [0; 32] {
            return Err(corrupt("absent block mark is not zeroed"));
        } else {
            None
        };
        Ok(Self { attestation, block })
    }
}

/// `Ok(None)`: the same attestation again, nothing to record.
fn check_attestation(
    recorded: Option<AttestationMark>,
    validator_index: u64,
    source_epoch: u64,
    target_epoch: u64,
    signing_root: [u8; 32],
) -> Result<Option<AttestationMark>, Refusal> {
    if source_epoch > target_epoch {
        return Err(Refusal::SourceAfterTarget {
            validator_index,
            source_epoch,
            target_epoch,
        });
    }
    let accepted = AttestationMark {
        source_epoch,
        target_epoch,
        signing_root,
    };
    let Some(recorded) = recorded else {
        return Ok(Some(accepted));
    };
    if target_epoch < recorded.target_epoch {
        return Err(Refusal::OlderTarget {
            validator_index,
            target_epoch,
            recorded_target_epoch: recorded.target_epoch,
        });
    }
    if target_epoch == recorded.target_epoch {
        // The root commits to the source too, so an equal root is the very attestation already
        // signed: signing it again yields the same signature. An unknown root (imported without
        // one) matches nothing.
        if signing_root != recorded.signing_root || recorded.signing_root == UNKNOWN_ROOT {
            return Err(Refusal::DoubleVote {
                validator_index,
                target_epoch,
                recorded_root: recorded.signing_root,
                signing_root,
            });
        }
        return Ok(None);
    }
    if source_epoch < recorded.source_epoch {
        return Err(Refusal::SurroundVote {
            validator_index,
            source_epoch,
            target_epoch,
            recorded_source_epoch: recorded.source_epoch,
            recorded_target_epoch: recorded.target_epoch,
        });
    }
    Ok(Some(accepted))
}

/// `Ok(None)`: the same block again, nothing to record.
fn check_block(
    recorded: Option<BlockMark>,
    validator_index: u64,
    slot: u64,
    signing_root: [u8; 32],
) -> Result<Option<BlockMark>, Refusal> {
    let accepted = BlockMark { slot, signing_root };
    let Some(recorded) = recorded else {
        return Ok(Some(accepted));
    };
    if slot < recorded.slot {
        return Err(Refusal::OlderBlock {
            validator_index,
            slot,
            recorded_slot: recorded.slot,
        });
    }
    if slot == recorded.slot {
        if signing_root != recorded.signing_root || recorded.signing_root == UNKNOWN_ROOT {
            return Err(Refusal::DoubleBlock {
                validator_index,
                slot,
                recorded_root: recorded.signing_root,
                signing_root,
            });
        }
        return Ok(None);
    }
    Ok(Some(accepted))
}

/// Every stored record with its validator index, decoded: a listed key without a value or a
/// record that does not decode is an error, never skipped (a watermark silently lost would let a
/// conflicting signature through).
fn records<E: Storage + Clock + Metrics>(
    metadata: &Metadata<E, U64, Vec<u8>>,
) -> impl Iterator<Item = Result<(u64, Record), Error>> + '_ {
    metadata.keys().map(|key| {
        let validator_index = u64::from(key);
        let bytes = metadata.get(key).ok_or(Error::Corrupt {
            validator_index,
            reason: "listed key has no value",
        })?;
        Ok((validator_index, Record::from_bytes(validator_index, bytes)?))
    })
}

/// Durable low-watermark records, one per validator, in one storage partition.
///
/// Owns its storage handle: keep one instance per partition, in the task that signs.
pub struct SlashingProtection<E: Storage + Clock + Metrics> {
    /// `None` once a write failed or was abandoned: what reached storage is then unknown, and
    /// answering from memory could approve a signature whose record was never made durable.
    metadata: Option<Metadata<E, U64, Vec<u8>>>,
    refusals: Registered<Counter>,
    recorded: Registered<Counter>,
}

impl<E: Storage + Clock + Metrics> SlashingProtection<E> {
    /// Opens (or creates) the store in `partition`.
    ///
    /// Every record is parsed here, so corruption stops the node at start rather than in the
    /// middle of a slot's signing.
    pub async fn init(context: E, partition: String) -> Result<Self, Error> {
        let refusals = context.register(
            "refusals",
            "signing requests refused as slashable or conflicting",
            Counter::default(),
        );
        let recorded = context.register(
            "recorded",
            "signing requests newly recorded as signable",
            Counter::default(),
        );
        let metadata = Metadata::<_, U64, Vec<u8>>::init(
            context.child("metadata"),
            metadata::Config {
                partition,
                codec_config: ((0..).into(), ()),
            },
        )
        .await?;
        let mut validators = 0usize;
        for stored in records(&metadata) {
            stored?;
            validators += 1;
        }
        debug!(validators, "slashing protection opened");
        Ok(Self {
            metadata: Some(metadata),
            refusals,
            recorded,
        })
    }

    /// Whether a failed or abandoned write left the store unusable until it is re-opened.
    pub fn is_poisoned(&self) -> bool {
        self.metadata.is_none()
    }

    /// Checks every request in order; records the accepted ones and syncs them to storage before
    /// returning. The verdicts are in request order.
    ///
    /// A request is judged against the records as left by the requests before it, so of two
    /// conflicting requests in one batch the first wins. The whole batch is one durable write.
    ///
    /// If the durable write fails this returns `Err` and NOTHING from this batch may be signed,
    /// not even the requests that would have been accepted: their records may not have reached
    /// storage. The store is then poisoned (every later call returns [Error::Poisoned]) until it
    /// is re-opened with [Self::init], which reads back whatever did reach storage. Dropping the
    /// returned future before it completes poisons the store the same way.
    pub async fn check_and_record(
        &mut self,
        requests: &[SignRequest],
    ) -> Result<Vec<Result<(), Refusal>>, Error> {
        // Taken for the whole call: any early return or drop leaves `None`, so unsynced records
        // can never answer a later request.
        let mut metadata = self.metadata.take().ok_or(Error::Poisoned)?;
        let mut verdicts = Vec::with_capacity(requests.len());
        let mut changed = 0u64;
        for request in requests {
            let validator_index = request.validator_index();
            let key = U64::new(validator_index);
            let record = match metadata.get(&key) {
                Some(bytes) => Record::from_bytes(validator_index, bytes)?,
                None => Record::default(),
            };
            let verdict = match *request {
                SignRequest::Attestation {
                    source_epoch,
                    target_epoch,
                    signing_root,
                    ..
                } => check_attestation(
                    record.attestation,
                    validator_index,
                    source_epoch,
                    target_epoch,
                    signing_root,
                )
                .map(|mark| {
                    mark.map(|mark| Record {
                        attestation: Some(mark),
                        ..record
                    })
                }),
                SignRequest::Block {
                    slot, signing_root, ..
                } => check_block(record.block, validator_index, slot, signing_root).map(|mark| {
                    mark.map(|mark| Record {
                        block: Some(mark),
                        ..record
                    })
                }),
            };
            match verdict {
                Ok(update) => {
                    if let Some(record) = update {
                        metadata.put(key, record.to_bytes());
                        changed += 1;
                    }
                    verdicts.push(Ok(()));
                }
                Err(refusal) => {
                    warn!(%refusal, "refused to sign");
                    self.refusals.inc();
                    verdicts.push(Err(refusal));
                }
            }
        }
        if changed > 0 {
            metadata = metadata.sync().await?;
            self.recorded.inc_by(changed);
            debug!(
                changed,
                requests = requests.len(),
                "slashing protection synced"
            );
        }
        self.metadata = Some(metadata);
        Ok(verdicts)
    }
}

#[cfg(test)]
mod tests {
    use super::{keeper::REOPEN_INTERVAL, *};
    use commonware_runtime::{
        Runner as _, Supervisor as _,
        deterministic::{self, FaultConfig},
    };
    use commonware_utils::probability;

    const PARTITION: &str = "slashing-protection";

    fn root(tag: u64) -> [u8; 32] {
        let mut root = [0xa5; 32];
        root[..8].copy_from_slice(&tag.to_be_bytes());
        root
    }

    fn attestation(validator_index: u64, source: u64, target: u64, tag: u64) -> SignRequest {
        SignRequest::Attestation {
            validator_index,
            source_epoch: source,
            target_epoch: target,
            signing_root: root(tag),
        }
    }

    fn block(validator_index: u64, slot: u64, tag: u64) -> SignRequest {
        SignRequest::Block {
            validator_index,
            slot,
            signing_root: root(tag),
        }
    }

    async fn open(context: &deterministic::Context) -> SlashingProtection<deterministic::Context> {
        SlashingProtection::init(context.child("slashing"), PARTITION.into())
            .await
            .expect("open slashing protection")
    }

    /// Value of one un-labelled metric line, 0 when absent.
    fn metric(context: &deterministic::Context, name: &str) -> u64 {
        context
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    }

    /// Durable writes the store's [Metadata] has committed so far.
    fn metadata_syncs(context: &deterministic::Context) -> u64 {
        metric(context, "slashing_metadata_sync_rewrites_total")
            + metric(context, "slashing_metadata_sync_overwrites_total")
    }

    async fn one(
        store: &mut SlashingProtection<deterministic::Context>,
        request: SignRequest,
    ) -> Result<(), Refusal> {
        let verdicts = store.check_and_record(&[request]).await.expect("durable");
        assert_eq!(verdicts.len(), 1);
        verdicts.into_iter().next().expect("one verdict")
    }

    #[test]
    fn double_vote_refused() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            assert_eq!(one(&mut store, attestation(1, 4, 5, 1)).await, Ok(()));
            assert_eq!(
                one(&mut store, attestation(1, 4, 5, 2)).await,
                Err(Refusal::DoubleVote {
                    validator_index: 1,
                    target_epoch: 5,
                    recorded_root: root(1),
                    signing_root: root(2),
                })
            );
            // The refusal left the record as it was: the first root is still the one signed.
            assert_eq!(one(&mut store, attestation(1, 4, 5, 1)).await, Ok(()));
        });
    }

    #[test]
    fn same_root_resign_allowed() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            assert_eq!(one(&mut store, attestation(1, 4, 5, 1)).await, Ok(()));
            let syncs = metadata_syncs(&context);
            assert_eq!(one(&mut store, attestation(1, 4, 5, 1)).await, Ok(()));
            assert_eq!(one(&mut store, attestation(1, 4, 5, 1)).await, Ok(()));
            // Nothing new to record, so nothing new to write.
            assert_eq!(metadata_syncs(&context), syncs);
        });
    }

    #[test]
    fn surround_vote_refused_both_directions() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            assert_eq!(one(&mut store, attestation(1, 3, 6, 1)).await, Ok(()));
            // The request surrounds the recorded vote 3->6.
            assert_eq!(
                one(&mut store, attestation(1, 2, 7, 2)).await,
                Err(Refusal::SurroundVote {
                    validator_index: 1,
                    source_epoch: 2,
                    target_epoch: 7,
                    recorded_source_epoch: 3,
                    recorded_target_epoch: 6,
                })
            );
            // The request is surrounded by the recorded vote 3->6.
            assert_eq!(
                one(&mut store, attestation(1, 4, 5, 3)).await,
                Err(Refusal::OlderTarget {
                    validator_index: 1,
                    target_epoch: 5,
                    recorded_target_epoch: 6,
                })
            );
            // Neither refusal moved the watermark: a vote that continues from 3->6 still signs.
            assert_eq!(one(&mut store, attestation(1, 6, 7, 4)).await, Ok(()));
        });
    }

    #[test]
    fn older_target_refused() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            assert_eq!(one(&mut store, attestation(1, 4, 5, 1)).await, Ok(()));
            assert_eq!(one(&mut store, attestation(1, 5, 6, 2)).await, Ok(()));
            // Target 5 again, even with the root signed for it before: the watermark is at 6.
            assert_eq!(
                one(&mut store, attestation(1, 4, 5, 1)).await,
                Err(Refusal::OlderTarget {
                    validator_index: 1,
                    target_epoch: 5,
                    recorded_target_epoch: 6,
                })
            );
        });
    }

    #[test]
    fn source_after_target_refused() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            // Refused even with no record, and nothing is recorded for it.
            assert_eq!(
                one(&mut store, attestation(1, 6, 5, 1)).await,
                Err(Refusal::SourceAfterTarget {
                    validator_index: 1,
                    source_epoch: 6,
                    target_epoch: 5,
                })
            );
            assert_eq!(one(&mut store, attestation(1, 0, 1, 2)).await, Ok(()));
        });
    }

    #[test]
    fn block_second_root_same_slot_refused() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            assert_eq!(one(&mut store, block(2, 100, 1)).await, Ok(()));
            assert_eq!(
                one(&mut store, block(2, 100, 2)).await,
                Err(Refusal::DoubleBlock {
                    validator_index: 2,
                    slot: 100,
                    recorded_root: root(1),
                    signing_root: root(2),
                })
            );
        });
    }

    #[test]
    fn block_same_root_allowed() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            assert_eq!(one(&mut store, block(2, 100, 1)).await, Ok(()));
            let syncs = metadata_syncs(&context);
            assert_eq!(one(&mut store, block(2, 100, 1)).await, Ok(()));
            assert_eq!(metadata_syncs(&context), syncs);
            assert_eq!(one(&mut store, block(2, 101, 2)).await, Ok(()));
        });
    }

    #[test]
    fn block_older_slot_refused() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            assert_eq!(one(&mut store, block(2, 100, 1)).await, Ok(()));
            assert_eq!(
                one(&mut store, block(2, 99, 2)).await,
                Err(Refusal::OlderBlock {
                    validator_index: 2,
                    slot: 99,
                    recorded_slot: 100,
                })
            );
        });
    }

    #[test]
    fn records_are_per_validator_and_per_kind() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            let verdicts = store
                .check_and_record(&[attestation(1, 4, 5, 1), block(1, 200, 1)])
                .await
                .unwrap();
            assert_eq!(verdicts, vec![Ok(()), Ok(())]);
            // Another validator, and the other kind of message, are not constrained by them.
            let verdicts = store
                .check_and_record(&[
                    attestation(2, 0, 1, 2),
                    block(2, 10, 2),
                    block(1, 201, 3),
                    attestation(1, 5, 6, 3),
                ])
                .await
                .unwrap();
            assert_eq!(verdicts, vec![Ok(()), Ok(()), Ok(()), Ok(())]);
            assert!(matches!(
                one(&mut store, block(1, 200, 1)).await,
                Err(Refusal::OlderBlock { .. })
            ));
        });
    }

    #[test]
    fn batch_conflicts_first_accepted_second_refused() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            let verdicts = store
                .check_and_record(&[
                    attestation(1, 4, 5, 1),
                    attestation(1, 4, 5, 2),
                    block(1, 40, 1),
                    block(1, 40, 2),
                    attestation(1, 3, 6, 3),
                    attestation(1, 4, 5, 1),
                ])
                .await
                .unwrap();
            assert_eq!(verdicts.len(), 6);
            assert_eq!(verdicts[0], Ok(()));
            assert!(matches!(verdicts[1], Err(Refusal::DoubleVote { .. })));
            assert_eq!(verdicts[2], Ok(()));
            assert!(matches!(verdicts[3], Err(Refusal::DoubleBlock { .. })));
            assert!(matches!(verdicts[4], Err(Refusal::SurroundVote { .. })));
            assert_eq!(verdicts[5], Ok(()));
            assert_eq!(store.check_and_record(&[]).await.unwrap(), vec![]);
        });
    }

    #[test]
    fn refusals_and_records_are_counted() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            store
                .check_and_record(&[
                    attestation(1, 4, 5, 1),
                    attestation(1, 4, 5, 2),
                    attestation(1, 4, 5, 1),
                    block(1, 9, 1),
                    block(1, 8, 1),
                ])
                .await
                .unwrap();
            assert_eq!(metric(&context, "slashing_refusals_total"), 2);
            assert_eq!(metric(&context, "slashing_recorded_total"), 2);
        });
    }

    #[test]
    fn reopen_restores_records() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            let verdicts = store
                .check_and_record(&[attestation(1, 4, 5, 1), block(1, 40, 1)])
                .await
                .unwrap();
            assert_eq!(verdicts, vec![Ok(()), Ok(())]);
            drop(store);

            let mut store = open(&context).await;
            let verdicts = store
                .check_and_record(&[
                    attestation(1, 4, 5, 2),
                    block(1, 40, 2),
                    attestation(1, 3, 6, 3),
                    attestation(1, 4, 5, 1),
                    block(1, 40, 1),
                ])
                .await
                .unwrap();
            assert!(matches!(verdicts[0], Err(Refusal::DoubleVote { .. })));
            assert!(matches!(verdicts[1], Err(Refusal::DoubleBlock { .. })));
            assert!(matches!(verdicts[2], Err(Refusal::SurroundVote { .. })));
            assert_eq!(verdicts[3], Ok(()));
            assert_eq!(verdicts[4], Ok(()));
        });
    }

    #[test]
    fn crash_after_return_keeps_records() {
        let (verdicts, checkpoint) =
            deterministic::Runner::default().start_and_recover(|context| async move {
                let mut store = open(&context).await;
                // No drop, no clean shutdown: the run ends right after the call returns and the
                // crash discards everything that was not synced.
                store
                    .check_and_record(&[attestation(1, 4, 5, 1), block(1, 40, 1)])
                    .await
                    .unwrap()
            });
        assert_eq!(verdicts, vec![Ok(()), Ok(())]);

        deterministic::Runner::from(checkpoint).start(|context| async move {
            let mut store = open(&context).await;
            let verdicts = store
                .check_and_record(&[
                    attestation(1, 4, 5, 2),
                    block(1, 40, 2),
                    attestation(1, 4, 5, 1),
                ])
                .await
                .unwrap();
            assert_eq!(
                verdicts,
                vec![
                    Err(Refusal::DoubleVote {
                        validator_index: 1,
                        target_epoch: 5,
                        recorded_root: root(1),
                        signing_root: root(2),
                    }),
                    Err(Refusal::DoubleBlock {
                        validator_index: 1,
                        slot: 40,
                        recorded_root: root(1),
                        signing_root: root(2),
                    }),
                    Ok(()),
                ]
            );
        });
    }

    #[test]
    fn failed_write_approves_nothing_until_reopened() {
        let checkpoint = {
            let (_, checkpoint) =
                deterministic::Runner::default().start_and_recover(|context| async move {
                    let mut store = open(&context).await;
                    assert_eq!(one(&mut store, attestation(1, 4, 5, 1)).await, Ok(()));

                    *context.storage_fault_config().write() =
                        FaultConfig::default().sync(probability!(1.0));
                    assert!(matches!(
                        store.check_and_record(&[attestation(1, 5, 6, 2)]).await,
                        Err(Error::Storage(_))
                    ));
                    // Not even a request that needs no write: the store no longer knows what
                    // is durable.
                    *context.storage_fault_config().write() = FaultConfig::default();
                    assert!(matches!(
                        store.check_and_record(&[attestation(1, 4, 5, 1)]).await,
                        Err(Error::Poisoned)
                    ));
                    assert!(matches!(
                        store.check_and_record(&[]).await,
                        Err(Error::Poisoned)
                    ));
                });
            checkpoint
        };

        deterministic::Runner::from(checkpoint).start(|context| async move {
            let mut store = open(&context).await;
            // Whether or not the failed batch reached storage, the record before it did.
            assert!(one(&mut store, attestation(1, 4, 5, 3)).await.is_err());
            assert!(one(&mut store, attestation(1, 3, 7, 3)).await.is_err());
            assert_eq!(one(&mut store, attestation(1, 6, 7, 4)).await, Ok(()));
        });
    }

    #[test]
    fn corrupt_record_is_an_error() {
        let valid = Record {
            attestation: Some(AttestationMark {
                source_epoch: 4,
                target_epoch: 5,
                signing_root: root(1),
            }),
            block: None,
        }
        .to_bytes();
        let mut wrong_version = valid.clone();
        wrong_version[0] = RECORD_VERSION + 1;
        let mut unknown_flag = valid.clone();
        unknown_flag[1] |= 0x80;
        let mut source_after_target = valid.clone();
        source_after_target[2..10].copy_from_slice(&9u64.to_be_bytes());
        let mut stray_block = valid.clone();
        stray_block[RECORD_LEN - 1] = 1;
        let cases = [
            vec![],
            valid[..RECORD_LEN - 1].to_vec(),
            [valid.as_slice(), &[0]].concat(),
            wrong_version,
            unknown_flag,
            source_after_target,
            stray_block,
        ];
        for bytes in cases {
            deterministic::Runner::default().start(|context| async move {
                let raw = Metadata::<_, U64, Vec<u8>>::init(
                    context.child("raw"),
                    metadata::Config {
                        partition: PARTITION.into(),
                        codec_config: ((0..).into(), ()),
                    },
                )
                .await
                .unwrap();
                raw.put_sync(U64::new(7), bytes).await.unwrap();

                match SlashingProtection::init(context.child("slashing"), PARTITION.into()).await {
                    Err(Error::Corrupt {
                        validator_index: 7, ..
                    }) => {}
                    Err(other) => panic!("unexpected error: {other}"),
                    Ok(_) => panic!("corrupt record accepted"),
                }
            });
        }
    }

    #[test]
    fn record_bytes_round_trip() {
        let attestation = AttestationMark {
            source_epoch: u64::MAX - 1,
            target_epoch: u64::MAX,
            signing_root: root(1),
        };
        let block = BlockMark {
            slot: u64::MAX,
            signing_root: root(2),
        };
        for record in [
            Record::default(),
            Record {
                attestation: Some(attestation),
                block: None,
            },
            Record {
                attestation: None,
                block: Some(block),
            },
            Record {
                attestation: Some(attestation),
                block: Some(block),
            },
        ] {
            let bytes = record.to_bytes();
            assert_eq!(bytes.len(), RECORD_LEN);
            assert_eq!(Record::from_bytes(0, &bytes).unwrap(), record);
        }
    }

    #[test]
    fn ten_thousand_validators_one_batch() {
        const VALIDATORS: u64 = 10_000;
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            let slot = |source, target, tag: u64| -> Vec<SignRequest> {
                (0..VALIDATORS)
                    .map(|v| attestation(v, source, target, tag * VALIDATORS + v))
                    .collect()
            };

            let syncs = metadata_syncs(&context);
            let verdicts = store.check_and_record(&slot(4, 5, 1)).await.unwrap();
            assert_eq!(verdicts.len() as u64, VALIDATORS);
            assert!(verdicts.iter().all(Result::is_ok));
            assert_eq!(
                metadata_syncs(&context),
                syncs + 1,
                "one durable write per batch"
            );
            drop(store);

            let mut store = open(&context).await;
            let syncs = metadata_syncs(&context);
            let verdicts = store.check_and_record(&slot(4, 5, 2)).await.unwrap();
            assert!(
                verdicts
                    .iter()
                    .all(|v| matches!(v, Err(Refusal::DoubleVote { .. })))
            );
            let verdicts = store.check_and_record(&slot(4, 5, 1)).await.unwrap();
            assert!(verdicts.iter().all(Result::is_ok));
            assert_eq!(
                metadata_syncs(&context),
                syncs,
                "nothing new, nothing written"
            );

            // The next epoch overwrites every record in place, still in one write.
            let verdicts = store.check_and_record(&slot(5, 6, 3)).await.unwrap();
            assert!(verdicts.iter().all(Result::is_ok));
            assert_eq!(metadata_syncs(&context), syncs + 1);
            drop(store);

            let mut store = open(&context).await;
            let verdicts = store.check_and_record(&slot(4, 5, 1)).await.unwrap();
            assert!(
                verdicts
                    .iter()
                    .all(|v| matches!(v, Err(Refusal::OlderTarget { .. })))
            );
        });
    }

    #[test]
    fn merged_watermarks_are_the_safest_in_any_order_and_idempotent() {
        let att = |source, target, tag: Option<u64>| AttestationWatermark {
            source_epoch: source,
            target_epoch: target,
            signing_root: tag.map(root),
        };
        let blk = |slot, tag: Option<u64>| BlockWatermark {
            slot,
            signing_root: tag.map(root),
        };
        let marks = [
            Watermarks::default(),
            Watermarks {
                attestation: Some(att(4, 5, Some(1))),
                block: Some(blk(40, Some(1))),
            },
            Watermarks {
                attestation: Some(att(4, 5, Some(2))),
                block: Some(blk(40, None)),
            },
            Watermarks {
                attestation: Some(att(6, 6, None)),
                block: Some(blk(30, Some(3))),
            },
            Watermarks {
                attestation: Some(att(2, 9, Some(4))),
                block: None,
            },
        ];
        for a in marks {
            assert_eq!(a.merge(a), a, "merging with itself changes nothing");
            for b in marks {
                let merged = a.merge(b);
                assert_eq!(merged, b.merge(a), "order does not matter");
                assert_eq!(merged.merge(b), merged, "merging again changes nothing");
                for side in [a, b] {
                    if let (Some(m), Some(s)) = (merged.attestation, side.attestation) {
                        assert!(
                            m.source_epoch >= s.source_epoch && m.target_epoch >= s.target_epoch
                        );
                    }
                    if let (Some(m), Some(s)) = (merged.block, side.block) {
                        assert!(m.slot >= s.slot);
                    }
                }
            }
        }
        // Two different roots for one target leave none; the higher target's root stays.
        assert_eq!(marks[1].merge(marks[2]).attestation, Some(att(4, 5, None)));
        assert_eq!(marks[1].merge(marks[2]).block, Some(blk(40, None)));
        assert_eq!(
            marks[1].merge(marks[4]).attestation,
            Some(att(4, 9, Some(4)))
        );
        assert_eq!(marks[1].merge(marks[3]).attestation, Some(att(6, 6, None)));
    }

    #[test]
    fn an_unknown_root_matches_no_request() {
        deterministic::Runner::default().start(|context| async move {
            let mut store = open(&context).await;
            let unknown = Watermarks {
                attestation: Some(AttestationWatermark {
                    source_epoch: 4,
                    target_epoch: 5,
                    signing_root: None,
                }),
                block: Some(BlockWatermark {
                    slot: 40,
                    signing_root: None,
                }),
            };
            assert_eq!(store.merge(&[(1, unknown)].into()).await.unwrap(), 1);
            let zero = |request| match request {
                SignRequest::Attestation { .. } => SignRequest::Attestation {
                    validator_index: 1,
                    source_epoch: 4,
                    target_epoch: 5,
                    signing_root: [0; 32],
                },
                SignRequest::Block { .. } => SignRequest::Block {
                    validator_index: 1,
                    slot: 40,
                    signing_root: [0; 32],
                },
            };
            let verdicts = store
                .check_and_record(&[
                    attestation(1, 4, 5, 1),
                    zero(attestation(1, 0, 0, 0)),
                    block(1, 40, 1),
                    zero(block(1, 0, 0)),
                    attestation(1, 5, 6, 1),
                ])
                .await
                .unwrap();
            assert!(matches!(verdicts[0], Err(Refusal::DoubleVote { .. })));
            assert!(matches!(verdicts[1], Err(Refusal::DoubleVote { .. })));
            assert!(matches!(verdicts[2], Err(Refusal::DoubleBlock { .. })));
            assert!(matches!(verdicts[3], Err(Refusal::DoubleBlock { .. })));
            assert_eq!(verdicts[4], Ok(()));
            let invalid = Watermarks {
                attestation: Some(AttestationWatermark {
                    source_epoch: 9,
                    target_epoch: 5,
                    signing_root: None,
                }),
                block: None,
            };
            assert!(matches!(
                store.merge(&[(2, invalid)].into()).await,
                Err(MergeError::SourceAfterTarget { validator_index: 2 })
            ));
            assert_eq!(
                store.watermarks().unwrap().len(),
                1,
                "nothing of it was kept"
            );
        });
    }

    /// Item 5 of issue 21: a failed write must not leave the node silently signing nothing for
    /// good. The keeper reports it (status for `/health`, gauge) and, once the fault clears,
    /// re-opens the record from what reached storage and approves again. Before, the store
    /// stayed poisoned until the process restarted, and nothing said so but one log line.
    #[test]
    fn keeper_reports_a_failed_write_and_reopens_once_the_fault_clears() {
        deterministic::Runner::default().start(|context| async move {
            let status = SlashingStatus::default();
            let mut keeper =
                SlashingKeeper::open(context.child("slashing"), PARTITION.into(), status.clone())
                    .await;
            let reopen = || context.child("slashing");
            assert!(keeper.is_usable());
            assert_eq!(*status.lock().unwrap(), None);
            let store = keeper
                .store(context.current(), reopen)
                .await
                .expect("usable");
            assert_eq!(one(store, attestation(1, 4, 5, 1)).await, Ok(()));

            *context.storage_fault_config().write() =
                FaultConfig::default().sync(probability!(1.0));
            let store = keeper
                .store(context.current(), reopen)
                .await
                .expect("usable");
            let err = store
                .check_and_record(&[attestation(1, 5, 6, 2)])
                .await
                .expect_err("the write fails");
            keeper.failed(&err);
            assert!(!keeper.is_usable());
            let reason = status
                .lock()
                .unwrap()
                .clone()
                .expect("a reason for /health");
            assert!(reason.contains("could not be written"), "{reason}");
            assert!(
                context
                    .encode()
                    .lines()
                    .any(|l| l.starts_with("slashing_unavailable") && l.ends_with(" 1")),
                "the gauge says it"
            );

            // While the fault lasts, re-opening fails (sync is what opening a fresh store
            // does not need, so fail reads too) and nothing is approved.
            *context.storage_fault_config().write() = FaultConfig::default()
                .sync(probability!(1.0))
                .open(probability!(1.0));
            context.sleep(REOPEN_INTERVAL).await;
            assert!(keeper.store(context.current(), reopen).await.is_none());
            assert!(status.lock().unwrap().is_some());

            // The fault clears: the next retry opens the record again, from what is durable.
            *context.storage_fault_config().write() = FaultConfig::default();
            context.sleep(REOPEN_INTERVAL).await;
            let store = keeper
                .store(context.current(), reopen)
                .await
                .expect("re-opened");
            assert!(
                one(store, attestation(1, 4, 5, 3)).await.is_err(),
                "the record survived"
            );
            assert_eq!(one(store, attestation(1, 6, 7, 4)).await, Ok(()));
            assert_eq!(*status.lock().unwrap(), None);
        });
    }
}
