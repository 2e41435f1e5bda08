//! One operator's state in a ceremony: what it dealt, acknowledged, logged and confirmed,
//! and the handler for each message kind. The run loop in the crate root feeds it.

use super::*;

pub(super) struct State {
    pub(super) me: PublicKey,
    pub(super) names: BTreeMap<PublicKey, String>,
    pub(super) dealers: Set<PublicKey>,
    pub(super) players: Set<PublicKey>,
    pub(super) infos: Vec<Info<MinPk, PublicKey>>,
    pub(super) ids: Vec<u64>,
    pub(super) signing_root: SigningRoot,
    // As a dealer.
    pub(super) dealing: Option<Vec<Dealer<MinPk, ed25519::PrivateKey>>>,
    pub(super) commitments:
        Vec<commonware_cryptography::bls12381::dkg::feldman_desmedt::DealerPubMsg<MinPk>>,
    pub(super) private: BTreeMap<PublicKey, Vec<DealerPrivMsg>>,
    pub(super) acked: BTreeSet<PublicKey>,
    pub(super) my_logs: Option<Vec<SignedDealerLog<MinPk, PublicKey>>>,
    // As a player.
    pub(super) playing: Option<Vec<Player<MinPk, ed25519::PrivateKey>>>,
    pub(super) my_acks: BTreeMap<PublicKey, Wire>,
    // Everyone.
    pub(super) logs: Vec<Logs<MinPk, PublicKey, N3f1>>,
    pub(super) logged: BTreeSet<PublicKey>,
    pub(super) result: Option<Computed>,
    pub(super) done: BTreeMap<PublicKey, ([u8; 32], Vec<PartialSignature<MinPk>>)>,
    pub(super) confirmed: BTreeSet<PublicKey>,
}

pub(super) struct Computed {
    pub(super) outputs: Vec<Output<MinPk, PublicKey>>,
    pub(super) shares: Vec<Option<Share>>,
    pub(super) roots: Vec<[u8; 32]>,
    pub(super) digest: [u8; 32],
    pub(super) message: Wire,
}

impl State {
    pub(super) fn named(&self, key: &PublicKey) -> Named {
        Named {
            key: key.clone(),
            name: self
                .names
                .get(key)
                .cloned()
                .unwrap_or_else(|| key.to_string()),
        }
    }

    pub(super) fn participants(&self) -> Vec<PublicKey> {
        let all: BTreeSet<PublicKey> = self
            .dealers
            .iter()
            .chain(self.players.iter())
            .cloned()
            .collect();
        all.into_iter().collect()
    }

    pub(super) fn is_player(&self, key: &PublicKey) -> bool {
        self.players.position(key).is_some()
    }

    pub(super) fn is_dealer(&self, key: &PublicKey) -> bool {
        self.dealers.position(key).is_some()
    }

    /// A player's acceptance of one dealer's dealings; its acknowledgements go back.
    pub(super) fn on_dealing(
        &mut self,
        from: &PublicKey,
        commitments: Vec<
            commonware_cryptography::bls12381::dkg::feldman_desmedt::DealerPubMsg<MinPk>,
        >,
        shares: Vec<DealerPrivMsg>,
    ) -> Result<Option<Wire>, CeremonyError> {
        if !self.is_dealer(from) {
            return Ok(None);
        }
        if let Some(acks) = self.my_acks.get(from) {
            return Ok(Some(acks.clone()));
        }
        let Some(players) = self.playing.as_mut() else {
            return Ok(None);
        };
        let mut acks = Vec::with_capacity(players.len());
        let mut failed: Option<(usize, String)> = None;
        for (k, ((player, commitment), share)) in
            players.iter_mut().zip(commitments).zip(shares).enumerate()
        {
            match player.dealer_message::<N3f1>(from.clone(), commitment, share) {
                Ok(Some(ack)) => acks.push(ack),
                Ok(None) => {
                    failed = Some((k, "a second dealing".into()));
                    break;
                }
                Err(err) => {
                    failed = Some((k, err.to_string()));
                    break;
                }
            }
        }
        if let Some((k, reason)) = failed {
            return Err(CeremonyError::BadDealing {
                dealer: self.named(from),
                key: self.ids[k],
                reason,
            });
        }
        let message = Wire::Acks(acks);
        self.my_acks.insert(from.clone(), message.clone());
        Ok(Some(message))
    }

