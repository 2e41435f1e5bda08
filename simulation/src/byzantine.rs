//! Byzantine operators beyond wrong partial signatures: one that floods every channel with
//! malformed, oversized, mutated and replayed messages ([`saboteur`]), and one whose every
//! consensus vote goes out with a conflicting twin for the same view ([`Equivocating`]).
//!
//! Both keep the operator's honest actors running, so the damage is on top of a node that
//! otherwise looks healthy: the case a real cluster has to survive.

use cohort_marshal::{Digest, PublicKey, Scheme};
use commonware_actor::{Feedback, Unreliable};
use commonware_codec::{Decode, Encode};
use commonware_consensus::simplex::types::{Notarize, Proposal, Vote};
use commonware_cryptography::{Hasher, Sha256};
use commonware_p2p::{CheckedSender, LimitedSender, Recipients, simulated};
use commonware_runtime::{Clock, IoBufs, deterministic};
use rand::RngExt as _;
use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// How many past messages a noisy operator keeps to replay.
const TAP_CAPACITY: usize = 256;

/// Messages a noisy operator can replay or mutate, by channel: what it received from its
/// peers and what it sent itself (as its peers saw it).
#[derive(Clone, Debug, Default)]
pub struct Tap(Arc<Mutex<VecDeque<Tapped>>>);

/// One kept message: its channel and bytes.
type Tapped = (u64, Vec<u8>);

impl Tap {
    fn record(&self, channel: u64, bytes: &[u8]) {
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() == TAP_CAPACITY {
                kept.pop_front();
            }
            kept.push_back((channel, bytes.to_vec()));
        }
    }

    fn pick(&self, at: u64) -> Option<(u64, Vec<u8>)> {
        let kept = self.0.lock().ok()?;
        if kept.is_empty() {
            return None;
        }
        kept.get((at % kept.len() as u64) as usize).cloned()
    }
}

/// Every noisy operator's tap, by its public key; receivers of every operator feed them.
#[derive(Clone, Debug, Default)]
pub struct Taps(Arc<BTreeMap<PublicKey, Tap>>);

impl Taps {
    pub fn new(noisy: impl IntoIterator<Item = PublicKey>) -> Self {
        Self(Arc::new(
            noisy.into_iter().map(|key| (key, Tap::default())).collect(),
        ))
    }

    pub fn tap(&self, key: &PublicKey) -> Option<Tap> {
        self.0.get(key).cloned()
    }

