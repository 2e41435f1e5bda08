//! What operators send each other during a ceremony, on the ceremony's own channel.

use crate::PublicKey;
use bytes::BufMut;
use commonware_codec::Buf;
use commonware_codec::{EncodeSize, Error, RangeCfg, Read, ReadExt as _, Write};
use commonware_cryptography::bls12381::{
    dkg::feldman_desmedt::{DealerPrivMsg, DealerPubMsg, PlayerAck, SignedDealerLog},
    primitives::variant::{MinPk, PartialSignature},
};
use std::num::NonZeroU32;

/// Longest reason an abort carries.
pub const MAX_REASON_BYTES: usize = 1024;

/// One message of a ceremony. Every list holds one entry per key, in the ceremony's key order.
#[derive(Clone, Debug)]
pub enum Wire {
    /// A dealer's commitments (public) and the player's dealings (private to the recipient:
    /// the channel is encrypted and authenticated).
    Dealing {
        commitments: Vec<DealerPubMsg<MinPk>>,
        shares: Vec<DealerPrivMsg>,
    },
    /// A player's acknowledgements of one dealer's dealings.
    Acks(Vec<PlayerAck<PublicKey>>),
    /// A dealer's signed transcripts, once every player acknowledged.
    Logs(Vec<SignedDealerLog<MinPk, PublicKey>>),
    /// The sender's outcome: a digest of every key's public polynomial, and its partial
    /// signature over each key's message (none from an operator that holds no new share).
    Done {
        digest: [u8; 32],
        partials: Vec<PartialSignature<MinPk>>,
    },
    /// The sender gave up; `culprit` is whom it blames.
    Abort {
        culprit: Option<PublicKey>,
        reason: String,
    },
}

/// Bounds for decoding: how many keys and how many players the ceremony has.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub keys: usize,
    pub players: NonZeroU32,
}

impl Write for Wire {
    fn write(&self, buf: &mut impl BufMut) {
        match self {
            Self::Dealing {
                commitments,
                shares,
            } => {
                0u8.write(buf);
                commitments.write(buf);
                shares.write(buf);
            }
            Self::Acks(acks) => {
                1u8.write(buf);
                acks.write(buf);
            }
            Self::Logs(logs) => {
                2u8.write(buf);
                logs.write(buf);
            }
            Self::Done { digest, partials } => {
                3u8.write(buf);
                digest.write(buf);
                partials.write(buf);
            }
            Self::Abort { culprit, reason } => {
                4u8.write(buf);
                culprit.write(buf);
                reason.as_bytes().to_vec().write(buf);
            }
        }
    }
}

impl EncodeSize for Wire {
    fn encode_size(&self) -> usize {
        1 + match self {
            Self::Dealing {
                commitments,
                shares,
            } => commitments.encode_size() + shares.encode_size(),
            Self::Acks(acks) => acks.encode_size(),
            Self::Logs(logs) => logs.encode_size(),
            Self::Done { digest, partials } => digest.encode_size() + partials.encode_size(),
            Self::Abort { culprit, reason } => {
                culprit.encode_size() + reason.as_bytes().to_vec().encode_size()
            }
        }
    }
}

impl Read for Wire {
    type Cfg = Bounds;

    fn read_cfg(buf: &mut impl Buf, bounds: &Bounds) -> Result<Self, Error> {
        let exact = RangeCfg::new(bounds.keys..=bounds.keys);
        Ok(match u8::read(buf)? {
            0 => Self::Dealing {
                commitments: Read::read_cfg(buf, &(exact, bounds.players))?,
                shares: Read::read_cfg(buf, &(exact, ()))?,
            },
            1 => Self::Acks(Read::read_cfg(buf, &(exact, ()))?),
            2 => Self::Logs(Read::read_cfg(buf, &(exact, bounds.players))?),
            3 => Self::Done {
                digest: Read::read_cfg(buf, &())?,
                partials: Read::read_cfg(buf, &(RangeCfg::new(0..=bounds.keys), ()))?,
            },
            4 => {
                let culprit = Read::read_cfg(buf, &())?;
                let bytes: Vec<u8> =
                    Read::read_cfg(buf, &(RangeCfg::new(0..=MAX_REASON_BYTES), ()))?;
                Self::Abort {
                    culprit,
                    reason: String::from_utf8_lossy(&bytes).into_owned(),
                }
            }
            tag => return Err(Error::InvalidEnum(tag)),
        })
    }
}

/// The largest message a ceremony of `keys` keys among `players` players sends: a dealer's
/// signed logs (commitment, and an acknowledgement or reveal per player, per key).
pub fn max_message_size(keys: usize, players: NonZeroU32) -> usize {
    let per_key = SignedDealerLog::<MinPk, PublicKey>::max_encode_size(players)
        .max(DealerPubMsg::<MinPk>::max_encode_size(players) + 32);
    64 + MAX_REASON_BYTES + keys * per_key
}