    /// A dealer's receipt of one player's acknowledgements; with all of them it signs its logs.
    pub(super) fn on_acks(
        &mut self,
        from: &PublicKey,
        acks: Vec<commonware_cryptography::bls12381::dkg::feldman_desmedt::PlayerAck<PublicKey>>,
    ) -> Result<(), CeremonyError> {
        if !self.is_player(from) || self.acked.contains(from) {
            return Ok(());
        }
        let Some(dealers) = self.dealing.as_mut() else {
            return Ok(());
        };
        let mut failed: Option<(usize, String)> = None;
        for (k, (dealer, ack)) in dealers.iter_mut().zip(acks).enumerate() {
            if let Err(err) = dealer.receive_player_ack(from.clone(), ack) {
                failed = Some((k, err.to_string()));
                break;
            }
        }
        if let Some((k, reason)) = failed {
            return Err(CeremonyError::BadAck {
                player: self.named(from),
                key: self.ids[k],
                reason,
            });
        }
        self.acked.insert(from.clone());
        if self.acked.len() == self.players.len()
            && let Some(dealers) = self.dealing.take()
        {
            let logs: Vec<_> = dealers.into_iter().map(|d| d.finalize::<N3f1>()).collect();
            self.my_logs = Some(logs);
        }
        Ok(())
    }

    pub(super) fn on_logs(
        &mut self,
        from: &PublicKey,
        logs: Vec<SignedDealerLog<MinPk, PublicKey>>,
    ) -> Result<(), CeremonyError> {
        if !self.is_dealer(from) || self.logged.contains(from) {
            return Ok(());
        }
        let mut checked = Vec::with_capacity(logs.len());
        for (k, signed) in logs.into_iter().enumerate() {
            let bad = |reason: String| CeremonyError::BadLog {
                dealer: self.named(from),
                reason: format!("key {}: {reason}", self.ids[k]),
            };
            let Some((dealer, log)) = signed.check(&self.infos[k]) else {
                return Err(bad("its signature does not verify for this round".into()));
            };
            if dealer != *from {
                return Err(bad("it is signed by another dealer".into()));
            }
            match log.summary() {
                DealerLogSummary::Ok { reveals, .. } if reveals.is_empty() => {}
                DealerLogSummary::Ok { reveals, .. } => {
                    let revealed: Vec<Named> = reveals.iter().map(|p| self.named(p)).collect();
                    return Err(bad(format!(
                        "it reveals the shares of {} (every player acknowledged, so no share \
                         needs revealing)",
                        list(&revealed)
                    )));
                }
                DealerLogSummary::TooManyReveals => {
                    return Err(bad("it withholds its results (too many reveals)".into()));
                }
            }
            checked.push(log);
        }
        for (k, log) in checked.into_iter().enumerate() {
            self.logs[k].record(from.clone(), log);
        }
        self.logged.insert(from.clone());
        Ok(())
    }

    /// With every dealer's log: this operator's shares, the public polynomials and its
    /// confirmation.
    pub(super) fn compute(&mut self, rng: &mut impl rand::CryptoRng) -> Result<(), CeremonyError> {
        if self.result.is_some() || self.logged.len() < self.dealers.len() {
            return Ok(());
        }
        let failure = |failure: Failure<PublicKey>, names: &dyn Fn(&PublicKey) -> Named| {
            let Failure::InsufficientLogs {
                required,
                found,
                faults,
                unavailable,
            } = failure;
            let faulty: Vec<String> = faults
                .iter_pairs()
                .map(|(dealer, reason)| format!("{} ({reason})", names(dealer)))
                .collect();
            let missing: Vec<String> = unavailable.iter().map(|d| names(d).name).collect();
            CeremonyError::Failed(format!(
                "{found} usable dealer logs of {required} needed; faulty: [{}]; unavailable: [{}]",
                faulty.join(", "),
                missing.join(", ")
            ))
        };
        let playing = self.playing.take();
        let names = |key: &PublicKey| self.named(key);
        let mut outputs = Vec::with_capacity(self.infos.len());
        let mut shares = Vec::with_capacity(self.infos.len());
        match playing {
            Some(players) => {
                for (player, logs) in players.into_iter().zip(self.logs.iter()) {
                    match player.finalize::<N3f1>(rng, logs.clone(), &Sequential) {
                        Ok((output, share)) => {
                            outputs.push(output);
                            shares.push(Some(share));
                        }
                        Err(FinalizeError::Failure(f)) => return Err(failure(f, &names)),
                        Err(FinalizeError::Error(err)) => {
                            return Err(CeremonyError::Failed(err.to_string()));
                        }
                    }
                }
            }
            None => {
                for logs in &self.logs {
                    let output =
                        commonware_cryptography::bls12381::dkg::feldman_desmedt::observe::<
                            MinPk,
                            PublicKey,
                            N3f1,
                        >(rng, logs.clone(), &Sequential)
                        .map_err(|f| failure(f, &names))?;
                    outputs.push(output);
                    shares.push(None);
                }
            }
        }
        let sharings: Vec<&Sharing<MinPk>> = outputs.iter().map(|o| o.public()).collect();
        let digest = outcome_digest(&self.players, &sharings);
        let roots: Vec<[u8; 32]> = sharings.iter().map(|s| (self.signing_root)(s)).collect();
        let partials: Vec<PartialSignature<MinPk>> = shares
            .iter()
            .zip(&roots)
            .filter_map(|(share, root)| {
                share
                    .as_ref()
                    .map(|share| cohort_ingress::keys::sign_partial(share, root))
            })
            .collect();
        if self.is_player(&self.me) {
            self.done
                .insert(self.me.clone(), (digest, partials.clone()));
        }
        info!(
            digest = %hex(&digest),
            "computed this operator's shares and the public polynomials; confirming"
        );
        self.result = Some(Computed {
            outputs,
            shares,
            roots,
            digest,
            message: Wire::Done { digest, partials },
        });
        Ok(())
    }

