use super::Config;
use cohort_ingress::{
    DutySink, SlotClock,
    exits::{
        ExitPartial, ExitPartials, ExitProgress, MAX_EXIT_PARTIALS_PER_MESSAGE, Message,
        SignedVoluntaryExit,
    },
    keys::{self, Partial, Signature, ValidatorShare},
    signing,
};
use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::{PublicKey, bls12381::primitives::variant::PartialSignature};
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{
    Clock, ContextCell, Handle, Metrics, Spawner, spawn_cell, telemetry::metrics::Registered,
};
use commonware_utils::{Participant, channel::mpsc, ordered::Set};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};
use tracing::{debug, info, warn};

/// Slots between announcements of this operator's own exit partials that have not led to a
/// submitted exit yet: often enough that a restarted peer catches up within a minute.
const ANNOUNCE_EVERY_SLOTS: u64 = 2;
/// Submissions of one combined exit before this operator stops trying (a beacon node that
/// refuses it that often has a reason, which the log shows).
const MAX_SUBMIT_ATTEMPTS: u32 = 8;

/// One operator's announced partial for a validator's exit.
#[derive(Clone, Copy)]
struct Announced {
    epoch: u64,
    signature: Signature,
}

/// A combined exit and how its submission went.
struct Combined {
    exit: SignedVoluntaryExit,
    signers: Vec<u64>,
    submitted: bool,
    attempts: u32,
}

struct ExitMetrics {
    received: Registered<Counter>,
    invalid: Registered<Counter>,
    combined: Registered<Counter>,
    submitted: Registered<Counter>,
    intended: Registered<Gauge>,
}

pub struct Actor<E: Clock + Spawner + Metrics, K: DutySink, P: PublicKey> {
    context: ContextCell<E>,
    clock: SlotClock,
    sink: K,
    operators: Set<P>,
    shares: Arc<BTreeMap<u64, ValidatorShare>>,
    capella_fork_version: [u8; 4],
    genesis_validators_root: [u8; 32],
    submit_timeout: Duration,
    mailbox: mpsc::Receiver<Message>,
    /// This operator's share index.
    me: Option<u32>,
    /// Exits this operator's operator asked for: validator -> its own partial.
    intended: BTreeMap<u64, Announced>,
    /// Every operator's latest valid announcement per validator (this operator's included):
    /// one per (operator, validator), so what a peer can make this node hold is bounded by the
    /// cluster's shape.
    announced: BTreeMap<(u64, u32), Announced>,
    /// Exits combined: by (validator, epoch).
    combined: BTreeMap<(u64, u64), Combined>,
    next_announce: SystemTime,
    metrics: ExitMetrics,
}

impl<E: Clock + Spawner + Metrics, K: DutySink, P: PublicKey> Actor<E, K, P> {
    pub(super) fn new(context: E, config: Config<K, P>, mailbox: mpsc::Receiver<Message>) -> Self {
        let metrics = ExitMetrics {
            received: context.register(
                "partials_received",
                "valid exit partial signatures received from peers",
                Counter::default(),
            ),
            invalid: context.register(
                "partials_invalid",
                "exit partial signatures dropped: not from a cluster member, for a validator \
                 the cluster does not run, or not verifying under the sender's share",
                Counter::default(),
            ),
            combined: context.register(
                "combined",
                "voluntary exits combined from threshold-many partials and verified",
                Counter::default(),
            ),
            submitted: context.register(
                "submitted",
                "voluntary exits a beacon node took",
                Counter::default(),
            ),
            intended: context.register(
                "intended_held",
                "exits this operator's operator asked for that are not submitted yet",
                Gauge::default(),
            ),
        };
        Self {
            me: None,
            next_announce: context.current(),
            context: ContextCell::new(context),
            clock: config.clock,
            sink: config.sink,
            operators: config.operators,
            shares: config.shares,
            capella_fork_version: config.capella_fork_version,
            genesis_validators_root: config.genesis_validators_root,
            submit_timeout: config.submit_timeout,
            mailbox,
            intended: BTreeMap::new(),
            announced: BTreeMap::new(),
            combined: BTreeMap::new(),
            metrics,
        }
    }

