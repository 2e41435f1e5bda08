//! Performer processes: starting them, health checks, restarts with backoff, and stopping.
//!
//! Every event carries the instance's generation, so news about a process that has since been
//! replaced is ignored.

use super::*;

impl Actor {
    pub(super) fn adopt(&mut self, record: PerformerRecord, role: Role) {
        let id = record.performer_id.clone();
        let avs = record.avs.clone();
        if role != Role::Staged
            && let Some(state) = self.avs.get_mut(&avs)
        {
            state.current = Some(id.clone());
        }
        self.performers.insert(
            id,
            PerformerState {
                record,
                role,
                instance: None,
                restarts: 0,
                consecutive_failures: 0,
                app_healthy: false,
                last_health: None,
                healthy_since: None,
                in_flight: 0,
            },
        );
    }

    /// Starts a process for the performer; false if it could not start.
    pub(super) fn launch(&mut self, performer_id: &str) -> bool {
        let Some(performer) = self.performers.get(performer_id) else {
            return false;
        };
        let avs_config = self
            .avs
            .get(&performer.record.avs)
            .map(|s| s.config.clone());
        let Some(avs_config) = avs_config else {
            return false;
        };
        // The OS may hand the same free port to two performers started at once: never give
        // out one a running performer was given.
        let in_use: Vec<u16> = self
            .performers
            .values()
            .filter_map(|p| p.instance.as_ref().map(|instance| instance.port))
            .collect();
        let free_port = || {
            let mut port = process::free_port()?;
            for _ in 0..64 {
                if !in_use.contains(&port) {
                    break;
                }
                port = process::free_port()?;
            }
            Ok::<u16, std::io::Error>(port)
        };
        let port = match avs_config.fixed_port.map_or_else(free_port, Ok) {
            Ok(port) => port,
            Err(err) => {
                error!(performer_id, %err, "no free port for a performer");
                return false;
            }
        };
        let mut env: Vec<(String, String)> = avs_config.env.into_iter().collect();
        env.extend(performer.record.env.iter().cloned());
        let launch = Launch {
            executable: PathBuf::from(&performer.record.executable),
            args: avs_config.args,
            env,
            port,
            avs: performer.record.avs.clone(),
            performer_id: performer_id.to_string(),
            workdir: self.config.data_dir.join("performers").join(performer_id),
            dropped_lines: self
                .metrics
                .log_lines_dropped
                .get_or_create(&Metrics::avs(&performer.record.avs))
                .clone(),
        };
        let running = match process::spawn(&launch) {
            Ok(running) => running,
            Err(err) => {
                error!(performer_id, avs_address = %launch.avs, err, "performer did not start");
                return false;
            }
        };
        self.next_generation += 1;
        let generation = self.next_generation;
        info!(
            performer_id,
            avs_address = %launch.avs,
            pid = running.pid,
            port,
            role = performer.role.status(),
            "performer started"
        );
        let health = self.spawn_health(performer_id, generation, running.channel.clone());
        let events = self.events_tx.clone();
        let id = performer_id.to_string();
        let exited = running.exited;
        tokio::spawn(async move {
            let exit = exited.await.unwrap_or_else(|_| process::Exit {
                status: "monitor stopped".to_string(),
                address_in_use: false,
            });
            let _ = events.send(Event::Exited {
                performer_id: id,
                generation,
                exit,
            });
        });
        let Some(performer) = self.performers.get_mut(performer_id) else {
            return false;
        };
        performer.instance = Some(Instance {
            generation,
            port,
            pid: running.pid,
            channel: running.channel,
            stop: Some(running.stop),
            health,
            ready: false,
        });
        self.send_later(
            self.config.limits.stage_timeout,
            Event::StartDeadline {
                performer_id: performer_id.to_string(),
                generation,
            },
        );
        true
    }

    pub(super) fn spawn_health(
        &self,
        performer_id: &str,
        generation: u64,
        channel: tonic::transport::Channel,
    ) -> AbortHandle {
        let events = self.events_tx.clone();
        let id = performer_id.to_string();
        let interval = self.config.limits.health_interval;
        let timeout = self.config.limits.health_timeout;
        tokio::spawn(async move {
            let mut protocol = HealthProtocol::Standard;
            let mut wait = STARTUP_HEALTH_INTERVAL.min(interval);
            loop {
                tokio::time::sleep(wait).await;
                let result = process::check_health(&channel, timeout, &mut protocol).await;
                if result.is_ok() {
                    wait = interval;
                }
                let event = Event::Health {
                    performer_id: id.clone(),
                    generation,
                    result,
                };
                if events.send(event).is_err() {
                    return;
                }
            }
        })
        .abort_handle()
    }

    /// SIGTERM now, SIGKILL after the grace period; the performer is forgotten at its exit.
    pub(super) fn stop_performer(&mut self, performer_id: &str) {
        let grace = self.config.limits.stop_grace;
        let Some(performer) = self.performers.get_mut(performer_id) else {
            return;
        };
        if performer.role != Role::Restarting {
            performer.role = Role::Stopping;
        }
        performer.app_healthy = false;
        match &mut performer.instance {
            Some(instance) => {
                instance.health.abort();
                if let Some(stop) = instance.stop.take() {
                    info!(performer_id, pid = instance.pid, "stopping performer");
                    let _ = stop.send(grace);
                }
            }
            None => {
                if performer.role == Role::Stopping {
                    self.forget(performer_id);
                }
            }
        }
    }