    /// Checks every confirmation received against this operator's outcome.
    pub(super) fn check_confirmations(&mut self) -> Result<(), CeremonyError> {
        let Some(result) = self.result.as_ref() else {
            return Ok(());
        };
        let pending: Vec<PublicKey> = self
            .done
            .keys()
            .filter(|k| !self.confirmed.contains(*k))
            .cloned()
            .collect();
        for from in pending {
            let (digest, partials) = &self.done[&from];
            if *digest != result.digest {
                return Err(CeremonyError::Mismatch {
                    operator: self.named(&from),
                });
            }
            if let Some(position) = self.players.position(&from) {
                let index = Participant::new(position as u32);
                if partials.len() != result.outputs.len() {
                    return Err(CeremonyError::Malformed {
                        operator: self.named(&from),
                        reason: format!(
                            "{} partial signatures for {} keys",
                            partials.len(),
                            result.outputs.len()
                        ),
                    });
                }
                for (k, partial) in partials.iter().enumerate() {
                    let sharing = result.outputs[k].public();
                    if partial.index != index
                        || !cohort_ingress::keys::verify_partial(sharing, &result.roots[k], partial)
                    {
                        return Err(CeremonyError::BadPartial {
                            operator: self.named(&from),
                            key: self.ids[k],
                        });
                    }
                }
            }
            self.confirmed.insert(from);
        }
        Ok(())
    }

    /// Every player confirmed: the combined signatures, each checked against its key.
    pub(super) fn finish(&self) -> Result<Option<Outcome>, CeremonyError> {
        let Some(result) = self.result.as_ref() else {
            return Ok(None);
        };
        if self.players.iter().any(|p| !self.confirmed.contains(p)) {
            return Ok(None);
        }
        let mut keys = Vec::with_capacity(result.outputs.len());
        for (k, output) in result.outputs.iter().enumerate() {
            let partials: Vec<PartialSignature<MinPk>> = self
                .players
                .iter()
                .map(|p| self.done[p].1[k].clone())
                .collect();
            let (signature, _) =
                cohort_ingress::keys::recover(output.public(), &result.roots[k], &partials);
            let signature = signature.map_err(|err| {
                CeremonyError::Failed(format!(
                    "key {}: the combined signature: {err}",
                    self.ids[k]
                ))
            })?;
            keys.push(KeyOutcome {
                id: self.ids[k],
                sharing: output.public().clone(),
                share: result.shares[k].clone(),
                signature,
                signing_root: result.roots[k],
            });
        }
        Ok(Some(Outcome {
            keys,
            players: self.players.clone(),
            digest: result.digest,
        }))
    }

    /// What to step on next when the deadline passes.
    pub(super) fn waiting_on(&self) -> (Step, Vec<Named>) {
        let missing = |of: &Set<PublicKey>, have: &dyn Fn(&PublicKey) -> bool| -> Vec<Named> {
            of.iter()
                .filter(|k| !have(k))
                .map(|k| self.named(k))
                .collect()
        };
        if self.playing.is_some() && self.result.is_none() {
            let dealt = missing(&self.dealers, &|k| self.my_acks.contains_key(k));
            if !dealt.is_empty() {
                return (Step::Dealing, dealt);
            }
        }
        if self.dealing.is_some() {
            let acked = missing(&self.players, &|k| self.acked.contains(k));
            if !acked.is_empty() {
                return (Step::Acknowledgement, acked);
            }
        }
        let logged = missing(&self.dealers, &|k| self.logged.contains(k));
        if !logged.is_empty() {
            return (Step::Log, logged);
        }
        (
            Step::Confirmation,
            missing(&self.players, &|k| self.confirmed.contains(k)),
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
