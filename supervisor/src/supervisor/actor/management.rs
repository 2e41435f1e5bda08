//! The management API: challenge tokens, deployments (blue-green, or in place for a
//! performer bound to a fixed port), listing and removal.

use super::*;

impl Actor {
    pub(super) fn check_auth(&mut self, auth: Option<&AuthSignature>) -> Result<(), Status> {
        if !self.config.auth_enabled {
            return match auth {
                Some(_) => Err(Status::unimplemented(
                    "authentication is not enabled on this executor",
                )),
                None => Ok(()),
            };
        }
        let Some(auth) = auth else {
            return Err(Status::unauthenticated(
                "authentication is enabled: call GetChallengeToken and sign it",
            ));
        };
        let now = Instant::now();
        match self.tokens.remove(&auth.challenge_token) {
            Some(expiry) if expiry > now => {}
            _ => {
                return Err(Status::unauthenticated(
                    "unknown, used or expired challenge token",
                ));
            }
        }
        if !self
            .config
            .operator_key
            .challenge_matches(&auth.challenge_token, &auth.signature)
        {
            return Err(Status::unauthenticated(
                "the challenge signature is not the operator's",
            ));
        }
        Ok(())
    }

    pub(super) fn challenge_token(
        &mut self,
        operator_address: &str,
    ) -> Result<GetChallengeTokenResponse, Status> {
        if !self.config.auth_enabled {
            return Err(Status::unimplemented(
                "authentication is not enabled on this executor",
            ));
        }
        if operator_address.is_empty() {
            return Err(Status::invalid_argument("operator_address is empty"));
        }
        if parse_address(operator_address).as_deref() != Some(self.config.operator_address.as_str())
        {
            return Err(Status::permission_denied(format!(
                "{operator_address} is not this executor's operator"
            )));
        }
        let now = Instant::now();
        self.tokens.retain(|_, expiry| *expiry > now);
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|err| Status::internal(format!("no OS randomness: {err}")))?;
        let token = hex::encode(keccak256(random));
        self.tokens.insert(token.clone(), now + TOKEN_LIFETIME);
        let expires_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + TOKEN_LIFETIME.as_secs();
        Ok(GetChallengeTokenResponse {
            challenge_token: token,
            expires_at: expires_at as i64,
        })
    }

    /// Checks a deploy request and starts preparing its artifact; the reply waits in the
    /// deployment's record until its outcome. A refusal is answered at once.
    pub(super) fn begin_deploy(
        &mut self,
        request: DeployArtifactRequest,
        reply: Option<Reply<DeployArtifactResponse>>,
    ) {
        let avs = request.avs_address.clone();
        let Err(status) = self.check_deploy(request) else {
            if let Some(state) = parse_address(&avs).and_then(|avs| self.avs.get_mut(&avs))
                && let Some(deploying) = &mut state.deploying
            {
                deploying.reply = reply;
            }
            return;
        };
        warn!(avs_address = %avs, error = status.message(), "deployment refused");
        self.metrics
            .deployments
            .get_or_create(&crate::metrics::OutcomeLabel {
                outcome: "refused".into(),
            })
            .inc();
        if let Some(reply) = reply {
            let _ = reply.send(Err(status));
        }
    }

    /// The checks of [`Self::begin_deploy`]; on success the deployment is recorded (without
    /// its reply) and its artifact is being prepared.
    pub(super) fn check_deploy(&mut self, request: DeployArtifactRequest) -> Result<(), Status> {
        let Some(avs) = parse_address(&request.avs_address) else {
            return Err(Status::invalid_argument(format!(
                "avs_address `{}` is not 0x + 40 hex",
                request.avs_address
            )));
        };
        let Some(state) = self.avs.get_mut(&avs) else {
            return Err(Status::not_found(format!(
                "AVS {avs} is not configured on this executor"
            )));
        };
        if let Some(deploying) = &state.deploying {
            return Err(Status::already_exists(format!(
                "deployment {} for AVS {avs} is in progress",
                deploying.deployment_id
            )));
        }
        artifact::check_name(&request.registry_url).map_err(Status::invalid_argument)?;
        let digest_hex =
            artifact::parse_digest(&request.digest).map_err(Status::invalid_argument)?;
        let mut env = Vec::new();
        for (i, entry) in request.env.iter().enumerate() {
            if entry.name.is_empty() {
                return Err(Status::invalid_argument(format!("env[{i}].name is empty")));
            }
            if entry.kubernetes_env.is_some() {
                return Err(Status::invalid_argument(format!(
                    "env[{i}] ({}): kubernetes_env is not supported by a process executor",
                    entry.name
                )));
            }
            let value = if entry.value_from_env.is_empty() {
                entry.value.clone()
            } else {
                std::env::var(&entry.value_from_env).map_err(|_| {
                    Status::failed_precondition(format!(
                        "env[{i}] ({}): the executor has no variable {}",
                        entry.name, entry.value_from_env
                    ))
                })?
            };
            env.push((entry.name.clone(), value));
        }
        let deployment_id = format!("deployment-{}", random_hex(8));
        let performer_id = format!("performer-{}", random_hex(8));
        info!(
            avs_address = %avs,
            deployment_id,
            performer_id,
            registry_url = request.registry_url,
            digest = request.digest,
            "deployment started"
        );
        state.deploying = Some(Deploying {
            deployment_id,
            performer_id,
            registry_url: request.registry_url.clone(),
            digest: request.digest.clone(),
            env,
            reply: None,
            in_place: None,
        });
        let artifacts = self.config.artifacts_dir.clone();
        let store = self.config.data_dir.join("artifacts");
        let events = self.events_tx.clone();
        let name = request.registry_url;
        tokio::spawn(async move {
            let result = tokio::task::spawn_blocking(move || {
                artifact::prepare(&artifacts, &store, &name, &digest_hex)
            })
            .await;
            let result = match result {
                Ok(Ok(path)) => Ok(path),
                Ok(Err(err @ artifact::ArtifactError::Missing(_))) => {
                    Err((Code::NotFound, err.to_string()))
                }
                Ok(Err(err @ artifact::ArtifactError::Digest { .. })) => {
                    Err((Code::FailedPrecondition, err.to_string()))
                }
                Ok(Err(err)) => Err((Code::FailedPrecondition, err.to_string())),
                Err(err) => Err((Code::Internal, format!("artifact check failed: {err}"))),
            };
            let _ = events.send(Event::Prepared { avs, result });
        });
        Ok(())
    }

    pub(super) fn prepared(&mut self, avs: String, result: Result<PathBuf, (Code, String)>) {
        let Some(state) = self.avs.get_mut(&avs) else {
            return;
        };
        let Some(deploying) = &mut state.deploying else {
            return;
        };
        let path = match result {
            Ok(path) => path,
            Err((code, message)) => {
                self.finish_deploy(&avs, Err(Status::new(code, message)));
                return;
            }
        };
        let record = PerformerRecord {
            performer_id: deploying.performer_id.clone(),
            avs: avs.clone(),
            registry_url: deploying.registry_url.clone(),
            digest: deploying.digest.clone(),
            env: deploying.env.clone(),
            deployment_id: deploying.deployment_id.clone(),
            executable: path.to_string_lossy().into_owned(),
        };
        let id = record.performer_id.clone();
        // A performer bound to a fixed port cannot start beside the one serving: that one
        // drains and stops first, and the new one starts when it is gone (see `forget`).
        let previous =
            state
                .config
                .fixed_port
                .zip(state.current.clone())
                .and_then(|(port, previous)| {
                    let record = self.performers.get(&previous)?.record.clone();
                    Some((port, previous, record))
                });
        if let Some((port, previous, previous_record)) = previous {
            info!(
                avs_address = %avs,
                deployment_id = deploying.deployment_id,
                performer_id = id,
                previous,
                port,
                "the AVS's performer binds a fixed port: replacing it in place; tasks wait for \
                 the new one"
            );
            deploying.in_place = Some(InPlace {
                previous: previous_record,
                port,
            });
            self.adopt(record, Role::Staged);
            self.retire(&previous);
            if !self.performers.contains_key(&previous) {
                self.launch_staged(&avs, &id);
            }
            return;
        }
        self.adopt(record, Role::Staged);
        self.launch_staged(&avs, &id);
    }

    /// Starts a deployment's new performer; a failure to start fails the deployment.
    pub(super) fn launch_staged(&mut self, avs: &str, performer_id: &str) {
        if !self.launch(performer_id) {
            self.forget(performer_id);
            self.finish_deploy(
                avs,
                Err(Status::failed_precondition(
                    "the performer could not be started",
                )),
            );
        }
    }

    /// Forgets a performer whose process is gone. A fixed-port swap waiting for the port it
    /// held goes on: the staged performer starts, or a failed deployment's previous one does.
    pub(super) fn forget(&mut self, performer_id: &str) {
        let Some(performer) = self.performers.remove(performer_id) else {
            return;
        };
        let avs = performer.record.avs;
        let Some(state) = self.avs.get_mut(&avs) else {
            return;
        };
        if self.stopping.is_some() {
            state.restore = None;
            return;
        }
        if let Some(deploying) = &state.deploying
            && deploying
                .in_place
                .as_ref()
                .is_some_and(|in_place| in_place.previous.performer_id == performer_id)
        {
            let staged = deploying.performer_id.clone();
            info!(avs_address = %avs, previous = performer_id, performer_id = staged, "the previous performer is gone; starting the new one on its port");
            self.launch_staged(&avs, &staged);
            return;
        }
        if state
            .restore
            .as_ref()
            .is_some_and(|(waiting_for, _)| waiting_for == performer_id)
            && let Some((_, record)) = state.restore.take()
        {
            self.restore(record);
        }
    }

    /// Starts a failed in-place deployment's previous performer again, as the AVS's current.
    pub(super) fn restore(&mut self, record: PerformerRecord) {
        let id = record.performer_id.clone();
        info!(avs_address = %record.avs, performer_id = id, "restarting the previous performer in place");
        self.adopt(record, Role::Restarting);
        if !self.launch(&id) {
            self.send_later(
                self.config.limits.restart_backoff,
                Event::RestartDue { performer_id: id },
            );
        }
    }

    /// Answers the AVS's deployment. On success the staged performer was promoted already.
    pub(super) fn finish_deploy(&mut self, avs: &str, result: Result<String, Status>) {
        let Some(state) = self.avs.get_mut(avs) else {
            return;
        };
        let Some(mut deploying) = state.deploying.take() else {
            return;
        };
        let mut result = result;
        if let Err(status) = &mut result
            && deploying.in_place.is_none()
            && self.stopping.is_none()
        {
            let note = match &state.current {
                Some(current) => format!("performer {current} keeps serving"),
                None => format!("AVS {avs} has no performer"),
            };
            *status = Status::new(status.code(), format!("{}; {note}", status.message()));
        }
        // A failed in-place deployment puts the previous performer back: at once if the port
        // is free, else once the process holding it is gone.
        if let Err(status) = &mut result
            && let Some(in_place) = deploying.in_place.take()
            && self.stopping.is_none()
        {
            let previous_id = in_place.previous.performer_id.clone();
            let note = match self.performers.get_mut(&previous_id) {
                // Still draining (never signalled): it simply serves on.
                Some(previous)
                    if previous.role == Role::Draining && previous.instance.is_some() =>
                {
                    previous.role = Role::InService;
                    format!("performer {previous_id} keeps serving")
                }
                Some(_) => {
                    state.restore = Some((previous_id.clone(), in_place.previous));
                    format!(
                        "performer {previous_id} restarts on port {} once it has stopped",
                        in_place.port
                    )
                }
                None => {
                    let staged_running = self
                        .performers
                        .get(&deploying.performer_id)
                        .is_some_and(|p| p.instance.is_some());
                    if staged_running {
                        state.restore = Some((deploying.performer_id.clone(), in_place.previous));
                    } else {
                        state.restore = None;
                        self.restore(in_place.previous);
                    }
                    format!(
                        "the previous performer {previous_id} restarts in place on port {}",
                        in_place.port
                    )
                }
            };
            *status = Status::new(status.code(), format!("{}; {note}", status.message()));
        }
        let (outcome, message) = match &result {
            Ok(message) => ("success", message.clone()),
            Err(status) => ("failed", status.message().to_string()),
        };
        self.metrics
            .deployments
            .get_or_create(&crate::metrics::OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        if result.is_err() {
            warn!(avs_address = %avs, deployment_id = deploying.deployment_id, message, "deployment failed");
            // The staged performer, if it started, goes.
            if let Some(performer) = self.performers.get_mut(&deploying.performer_id)
                && performer.role == Role::Staged
            {
                performer.role = Role::Draining;
                self.stop_performer(&deploying.performer_id);
            }
        } else {
            info!(avs_address = %avs, deployment_id = deploying.deployment_id, message, "deployment succeeded");
        }
        let record = Record::Deployment {
            deployment_id: deploying.deployment_id.clone(),
            avs: avs.to_string(),
            performer_id: deploying.performer_id.clone(),
            digest: deploying.digest.clone(),
            outcome: outcome.into(),
            message: message.clone(),
        };
        let serving = self
            .performers
            .get(&deploying.performer_id)
            .filter(|_| result.is_ok())
            .map(|p| Record::Serving(p.record.clone()));
        let store = self.store.clone();
        let reply = deploying.reply.take();
        let deployment_id = deploying.deployment_id.clone();
        tokio::spawn(async move {
            // The promotion is durable before the deployer hears of it.
            let mut stored = Ok(());
            if let Some(serving) = serving {
                stored = store.append(&serving).await;
            }
            if stored.is_ok() {
                stored = store.append(&record).await;
            }
            if let Some(reply) = reply {
                let answer = match (result, stored) {
                    (Ok(message), Ok(())) => Ok(DeployArtifactResponse {
                        success: true,
                        message,
                        deployment_id,
                    }),
                    (Ok(_), Err(err)) => Err(Status::internal(err)),
                    (Err(status), _) => Err(Status::new(
                        status.code(),
                        format!("deployment {deployment_id} failed: {}", status.message()),
                    )),
                };
                let _ = reply.send(answer);
            }
        });
    }

    /// The staged performer answered: it serves from now on, and the one before drains.
    pub(super) fn promote(&mut self, performer_id: &str) {
        let Some(performer) = self.performers.get_mut(performer_id) else {
            return;
        };
        performer.role = Role::InService;
        let avs = performer.record.avs.clone();
        let Some(state) = self.avs.get_mut(&avs) else {
            return;
        };
        let previous = state.current.replace(performer_id.to_string());
        let mut message = format!("performer {performer_id} is serving AVS {avs}");
        let in_place = state
            .deploying
            .as_ref()
            .and_then(|deploying| deploying.in_place.as_ref())
            .map(|in_place| (in_place.previous.performer_id.clone(), in_place.port));
        if let Some((replaced, port)) = in_place {
            message.push_str(&format!(
                "; it replaced performer {replaced} in place (both bind port {port}, so they \
                 cannot run side by side: {replaced} drained and stopped first)"
            ));
        } else if let Some(previous) = previous {
            message.push_str(&format!("; performer {previous} drains and stops"));
            self.retire(&previous);
        }
        self.finish_deploy(&avs, Ok(message));
        self.pump(&avs);
    }

    /// Takes a performer out of service: it finishes its in-flight tasks, then stops.
    pub(super) fn retire(&mut self, performer_id: &str) {
        let drain_timeout = self.config.limits.drain_timeout;
        let Some(performer) = self.performers.get_mut(performer_id) else {
            return;
        };
        if matches!(performer.role, Role::Stopping | Role::Draining) {
            return;
        }
        performer.role = Role::Draining;
        if performer.in_flight == 0 || performer.instance.is_none() {
            self.stop_performer(performer_id);
        } else {
            info!(
                performer_id,
                in_flight = performer.in_flight,
                "draining performer"
            );
            self.send_later(
                drain_timeout,
                Event::DrainDeadline {
                    performer_id: performer_id.to_string(),
                },
            );
        }
    }

    pub(super) fn list(&self, avs_filter: &str) -> ListPerformersResponse {
        let filter = avs_filter.to_ascii_lowercase();
        let performers = self
            .performers
            .values()
            .filter(|p| filter.is_empty() || p.record.avs == filter)
            .map(|p| Performer {
                performer_id: p.record.performer_id.clone(),
                avs_address: p.record.avs.clone(),
                status: p.role.status().to_string(),
                artifact_registry: p.record.registry_url.clone(),
                artifact_digest: p.record.digest.clone(),
                resource_healthy: p.instance.is_some(),
                application_healthy: p.app_healthy,
                last_health_check: p.last_health.map(rfc3339).unwrap_or_default(),
                container_id: p
                    .instance
                    .as_ref()
                    .map(|i| i.pid.to_string())
                    .unwrap_or_default(),
                artifact_tag: p.record.deployment_id.clone(),
            })
            .collect();
        ListPerformersResponse { performers }
    }

    pub(super) fn remove(&mut self, performer_id: &str) -> Result<RemovePerformerResponse, Status> {
        let Some(performer) = self.performers.get(performer_id) else {
            return Err(Status::not_found(format!(
                "performer {performer_id} not found"
            )));
        };
        let avs = performer.record.avs.clone();
        let role = performer.role;
        if role == Role::Staged {
            self.finish_deploy(
                &avs,
                Err(Status::aborted(format!(
                    "performer {performer_id} was removed while staged"
                ))),
            );
            return Ok(RemovePerformerResponse {
                success: true,
                message: format!("staged performer {performer_id} removed; its deployment failed"),
            });
        }
        let mut message = format!("performer {performer_id} removed");
        if let Some(state) = self.avs.get_mut(&avs)
            && state.current.as_deref() == Some(performer_id)
        {
            state.current = None;
            message.push_str(&format!("; AVS {avs} has no performer now"));
            let store = self.store.clone();
            let record = Record::Removed {
                avs: avs.clone(),
                performer_id: performer_id.to_string(),
            };
            tokio::spawn(async move {
                if let Err(err) = store.append(&record).await {
                    error!(err, "could not record a removal");
                }
            });
        }
        info!(performer_id, avs_address = %avs, "performer removed");
        if role == Role::Failed
            || self
                .performers
                .get(performer_id)
                .is_some_and(|p| p.instance.is_none())
        {
            self.forget(performer_id);
        } else {
            self.retire(performer_id);
        }
        Ok(RemovePerformerResponse {
            success: true,
            message,
        })
    }
}
