//! Distributed key generation and resharing of validator keys among a cluster's operators.
//!
//! A ceremony runs commonware's Feldman/Desmedt DKG (`bls12381::dkg::feldman_desmedt`) for
//! every key at once, over one authenticated, encrypted p2p channel: no party ever holds a whole
//! key. With a previous sharing per key it is a reshare (Desmedt): the previous operators deal
//! their shares to a new operator set, and every key keeps its public key.
//!
//! The protocol tolerates faulty dealers, but a validator key is not something to create on a
//! partly failed ceremony: this one is strict. Every dealer must deal to every player, every
//! player must acknowledge every dealing, no share may be revealed, and every player must
//! confirm the same outcome with a partial signature that verifies against its new share's
//! public key (over the deposit message, for a new key). Anything else ends the ceremony with
//! an error naming the operator at fault, before anything is written; it can be run again.
//!
//! Steps (one message kind each, see [`wire::Wire`]):
//! 1. each dealer sends each player its commitments and the player's private dealings;
//! 2. each player checks them against the commitments and acknowledges (signed);
//! 3. each dealer, with every acknowledgement, signs its log and sends it to everyone;
//! 4. with every dealer's log, each player computes its shares and the public polynomials and
//!    sends a digest of them with its partial signatures; with every player's, each checks them,
//!    combines the signatures and checks them against the group keys.
//!
//! Messages sent before a peer connected are lost, so each operator sends again, every
//! [`Setup::resend`], whatever it still owes a peer that has not shown it has it. Everything
//! received is idempotent.

// Ceremony errors name operators with their addresses: a failed ceremony happens once per
// run, so their size costs nothing worth boxing for.
#![allow(clippy::result_large_err, clippy::large_enum_variant)]

pub mod deposit;
pub mod local;
mod state;
pub mod wire;

use state::State;

use commonware_codec::{Decode as _, Encode as _, Write as _};
use commonware_cryptography::{
    Hasher as _, Sha256, Signer as _,
    bls12381::{
        dkg::feldman_desmedt::{
            Dealer, DealerLogSummary, DealerPrivMsg, Failure, FinalizeError, Info, Logs, Output,
            Player, Reveal, SignedDealerLog,
        },
        primitives::{
            group::{Scalar, Share},
            sharing::{Mode, ModeVersion, Sharing},
            variant::{MinPk, PartialSignature},
        },
    },
    ed25519,
};
use commonware_macros::select;
use commonware_math::algebra::Random as _;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::Clock;
use commonware_utils::{N3f1, Participant, TryCollect as _, ordered::Set};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    num::NonZeroU32,
    time::{Duration, SystemTime},
};
use tracing::{info, warn};
use wire::{Bounds, Wire};

pub use cohort_ingress::keys::{Signature, ValidatorPublicKey};

/// Operators are identified by their ed25519 identity, as on the cluster's p2p.
pub type PublicKey = ed25519::PublicKey;

/// The p2p channel a ceremony speaks on. The ceremony's network has its own handshake
/// namespace as well, so its traffic can never reach (or come from) a running node.
pub const CHANNEL: u64 = 0x646b67;

/// An operator as errors name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub key: PublicKey,
    pub name: String,
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

fn list(names: &[Named]) -> String {
    names
        .iter()
        .map(|n| n.name.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which step a ceremony was waiting on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Dealing,
    Acknowledgement,
    Log,
    Confirmation,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dealing => "their dealing",
            Self::Acknowledgement => "their acknowledgement of this operator's dealing",
            Self::Log => "their signed dealer log",
            Self::Confirmation => "their confirmation and partial signatures",
        })
    }
}

