//! Voluntary exits through the cluster: each operator that intends a validator's exit signs it
//! with its share and sends the partial to the others; threshold-many partials for the same
//! (validator, epoch) combine into the exit, which any operator holding them submits. No single
//! operator can exit a validator, and the partials travel over the cluster's own p2p.

use crate::keys::Signature;
use bytes::BufMut;
use commonware_codec::{
    Buf, EncodeSize, Error as CodecError, FixedSize, RangeCfg, Read, ReadExt, Write,
};
use commonware_utils::channel::{mpsc, oneshot};

/// The most exit partials one message carries (an operator re-announces every exit it intends
/// that has not completed; more than this many at once wait for the next round).
pub const MAX_EXIT_PARTIALS_PER_MESSAGE: usize = 64;

/// One operator's share signature over a validator's voluntary exit at `epoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitPartial {
    pub validator_index: u64,
    pub epoch: u64,
    pub signature: Signature,
}

impl Write for ExitPartial {
    fn write(&self, buf: &mut impl BufMut) {
        self.validator_index.write(buf);
        self.epoch.write(buf);
        self.signature.write(buf);
    }
}

impl FixedSize for ExitPartial {
    const SIZE: usize = 8 + 8 + Signature::SIZE;
}

impl Read for ExitPartial {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            validator_index: u64::read(buf)?,
            epoch: u64::read(buf)?,
            // Decoding checks the point is on the curve and in the right subgroup.
            signature: Signature::read(buf)?,
        })
    }
}

/// What travels on the exits channel: every exit partial one operator announces at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitPartials(pub Vec<ExitPartial>);

impl ExitPartials {
    pub fn max_encode_size() -> usize {
        // The length prefix is a varint of at most a few bytes.
        8 + MAX_EXIT_PARTIALS_PER_MESSAGE * ExitPartial::SIZE
    }
}

impl Write for ExitPartials {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

impl EncodeSize for ExitPartials {
    fn encode_size(&self) -> usize {
        self.0.encode_size()
    }
}

impl Read for ExitPartials {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self(Vec::<ExitPartial>::read_cfg(
            buf,
            &(RangeCfg::new(1..=MAX_EXIT_PARTIALS_PER_MESSAGE), ()),
        )?))
    }
}

/// A voluntary exit signed with the validator's (reconstructed) key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedVoluntaryExit {
    pub validator_index: u64,
    pub epoch: u64,
    pub signature: Signature,
}

/// Where one exit stands, as this operator sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitProgress {
    pub validator_index: u64,
    pub epoch: u64,
    /// Whether this operator signed it (its operator asked for it).
    pub intended_here: bool,
    /// Operators (1-based) whose valid partials this operator holds, itself included.
    pub signers: Vec<u64>,
    pub threshold: usize,
    /// The combined exit, once threshold-many partials were in and it verified.
    pub signed: Option<SignedVoluntaryExit>,
    /// Whether a beacon node took the signed exit.
    pub submitted: bool,
}

pub enum Message {
    /// This operator's operator intends `validator`'s exit: sign it (at `epoch`, or at the epoch
    /// another operator already proposed for it, or the current one) and announce it.
    Request {
        validator_index: u64,
        epoch: Option<u64>,
        answer: oneshot::Sender<Result<ExitProgress, String>>,
    },
    /// Every exit this operator knows of.
    Status {
        answer: oneshot::Sender<Vec<ExitProgress>>,
    },
}

#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::Sender<Message>,
}

impl Mailbox {
    pub fn new(sender: mpsc::Sender<Message>) -> Self {
        Self { sender }
    }

    /// See [`Message::Request`]. `Err` if the request was refused or the actor has stopped.
    pub async fn request(
        &mut self,
        validator_index: u64,
        epoch: Option<u64>,
    ) -> Result<ExitProgress, String> {
        let (answer, response) = oneshot::channel();
        self.sender
            .send(Message::Request {
                validator_index,
                epoch,
                answer,
            })
            .await
            .map_err(|_| "the exits actor has stopped".to_string())?;
        response
            .await
            .map_err(|_| "the exits actor has stopped".to_string())?
    }

    /// See [`Message::Status`]; `None` if the actor has stopped.
    pub async fn status(&mut self) -> Option<Vec<ExitProgress>> {
        let (answer, response) = oneshot::channel();
        self.sender.send(Message::Status { answer }).await.ok()?;
        response.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt as _, Encode as _};

    #[test]
    fn partials_round_trip_and_bad_input_is_refused() {
        let secret = crate::keys::interop_secret(3);
        let share = crate::keys::split(&mut commonware_utils::test_rng(), &secret, 4, 3)
            .expect("valid threshold")
            .for_operator(0)
            .expect("operator 0 has a share");
        let signature = crate::keys::sign_partial(&share.share, &[7; 32]).value;
        let message = ExitPartials(vec![ExitPartial {
            validator_index: 3,
            epoch: 9,
            signature,
        }]);
        let bytes = message.encode();
        assert!(bytes.len() <= ExitPartials::max_encode_size());
        assert_eq!(
            ExitPartials::decode(bytes.clone()).expect("decodes"),
            message
        );
        // Empty, truncated, oversized and off-curve input is an error.
        assert!(ExitPartials::decode(ExitPartials(Vec::new()).encode()).is_err());
        assert!(ExitPartials::decode(bytes.slice(..bytes.len() - 1)).is_err());
        let many = ExitPartials(vec![
            message.0[0].clone();
            MAX_EXIT_PARTIALS_PER_MESSAGE + 1
        ]);
        assert!(ExitPartials::decode(many.encode()).is_err());
        let mut junk = bytes.to_vec();
        let last = junk.len() - 1;
        junk[last - 40..=last].fill(0xff);
        assert!(ExitPartials::decode(bytes::Bytes::from(junk)).is_err());
    }
}