    pub(super) fn on_health(
        &mut self,
        performer_id: String,
        generation: u64,
        result: Result<(), String>,
    ) {
        let failures = self.config.limits.health_failures;
        let Some(performer) = self.performers.get_mut(&performer_id) else {
            return;
        };
        let Some(instance) = &mut performer.instance else {
            return;
        };
        if instance.generation != generation || instance.stop.is_none() {
            return;
        }
        let avs = performer.record.avs.clone();
        match result {
            Ok(()) => {
                performer.consecutive_failures = 0;
                performer.app_healthy = true;
                performer.last_health = Some(SystemTime::now());
                let first = !instance.ready;
                instance.ready = true;
                let since = *performer.healthy_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= RESTART_FORGIVENESS {
                    performer.restarts = 0;
                }
                if first {
                    info!(performer_id, avs_address = %avs, "performer is healthy");
                    match performer.role {
                        Role::Staged => self.promote(&performer_id),
                        Role::Restarting => {
                            performer.role = Role::InService;
                            self.pump(&avs);
                        }
                        _ => {}
                    }
                }
            }
            Err(err) => {
                if !instance.ready {
                    // Still starting: the start deadline judges it.
                    return;
                }
                performer.consecutive_failures += 1;
                performer.app_healthy = false;
                performer.healthy_since = None;
                performer.last_health = Some(SystemTime::now());
                self.metrics
                    .health_failures
                    .get_or_create(&Metrics::avs(&avs))
                    .inc();
                warn!(
                    performer_id,
                    avs_address = %avs,
                    failures = performer.consecutive_failures,
                    err,
                    "performer health check failed"
                );
                if performer.consecutive_failures >= failures && performer.role == Role::InService {
                    warn!(performer_id, "performer unhealthy; restarting it");
                    performer.role = Role::Restarting;
                    self.stop_performer(&performer_id);
                }
            }
        }
    }

    pub(super) fn on_start_deadline(&mut self, performer_id: String, generation: u64) {
        let Some(performer) = self.performers.get_mut(&performer_id) else {
            return;
        };
        let Some(instance) = &performer.instance else {
            return;
        };
        if instance.generation != generation || instance.ready {
            return;
        }
        let avs = performer.record.avs.clone();
        match performer.role {
            Role::Staged => self.finish_deploy(
                &avs,
                Err(Status::deadline_exceeded(format!(
                    "performer {performer_id} did not turn healthy within {:?}",
                    self.config.limits.stage_timeout
                ))),
            ),
            Role::Restarting => {
                warn!(
                    performer_id,
                    "performer did not turn healthy after starting; restarting it"
                );
                self.stop_performer(&performer_id);
            }
            _ => {}
        }
    }

    pub(super) fn on_exit(&mut self, performer_id: String, generation: u64, exit: process::Exit) {
        let status = exit.status;
        let Some(performer) = self.performers.get_mut(&performer_id) else {
            return;
        };
        if performer
            .instance
            .as_ref()
            .is_none_or(|instance| instance.generation != generation)
        {
            return;
        }
        performer.instance = None;
        performer.app_healthy = false;
        performer.healthy_since = None;
        let avs = performer.record.avs.clone();
        info!(performer_id, avs_address = %avs, status, role = performer.role.status(), "performer exited");
        match performer.role {
            Role::Staged => {
                let in_place = self
                    .avs
                    .get(&avs)
                    .and_then(|state| state.deploying.as_ref())
                    .is_some_and(|deploying| deploying.in_place.is_some());
                let mut message =
                    format!("performer {performer_id} exited while staged ({status})");
                if exit.address_in_use && !in_place {
                    message.push_str(
                        "; it printed that its address is in use: it binds a port of its own \
                         instead of GRPC_PORT, so it cannot start beside the serving performer. \
                         Set `port` in this AVS's [[avs.performers]] entry to that port and \
                         deployments replace the performer in place",
                    );
                }
                self.finish_deploy(&avs, Err(Status::failed_precondition(message)));
            }
            Role::InService | Role::Restarting => {
                performer.role = Role::Restarting;
                performer.restarts += 1;
                self.metrics
                    .restarts
                    .get_or_create(&Metrics::avs(&avs))
                    .inc();
                if self.stopping.is_some() {
                    self.forget(&performer_id);
                    return;
                }
                if performer.restarts > self.config.limits.max_restarts {
                    error!(performer_id, avs_address = %avs, "performer restarted too often; marked failed");
                    performer.role = Role::Failed;
                    return;
                }
                let exponent = performer.restarts.saturating_sub(1).min(16);
                let backoff = self
                    .config
                    .limits
                    .restart_backoff
                    .saturating_mul(1 << exponent)
                    .min(self.config.limits.restart_backoff_max);
                warn!(performer_id, avs_address = %avs, ?backoff, restarts = performer.restarts, "restarting performer");
                self.send_later(
                    backoff,
                    Event::RestartDue {
                        performer_id: performer_id.clone(),
                    },
                );
            }
            Role::Draining | Role::Stopping | Role::Failed => {
                if performer.in_flight == 0 || performer.role != Role::Draining {
                    self.forget(&performer_id);
                }
            }
        }
    }

    pub(super) fn on_restart_due(&mut self, performer_id: String) {
        let due = self
            .performers
            .get(&performer_id)
            .is_some_and(|p| p.role == Role::Restarting && p.instance.is_none());
        if due && self.stopping.is_none() && !self.launch(&performer_id) {
            // Could not even start: count it as a failed start.
            if let Some(performer) = self.performers.get_mut(&performer_id) {
                performer.restarts += 1;
                if performer.restarts > self.config.limits.max_restarts {
                    performer.role = Role::Failed;
                } else {
                    let backoff = self.config.limits.restart_backoff_max;
                    self.send_later(backoff, Event::RestartDue { performer_id });
                }
            }
        }
    }
}