    /// Starts the actor; `me` is this operator's share index.
    pub fn start<Tx, Rx>(mut self, me: u32, sender: Tx, receiver: Rx) -> Handle<()>
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        self.me = Some(me);
        spawn_cell!(self.context, self.run(me, sender, receiver))
    }

    fn root(&self, validator: u64, epoch: u64) -> [u8; 32] {
        signing::voluntary_exit_signing_root(
            validator,
            epoch,
            self.capella_fork_version,
            self.genesis_validators_root,
        )
    }

    async fn run<Tx, Rx>(mut self, me: u32, mut sender: Tx, mut receiver: Rx)
    where
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        loop {
            let announce_at = self.next_announce;
            // Priorities: the operator's requests, then peers' partials, then announcements.
            select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else {
                        debug!("exits mailbox closed; stopping");
                        return;
                    };
                    self.handle(me, message, &mut sender).await;
                },
                received = receiver.recv() => {
                    match received {
                        Ok((peer, bytes)) => {
                            if let Some(touched) = self.on_partials(peer, bytes) {
                                for validator in touched {
                                    self.try_combine(validator).await;
                                }
                            }
                        }
                        Err(err) => {
                            warn!(%err, "exit channel closed; the exits actor stops");
                            return;
                        }
                    }
                },
                _ = self.context.sleep_until(announce_at) => {
                    self.next_announce = self.context.current()
                        + self.clock.slot_duration * ANNOUNCE_EVERY_SLOTS as u32;
                    self.announce(&mut sender);
                    self.retry_submissions().await;
                },
            }
        }
    }

    async fn handle<Tx: Sender<PublicKey = P>>(
        &mut self,
        me: u32,
        message: Message,
        sender: &mut Tx,
    ) {
        match message {
            Message::Request {
                validator_index,
                epoch,
                answer,
            } => {
                let result = self.request(me, validator_index, epoch);
                if result.is_ok() {
                    self.announce(sender);
                    self.try_combine(validator_index).await;
                }
                let _ = answer.send(result.map(|epoch| self.progress(validator_index, epoch)));
            }
            Message::Status { answer } => {
                let _ = answer.send(self.status());
            }
        }
    }

    /// Signs the exit this operator's operator asked for and records it; returns its epoch.
    fn request(&mut self, me: u32, validator: u64, epoch: Option<u64>) -> Result<u64, String> {
        let Some(share) = self.shares.get(&validator) else {
            return Err(format!(
                "validator {validator} is not one of this cluster's validators"
            ));
        };
        if let Some(done) = self
            .combined
            .iter()
            .find(|((v, _), combined)| *v == validator && combined.submitted)
        {
            return Ok(done.0.1);
        }
        let current = self
            .clock
            .epoch_of(self.clock.current_slot(self.context.current()));
        // Without an epoch: the one most operators already signed (the latest on a tie), so
        // that operators asking at different times agree; else the current one.
        let epoch = match epoch {
            Some(epoch) => epoch,
            None => {
                let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
                for ((v, _), announced) in &self.announced {
                    if *v == validator {
                        *counts.entry(announced.epoch).or_default() += 1;
                    }
                }
                counts
                    .into_iter()
                    .max_by_key(|(epoch, count)| (*count, *epoch))
                    .map_or(current, |(epoch, _)| epoch)
            }
        };
        if epoch > current {
            return Err(format!(
                "epoch {epoch} has not started (current epoch {current}): beacon nodes refuse \
                 exits for future epochs"
            ));
        }
        if let Some(existing) = self.intended.get(&validator)
            && existing.epoch == epoch
        {
            return Ok(epoch);
        }
        let root = self.root(validator, epoch);
        let signature = keys::sign_partial(&share.share, &root).value;
        let announced = Announced { epoch, signature };
        self.intended.insert(validator, announced);
        self.announced.insert((validator, me), announced);
        self.metrics.intended.set(self.pending_intents() as i64);
        info!(
            validator,
            epoch,
            "exit requested by this operator: signed with its share and announced to the cluster; \
             it is submitted once threshold-many operators sign the same exit"
        );
        Ok(epoch)
    }

    fn pending_intents(&self) -> usize {
        self.intended
            .iter()
            .filter(|(validator, announced)| {
                !self
                    .combined
                    .get(&(**validator, announced.epoch))
                    .is_some_and(|combined| combined.submitted)
            })
            .count()
    }

    /// Checks and stores a peer's announcement; returns the validators whose exits may now
    /// combine, or `None` for a message dropped whole.
    fn on_partials(&mut self, peer: P, bytes: impl commonware_codec::Buf) -> Option<Vec<u64>> {
        let Some(operator) = self.operators.position(&peer) else {
            self.metrics.invalid.inc();
            warn!(%peer, "exit partials from outside the cluster; dropped");
            return None;
        };
        let operator = operator as u32;
        let message = match ExitPartials::decode(bytes) {
            Ok(message) => message,
            Err(err) => {
                self.metrics.invalid.inc();
                warn!(operator = operator + 1, %err, "malformed exit-partials message; dropped");
                return None;
            }
        };
        let current = self
            .clock
            .epoch_of(self.clock.current_slot(self.context.current()));
        let mut touched = Vec::new();
        for ExitPartial {
            validator_index,
            epoch,
            signature,
        } in message.0
        {
            let Some(share) = self.shares.get(&validator_index) else {
                self.metrics.invalid.inc();
                warn!(
                    operator = operator + 1,
                    validator = validator_index,
                    "exit partial for a validator the cluster does not run; dropped"
                );
                continue;
            };
            // A future epoch cannot be submitted; an honest operator never signs one.
            if epoch > current + 1 {
                self.metrics.invalid.inc();
                warn!(
                    operator = operator + 1,
                    validator = validator_index,
                    epoch,
                    "exit partial for a future epoch; dropped"
                );
                continue;
            }
            if self
                .announced
                .get(&(validator_index, operator))
                .is_some_and(|known| known.epoch == epoch && known.signature == signature)
            {
                continue;
            }
            let partial = Partial {
                index: Participant::new(operator),
                value: signature,
            };
            if !keys::verify_partial(&share.sharing, &self.root(validator_index, epoch), &partial) {
                self.metrics.invalid.inc();
                warn!(
                    operator = operator + 1,
                    validator = validator_index,
                    epoch,
                    "exit partial does not verify under the operator's share; dropped"
                );
                continue;
            }
            self.metrics.received.inc();
            debug!(
                operator = operator + 1,
                validator = validator_index,
                epoch,
                "exit partial received"
            );
            self.announced
                .insert((validator_index, operator), Announced { epoch, signature });
            touched.push(validator_index);
        }
        touched.dedup();
        Some(touched)
    }

    /// Combines `validator`'s exit if threshold-many operators announced the same epoch, and
    /// submits it.
    async fn try_combine(&mut self, validator: u64) {
        let Some(share) = self.shares.get(&validator).cloned() else {
            return;
        };
        let threshold = share.sharing.required() as usize;
        let mut by_epoch: BTreeMap<u64, Vec<Partial>> = BTreeMap::new();
        for ((v, operator), announced) in &self.announced {
            if *v == validator {
                by_epoch
                    .entry(announced.epoch)
                    .or_default()
                    .push(PartialSignature {
                        index: Participant::new(*operator),
                        value: announced.signature,
                    });
            }
        }
        for (epoch, partials) in by_epoch {
            if partials.len() < threshold || self.combined.contains_key(&(validator, epoch)) {
                continue;
            }
            let root = self.root(validator, epoch);
            // Every partial here verified on arrival; recovery checks the result again.
            let (result, bad) = keys::recover(&share.sharing, &root, &partials);
            let signature = match result {
                Ok(signature) => signature,
                Err(err) => {
                    warn!(validator, epoch, %err, bad = bad.len(), "exit partials did not combine; waiting for more");
                    continue;
                }
            };
            if !keys::verify(share.sharing.public(), &root, &signature) {
                warn!(
                    validator,
                    epoch, "combined exit does not verify under the validator's key; not submitted"
                );
                continue;
            }
            let signers: Vec<u64> = partials.iter().map(|p| p.index.get() as u64 + 1).collect();
            self.metrics.combined.inc();
            info!(
                validator,
                epoch,
                ?signers,
                "voluntary exit threshold-signed by the cluster; submitting it to the beacon nodes"
            );
            self.combined.insert(
                (validator, epoch),
                Combined {
                    exit: SignedVoluntaryExit {
                        validator_index: validator,
                        epoch,
                        signature,
                    },
                    signers,
                    submitted: false,
                    attempts: 0,
                },
            );
            self.submit(validator, epoch).await;
        }
    }

    async fn submit(&mut self, validator: u64, epoch: u64) {
        let Some(combined) = self.combined.get_mut(&(validator, epoch)) else {
            return;
        };
        if combined.submitted || combined.attempts >= MAX_SUBMIT_ATTEMPTS {
            return;
        }
        combined.attempts += 1;
        let attempt = combined.attempts;
        let exit = combined.exit.clone();
        let call = self.sink.submit_voluntary_exit(exit);
        let timeout = self.context.sleep(self.submit_timeout);
        let result = select! {
            result = call => result.map_err(|err| err.to_string()),
            _ = timeout => Err("timed out".to_string()),
        };
        let Some(combined) = self.combined.get_mut(&(validator, epoch)) else {
            return;
        };
        match result {
            Ok(()) => {
                combined.submitted = true;
                self.metrics.submitted.inc();
                info!(
                    validator,
                    epoch, "voluntary exit submitted to the beacon nodes"
                );
            }
            Err(err) if attempt >= MAX_SUBMIT_ATTEMPTS => warn!(
                validator,
                epoch,
                %err,
                attempts = attempt,
                "no beacon node took the voluntary exit; giving up (request it again to retry)"
            ),
            Err(err) => warn!(
                validator,
                epoch,
                %err,
                "no beacon node took the voluntary exit; trying again in two slots"
            ),
        }
        self.metrics.intended.set(self.pending_intents() as i64);
    }

    async fn retry_submissions(&mut self) {
        let due: Vec<(u64, u64)> = self
            .combined
            .iter()
            .filter(|(_, combined)| !combined.submitted && combined.attempts < MAX_SUBMIT_ATTEMPTS)
            .map(|(key, _)| *key)
            .collect();
        for (validator, epoch) in due {
            self.submit(validator, epoch).await;
        }
    }

    /// Announces this operator's own partials whose exits are not submitted yet.
    fn announce<Tx: Sender<PublicKey = P>>(&self, sender: &mut Tx) {
        let partials: Vec<ExitPartial> = self
            .intended
            .iter()
            .filter(|(validator, announced)| {
                !self
                    .combined
                    .get(&(**validator, announced.epoch))
                    .is_some_and(|combined| combined.submitted)
            })
            .map(|(validator, announced)| ExitPartial {
                validator_index: *validator,
                epoch: announced.epoch,
                signature: announced.signature,
            })
            .collect();
        for chunk in partials.chunks(MAX_EXIT_PARTIALS_PER_MESSAGE) {
            let message = ExitPartials(chunk.to_vec());
            let _ = sender.send(Recipients::All, message.encode(), false);
        }
    }

    fn progress(&self, validator: u64, epoch: u64) -> ExitProgress {
        let threshold = self
            .shares
            .get(&validator)
            .map_or(0, |share| share.sharing.required() as usize);
        let combined = self.combined.get(&(validator, epoch));
        let signers = match combined {
            Some(combined) => combined.signers.clone(),
            None => self
                .announced
                .iter()
                .filter(|((v, _), announced)| *v == validator && announced.epoch == epoch)
                .map(|((_, operator), _)| *operator as u64 + 1)
                .collect(),
        };
        ExitProgress {
            validator_index: validator,
            epoch,
            intended_here: self
                .intended
                .get(&validator)
                .is_some_and(|announced| announced.epoch == epoch),
            signers,
            threshold,
            signed: combined.map(|combined| combined.exit.clone()),
            submitted: combined.is_some_and(|combined| combined.submitted),
        }
    }

    fn status(&self) -> Vec<ExitProgress> {
        let mut keys: Vec<(u64, u64)> = self
            .announced
            .iter()
            .map(|((validator, _), announced)| (*validator, announced.epoch))
            .collect();
        keys.extend(self.combined.keys().copied());
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .map(|(validator, epoch)| self.progress(validator, epoch))
            .collect()
    }
}