    /// Keeps `bytes`, received by `me` from `sender` on `channel`, for whichever of the two is
    /// noisy.
    pub fn record(&self, me: &PublicKey, sender: &PublicKey, channel: u64, bytes: &[u8]) {
        for key in [me, sender] {
            if let Some(tap) = self.0.get(key) {
                tap.record(channel, bytes);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Sends junk on the noisy operator's channels every few hundred milliseconds, forever: random
/// bytes, a message as large as the network allows, a past message replayed verbatim, one
/// with a byte flipped, one cut short and one with bytes appended. Every receiver must drop it
/// (or block the sender) and carry on.
pub async fn saboteur(
    context: deterministic::Context,
    mut senders: Vec<(u64, simulated::Sender<PublicKey, deterministic::Context>)>,
    tap: Tap,
    max_size: usize,
) {
    if senders.is_empty() {
        return;
    }
    let mut context = context;
    loop {
        let pause = 100 + context.random::<u64>() % 800;
        context.sleep(Duration::from_millis(pause)).await;
        let draw = context.random::<u64>();
        let replayed = tap.pick(draw >> 8);
        let (channel, bytes) = match (draw % 6, replayed) {
            (0, _) | (_, None) => {
                let len = 1 + (draw >> 16) as usize % 512;
                let bytes = (0..len).map(|_| context.random::<u8>()).collect();
                (pick_channel(&senders, draw >> 32), bytes)
            }
            (1, _) => {
                let bytes = (0..max_size).map(|_| context.random::<u8>()).collect();
                (pick_channel(&senders, draw >> 32), bytes)
            }
            (2, Some((channel, bytes))) => (channel, bytes),
            (3, Some((channel, mut bytes))) => {
                if !bytes.is_empty() {
                    let at = (draw >> 16) as usize % bytes.len();
                    bytes[at] ^= 1 << ((draw >> 40) % 8);
                }
                (channel, bytes)
            }
            (4, Some((channel, mut bytes))) => {
                bytes.truncate((draw >> 16) as usize % bytes.len().max(1));
                (channel, bytes)
            }
            (_, Some((channel, mut bytes))) => {
                let extra = 1 + (draw >> 16) as usize % 64;
                bytes.extend((0..extra).map(|_| context.random::<u8>()));
                bytes.truncate(max_size);
                (channel, bytes)
            }
        };
        if let Some((_, sender)) = senders.iter_mut().find(|(c, _)| *c == channel) {
            let _ = commonware_p2p::Sender::send(sender, Recipients::All, bytes, false);
        }
    }
}

fn pick_channel(
    senders: &[(u64, simulated::Sender<PublicKey, deterministic::Context>)],
    draw: u64,
) -> u64 {
    senders[(draw % senders.len() as u64) as usize].0
}

/// The vote channel's sender of an equivocating operator: each notarize vote it sends to more
/// than one peer goes to some of them as a notarize for another payload in the same view,
/// signed with the same key. Those peers cannot verify a payload nobody has, so they nullify
/// or learn the real one from the others' certificate; either way they now hold proof that
/// this operator signed two things in one view.
#[derive(Clone)]
pub struct Equivocating {
    inner: simulated::Sender<PublicKey, deterministic::Context>,
    scheme: Scheme,
}

impl Equivocating {
    pub fn new(
        inner: simulated::Sender<PublicKey, deterministic::Context>,
        scheme: Scheme,
    ) -> Self {
        Self { inner, scheme }
    }
}

impl LimitedSender for Equivocating {
    type PublicKey = PublicKey;
    type Checked<'a> = EquivocatingChecked<'a>;

    fn check(
        &mut self,
        recipients: Recipients<PublicKey>,
    ) -> Result<Self::Checked<'_>, SystemTime> {
        let allowed = self.inner.check(recipients)?.recipients();
        Ok(EquivocatingChecked {
            outer: self,
            recipients: allowed,
        })
    }
}

pub struct EquivocatingChecked<'a> {
    outer: &'a mut Equivocating,
    recipients: Vec<PublicKey>,
}

impl EquivocatingChecked<'_> {
    fn send_to(
        &mut self,
        recipients: Vec<PublicKey>,
        message: IoBufs,
        priority: bool,
    ) -> Unreliable<Feedback> {
        if recipients.is_empty() {
            return Unreliable::Outcome(Feedback::Ok);
        }
        match self.outer.inner.check(Recipients::Some(recipients)) {
            Ok(checked) => checked.send(message, priority),
            Err(_) => Unreliable::Rejected,
        }
    }
}

impl CheckedSender for EquivocatingChecked<'_> {
    type PublicKey = PublicKey;

    fn recipients(&self) -> Vec<PublicKey> {
        self.recipients.clone()
    }

    fn send(mut self, message: impl Into<IoBufs> + Send, priority: bool) -> Unreliable<Feedback> {
        let message: IoBufs = message.into();
        let bytes = message.clone().coalesce();
        let twin = match Vote::<Scheme, Digest>::decode_cfg(
            bytes::Bytes::copy_from_slice(bytes.as_ref()),
            &(),
        ) {
            Ok(Vote::Notarize(notarize)) if self.recipients.len() > 1 => {
                let proposal = &notarize.proposal;
                let other = Sha256::hash(&[proposal.payload.as_ref(), b"equivocation"]);
                Notarize::sign(
                    &self.outer.scheme,
                    Proposal::new(proposal.round, proposal.parent, other),
                )
                .map(|twin| (proposal.round.view().get(), Vote::Notarize(twin).encode()))
            }
            _ => None,
        };
        let Some((view, twin)) = twin else {
            let recipients = std::mem::take(&mut self.recipients);
            return self.send_to(recipients, message, priority);
        };
        // A different third of the peers is misled in each view.
        let (victims, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.recipients)
            .into_iter()
            .enumerate()
            .partition(|(i, _)| (*i as u64 + view).is_multiple_of(3));
        let victims = victims.into_iter().map(|(_, key)| key).collect();
        let rest = rest.into_iter().map(|(_, key)| key).collect();
        let _ = self.send_to(victims, twin.into(), priority);
        self.send_to(rest, message, priority)
    }
}