/// Why a ceremony ended without keys. Nothing has been written; the ceremony can be re-run.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    #[error(
        "no answer from {} within {} s (waiting for {step}); is every operator running the \
         ceremony with the same parameters, and reachable?",
        list(missing), after.as_secs()
    )]
    Timeout {
        step: Step,
        missing: Vec<Named>,
        after: Duration,
    },
    #[error("operator {dealer} sent a bad dealing (key {key}): {reason}")]
    BadDealing {
        dealer: Named,
        key: u64,
        reason: String,
    },
    #[error("operator {player} sent an invalid acknowledgement (key {key}): {reason}")]
    BadAck {
        player: Named,
        key: u64,
        reason: String,
    },
    #[error("operator {dealer} sent a bad dealer log: {reason}")]
    BadLog { dealer: Named, reason: String },
    #[error(
        "operator {operator}'s partial signature for key {key} does not verify against its share's \
         public key"
    )]
    BadPartial { operator: Named, key: u64 },
    #[error("operator {operator} computed another outcome than this operator")]
    Mismatch { operator: Named },
    #[error("operator {operator} sent something that is not a ceremony message: {reason}")]
    Malformed { operator: Named, reason: String },
    #[error("operator {by} aborted the ceremony{}: {reason}", culprit.as_ref().map(|c| format!(", blaming operator {c}")).unwrap_or_default())]
    Aborted {
        by: Named,
        culprit: Option<Named>,
        reason: String,
    },
    #[error("the ceremony failed: {0}")]
    Failed(String),
    #[error("cannot start the ceremony: {0}")]
    Setup(String),
    #[error("the network stopped")]
    Network,
}

impl CeremonyError {
    /// The operator this error blames, if any.
    pub fn culprit(&self) -> Option<&Named> {
        match self {
            Self::BadDealing { dealer, .. } | Self::BadLog { dealer, .. } => Some(dealer),
            Self::BadAck { player, .. } => Some(player),
            Self::BadPartial { operator, .. }
            | Self::Mismatch { operator }
            | Self::Malformed { operator, .. } => Some(operator),
            Self::Aborted { culprit, by, .. } => culprit.as_ref().or(Some(by)),
            Self::Timeout { .. } | Self::Failed(_) | Self::Setup(_) | Self::Network => None,
        }
    }
}

/// One key of a ceremony.
#[derive(Clone, Debug)]
pub struct KeySetup {
    /// Identifies the key (its validator index); binds every signature of the round to it.
    pub id: u64,
    /// For a reshare: the key's current public output, and this operator's current share if it
    /// is one of the dealers.
    pub previous: Option<(Output<MinPk, PublicKey>, Option<Share>)>,
}

/// Test-only ways to misbehave, so the others' handling of a byzantine operator can be tested.
#[derive(Clone, Debug)]
pub enum Misbehavior {
    /// Deal a share to this player that does not match the commitment.
    CorruptDealingTo(PublicKey),
}

/// Computes, from a key's new public polynomial, the message its partial signatures sign.
pub type SigningRoot = Box<dyn Fn(&Sharing<MinPk>) -> [u8; 32] + Send>;

pub struct Setup {
    /// Separates this cluster's ceremonies from any other application's.
    pub namespace: Vec<u8>,
    pub me: ed25519::PrivateKey,
    pub dealers: Set<PublicKey>,
    pub players: Set<PublicKey>,
    pub keys: Vec<KeySetup>,
    /// What each key's partial signatures sign (for new keys: their deposit message).
    pub signing_root: SigningRoot,
    /// How an operator is named in errors.
    pub names: BTreeMap<PublicKey, String>,
    /// The whole ceremony's deadline.
    pub timeout: Duration,
    /// How often unanswered messages are sent again.
    pub resend: Duration,
    pub misbehave: Option<Misbehavior>,
}

/// One key's result.
#[derive(Clone, Debug)]
pub struct KeyOutcome {
    pub id: u64,
    /// The new public polynomial: the key (unchanged by a reshare) and every share's public key.
    pub sharing: Sharing<MinPk>,
    /// This operator's new share (none for an outgoing operator).
    pub share: Option<Share>,
    /// The combined signature over the key's signing root, checked against the key.
    pub signature: Signature,
    pub signing_root: [u8; 32],
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub keys: Vec<KeyOutcome>,
    /// The new players, in share order.
    pub players: Set<PublicKey>,
    /// What every operator confirmed (a digest of every key's public polynomial).
    pub digest: [u8; 32],
}

/// The round's public output for a key whose sharing was made elsewhere (a `cluster init`
/// split or an earlier ceremony): commonware's reshare needs one, and only its sharing and
/// players carry meaning here. `summary` binds it to the lock it came from.
pub fn previous_output(
    summary: [u8; 32],
    sharing: &Sharing<MinPk>,
    players: &Set<PublicKey>,
) -> Result<Output<MinPk, PublicKey>, String> {
    let mut bytes = Vec::new();
    summary.write(&mut bytes);
    sharing.write(&mut bytes);
    players.write(&mut bytes);
    players.write(&mut bytes);
    Set::<PublicKey>::default().write(&mut bytes);
    let max = NonZeroU32::new(players.len() as u32).ok_or("no operators")?;
    Output::<MinPk, PublicKey>::decode_cfg(bytes, &(max, ModeVersion::v0())).map_err(|err| {
        format!(
            "the sharing is not a {}-operator sharing: {err}",
            players.len()
        )
    })
}

/// The digest every operator confirms: the players and every key's public polynomial.
pub fn outcome_digest(players: &Set<PublicKey>, sharings: &[&Sharing<MinPk>]) -> [u8; 32] {
    let mut bytes = players.encode().to_vec();
    for sharing in sharings {
        bytes.extend_from_slice(&sharing.encode());
    }
    let digest = Sha256::hash(&[b"cohort/dkg/outcome".as_slice(), bytes.as_slice()]);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A key's round: its namespace binds the key's id, so no message of one key counts for another.
fn round_info(
    setup: &Setup,
    key: &KeySetup,
) -> Result<Info<MinPk, PublicKey>, commonware_cryptography::bls12381::dkg::feldman_desmedt::Error>
{
    let mut namespace = setup.namespace.clone();
    namespace.extend_from_slice(format!("/key/{}", key.id).as_bytes());
    Info::new::<N3f1>(
        &namespace,
        u64::from(key.previous.is_some()),
        key.previous.as_ref().map(|(output, _)| output.clone()),
        Mode::NonZeroCounter,
        Reveal::V1,
        setup.dealers.clone(),
        setup.players.clone(),
    )
}

/// Runs one ceremony to its end over `sender`/`receiver` (one channel among the ceremony's
/// operators): the new shares and signatures, or an error naming the operator at fault.
pub async fn run<E, S, R>(
    mut context: E,
    mut sender: S,
    mut receiver: R,
    setup: Setup,
) -> Result<Outcome, CeremonyError>
where
    E: Clock + rand::CryptoRng,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let me = setup.me.public_key();
    if setup.keys.is_empty() {
        return Err(CeremonyError::Setup("no keys to make".into()));
    }
    let mut infos = Vec::with_capacity(setup.keys.len());
    for key in &setup.keys {
        infos.push(
            round_info(&setup, key)
                .map_err(|err| CeremonyError::Setup(format!("key {}: {err}", key.id)))?,
        );
    }
    let players_n = NonZeroU32::new(setup.players.len() as u32)
        .ok_or_else(|| CeremonyError::Setup("no players".into()))?;
    let bounds = Bounds {
        keys: setup.keys.len(),
        players: players_n,
    };
    let mut state = State {
        me: me.clone(),
        names: setup.names.clone(),
        dealers: setup.dealers.clone(),
        players: setup.players.clone(),
        ids: setup.keys.iter().map(|k| k.id).collect(),
        logs: infos.iter().map(|i| Logs::new(i.clone())).collect(),
        infos,
        signing_root: setup.signing_root,
        dealing: None,
        commitments: Vec::new(),
        private: BTreeMap::new(),
        acked: BTreeSet::new(),
        my_logs: None,
        playing: None,
        my_acks: BTreeMap::new(),
        logged: BTreeSet::new(),
        result: None,
        done: BTreeMap::new(),
        confirmed: BTreeSet::new(),
    };
    if state.is_player(&me) {
        let players: Result<Vec<_>, _> = state
            .infos
            .iter()
            .map(|info| Player::new(info.clone(), setup.me.clone()))
            .collect();
        state.playing = Some(players.map_err(|err| CeremonyError::Setup(err.to_string()))?);
    }
    if state.is_dealer(&me) {
        let mut dealers = Vec::with_capacity(setup.keys.len());
        for (info, key) in state.infos.iter().zip(&setup.keys) {
            let share = key.previous.as_ref().and_then(|(_, share)| share.clone());
            let (dealer, commitment, private) =
                Dealer::start::<N3f1>(&mut context, info.clone(), setup.me.clone(), share)
                    .map_err(|err| CeremonyError::Setup(format!("key {}: {err}", key.id)))?;
            dealers.push(dealer);
            state.commitments.push(commitment);
            for (player, mut share) in private {
                if let Some(Misbehavior::CorruptDealingTo(victim)) = &setup.misbehave
                    && *victim == player
                {
                    share = DealerPrivMsg::new(Scalar::random(&mut context));
                }
                state.private.entry(player).or_default().push(share);
            }
        }
        state.dealing = Some(dealers);
        // This operator's own dealing, delivered to itself.
        if let Some(shares) = state.private.get(&me).cloned() {
            let commitments = state.commitments.clone();
            if let Some(Wire::Acks(acks)) = state.on_dealing(&me, commitments, shares)? {
                state.on_acks(&me, acks)?;
            }
        }
    }
    let participants = state.participants();
    let peers: Vec<PublicKey> = participants.iter().filter(|p| **p != me).cloned().collect();
    info!(
        dealers = state.dealers.len(),
        players = state.players.len(),
        keys = state.ids.len(),
        "ceremony started; dealing to every player"
    );

    let deadline = context.current() + setup.timeout;
    let mut next_send = context.current();
    let outcome = loop {
        // Whatever this operator owes a peer that has not shown it has it, again.
        if context.current() >= next_send {
            next_send = context.current() + setup.resend;
            for peer in &peers {
                let mut owed: Vec<Wire> = Vec::new();
                if state.dealing.is_some()
                    && !state.acked.contains(peer)
                    && let Some(shares) = state.private.get(peer)
                {
                    owed.push(Wire::Dealing {
                        commitments: state.commitments.clone(),
                        shares: shares.clone(),
                    });
                }
                if !state.logged.contains(peer)
                    && let Some(acks) = state.my_acks.get(peer)
                {
                    owed.push(acks.clone());
                }
                if !state.done.contains_key(peer) {
                    if let Some(logs) = &state.my_logs {
                        owed.push(Wire::Logs(logs.clone()));
                    }
                    if let Some(result) = &state.result {
                        owed.push(result.message.clone());
                    }
                }
                for message in owed {
                    sender.send(Recipients::One(peer.clone()), message.encode(), false);
                }
            }
        }
        // The logs of this operator count for itself as soon as they exist.
        if let Some(logs) = state.my_logs.clone()
            && !state.logged.contains(&me)
            && let Err(err) = state.on_logs(&me, logs)
        {
            break Err(err);
        }
        let step = state
            .compute(&mut context)
            .and_then(|_| state.check_confirmations())
            .and_then(|_| state.finish());
        match step {
            Ok(Some(outcome)) => break Ok(outcome),
            Ok(None) => {}
            Err(err) => break Err(err),
        }
        if context.current() >= deadline {
            let (step, missing) = state.waiting_on();
            break Err(CeremonyError::Timeout {
                step,
                missing,
                after: setup.timeout,
            });
        }

        let wake = next_send.min(deadline);
        let received = select! {
            received = receiver.recv() => Some(received),
            _ = context.sleep_until(wake) => None,
        };
        let Some(received) = received else {
            continue;
        };
        let Ok((from, bytes)) = received else {
            break Err(CeremonyError::Network);
        };
        if from == me || !participants.contains(&from) {
            continue;
        }
        let message = match Wire::decode_cfg(bytes, &bounds) {
            Ok(message) => message,
            Err(err) => {
                break Err(CeremonyError::Malformed {
                    operator: state.named(&from),
                    reason: err.to_string(),
                });
            }
        };
        let handled = match message {
            Wire::Dealing {
                commitments,
                shares,
            } => match state.on_dealing(&from, commitments, shares) {
                Ok(Some(reply)) => {
                    sender.send(Recipients::One(from.clone()), reply.encode(), false);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(err) => Err(err),
            },
            Wire::Acks(acks) => state.on_acks(&from, acks),
            Wire::Logs(logs) => state.on_logs(&from, logs),
            Wire::Done { digest, partials } => {
                state.done.entry(from.clone()).or_insert((digest, partials));
                Ok(())
            }
            Wire::Abort { culprit, reason } => Err(CeremonyError::Aborted {
                by: state.named(&from),
                culprit: culprit.map(|c| state.named(&c)),
                reason,
            }),
        };
        if let Err(err) = handled {
            break Err(err);
        }
        // Something arrived: answer owed messages at once rather than at the next resend.
        next_send = context.current();
    };

    match &outcome {
        // Linger a little: peers that have not yet heard this operator's last word get it
        // again (a message sent while a connection was down is lost). A peer still missing it
        // keeps resending what it is owed, so it will not time out for want of it.
        Ok(_) => {
            if let Some(last) = state.result.as_ref().map(|r| r.message.clone()) {
                for _ in 0..3 {
                    sender.send(Recipients::Some(peers.clone()), last.encode(), false);
                    context.sleep(setup.resend).await;
                }
            }
        }
        // Nobody to blame, or the network is gone: nothing worth telling.
        Err(CeremonyError::Timeout { .. } | CeremonyError::Network | CeremonyError::Setup(_)) => {}
        Err(err) => {
            warn!(%err, "ceremony failed; telling every operator why before stopping");
            let abort = Wire::Abort {
                culprit: err.culprit().map(|c| c.key.clone()),
                reason: truncated(err.to_string(), wire::MAX_REASON_BYTES),
            };
            // The operator whose abort ended this one has ended too and needs no word.
            let ended = match err {
                CeremonyError::Aborted { by, .. } => Some(by.key.clone()),
                _ => None,
            };
            let until = deadline.max(context.current() + setup.resend * 3);
            tell_until_heard(
                &mut context,
                &mut sender,
                &mut receiver,
                &peers,
                ended,
                abort,
                until,
                setup.resend,
            )
            .await;
        }
    }
    outcome
}

/// Sends `message` to every peer until each has shown, by sending anything after this
/// operator stopped, that its connection is up (it then gets `message` at once), or until
/// `until`; then waits one more `resend` so the last sends leave before the process ends.
///
/// A fixed number of sends is not enough for an abort: a peer that has not connected yet
/// (it started late, or its machine is busy) would lose them all and wait out its whole
/// timeout, then blame whoever it heard nothing from instead of the operator at fault. Such a
/// peer keeps resending what it is owed, so its first message that gets through is answered.
/// Every operator that stops on an error sends an abort, so peers that stopped too are
/// heard from at once.
#[allow(clippy::too_many_arguments)]
async fn tell_until_heard<E, S, R>(
    context: &mut E,
    sender: &mut S,
    receiver: &mut R,
    peers: &[PublicKey],
    ended: Option<PublicKey>,
    message: Wire,
    until: SystemTime,
    resend: Duration,
) where
    E: Clock,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    let encoded = message.encode();
    let mut waiting: BTreeSet<PublicKey> = peers
        .iter()
        .filter(|p| Some(*p) != ended.as_ref())
        .cloned()
        .collect();
    let mut next_send = context.current();
    let mut last_sent = context.current();
    loop {
        let now = context.current();
        if now >= until || (waiting.is_empty() && now >= last_sent + resend) {
            return;
        }
        if !waiting.is_empty() && now >= next_send {
            next_send = now + resend;
            last_sent = now;
            let recipients = waiting.iter().cloned().collect();
            sender.send(Recipients::Some(recipients), encoded.clone(), false);
        }
        let wake = if waiting.is_empty() {
            last_sent + resend
        } else {
            next_send
        };
        select! {
            received = receiver.recv() => {
                let Ok((from, _)) = received else {
                    return;
                };
                // Answered once: answering every message would bounce between two operators
                // that both linger.
                if waiting.remove(&from) {
                    last_sent = context.current();
                    sender.send(Recipients::One(from), encoded.clone(), false);
                }
            },
            _ = context.sleep_until(wake.min(until)) => {},
        }
    }
}

/// `text`, cut to at most `max` bytes on a character boundary.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A set of operators from keys, for tests and callers that hold a list.
pub fn operator_set(keys: impl IntoIterator<Item = PublicKey>) -> Result<Set<PublicKey>, String> {
    keys.into_iter()
        .try_collect()
        .map_err(|_| "an operator appears twice".to_string())
}

#[cfg(test)]
mod tests;
