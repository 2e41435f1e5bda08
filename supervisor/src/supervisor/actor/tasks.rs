//! Tasks: replays, the worker pool per AVS, calls to the serving performer, and results.
//!
//! A task is answered only once its signed result is durable, so a replay after a restart gets
//! exactly what the first caller got.

use super::*;

impl Actor {
    pub(super) fn submit(
        &mut self,
        task: Box<CheckedTask>,
        deadline: Instant,
        reply: Reply<TaskResult>,
    ) {
        let avs = task.avs.clone();
        if let Some(done) = self.processed.get(&task.key) {
            let answer = if done.request_hash == task.request_hash {
                self.metrics.task(&avs, "replayed");
                Ok(done.result.clone())
            } else {
                self.metrics.task(&avs, "conflict");
                Err(Status::already_exists(format!(
                    "task {} was already answered for a different task",
                    task.task_id
                )))
            };
            let _ = reply.send(answer);
            return;
        }
        if let Some(running) = self.tasks.get_mut(&task.key) {
            if running.task.request_hash == task.request_hash {
                self.metrics.task(&avs, "joined");
                running.waiters.push(reply);
            } else {
                self.metrics.task(&avs, "conflict");
                let _ = reply.send(Err(Status::already_exists(format!(
                    "task {} is already running for a different task",
                    task.task_id
                ))));
            }
            return;
        }
        if let Err(status) = self.refuse_if_stopping() {
            let _ = reply.send(Err(status));
            return;
        }
        let Some(state) = self.avs.get_mut(&avs) else {
            let _ = reply.send(Err(Status::not_found(format!(
                "AVS {avs} is not served by this executor"
            ))));
            return;
        };
        // 5. The AVS's performer (during a fixed-port swap the task waits for the new one).
        let swapping = state.swapping();
        if !swapping && let Err(status) = serving_performer(state, &self.performers) {
            self.metrics.task(&avs, "no_performer");
            let _ = reply.send(Err(status));
            return;
        }
        let start_now = !swapping && state.running < state.config.max_concurrent_tasks;
        if !start_now && state.queue.len() >= state.config.queue_depth {
            self.metrics.task(&avs, "pool_full");
            let _ = reply.send(Err(Status::resource_exhausted(format!(
                "AVS {avs}: {} tasks running and {} waiting (the limit)",
                state.running,
                state.queue.len()
            ))));
            return;
        }
        let key = task.key.clone();
        self.tasks.insert(
            key.clone(),
            InFlight {
                task,
                deadline,
                submitted: Instant::now(),
                waiters: vec![reply],
            },
        );
        if start_now {
            self.start_task(&key);
        } else {
            state.queue.push_back(key);
            self.metrics
                .queue_depth
                .get_or_create(&Metrics::avs(&avs))
                .set(state.queue.len() as i64);
        }
    }

    /// Sends a task to its AVS's serving performer, in a task of its own.
    pub(super) fn start_task(&mut self, key: &str) {
        let Some(flight) = self.tasks.get(key) else {
            return;
        };
        let avs = flight.task.avs.clone();
        let Some(state) = self.avs.get_mut(&avs) else {
            return;
        };
        let performer_id = match serving_performer(state, &self.performers) {
            Ok(id) => id,
            Err(status) => {
                self.fail_task(key, status, "no_performer");
                return;
            }
        };
        if flight.deadline <= Instant::now() {
            self.fail_task(
                key,
                Status::deadline_exceeded(
                    "the task's deadline passed while it waited for a worker",
                ),
                "deadline",
            );
            return;
        }
        let Some(performer) = self.performers.get_mut(&performer_id) else {
            return;
        };
        let Some(instance) = &performer.instance else {
            return;
        };
        performer.in_flight += 1;
        state.running += 1;
        self.metrics
            .in_flight
            .get_or_create(&Metrics::avs(&avs))
            .set(state.running as i64);
        let channel = instance.channel.clone();
        let task = flight.task.clone();
        let deadline = flight.deadline;
        let key = key.to_string();
        let events = self.events_tx.clone();
        let store = self.store.clone();
        let config = self.config.clone();
        let operator = self.operator;
        tokio::spawn(async move {
            let started = Instant::now();
            let result = execute(channel, &task, deadline, &config, operator, &store).await;
            let _ = events.send(Event::TaskDone {
                key,
                performer_id,
                result,
                started,
            });
        });
    }

    pub(super) fn fail_task(&mut self, key: &str, status: Status, outcome: &str) {
        if let Some(flight) = self.tasks.remove(key) {
            self.metrics.task(&flight.task.avs, outcome);
            for waiter in flight.waiters {
                let _ = waiter.send(Err(status.clone()));
            }
        }
    }

    pub(super) fn task_done(
        &mut self,
        key: String,
        performer_id: String,
        result: Result<TaskResult, Status>,
        started: Instant,
    ) {
        let Some(flight) = self.tasks.remove(&key) else {
            return;
        };
        let avs = flight.task.avs.clone();
        let outcome = match &result {
            Ok(_) => "success",
            Err(status) => match status.code() {
                Code::DeadlineExceeded => "deadline",
                Code::FailedPrecondition => "output_too_large",
                Code::Unavailable => "performer_unreachable",
                _ => "performer_error",
            },
        };
        self.metrics.task(&avs, outcome);
        self.metrics
            .task_duration
            .get_or_create(&Metrics::avs(&avs))
            .observe(flight.submitted.elapsed().as_secs_f64());
        match &result {
            Ok(answer) => {
                info!(
                    avs_address = %avs,
                    task_id = %flight.task.task_id,
                    performer_id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "task answered"
                );
                // A cluster-run AVS's output is no answer to replay: the cluster answers its
                // callers, and its own record says what it signed.
                if !flight.task.cluster {
                    self.processed.insert(
                        key.clone(),
                        Processed {
                            request_hash: flight.task.request_hash.clone(),
                            result: answer.clone(),
                        },
                    );
                }
            }
            Err(status) => warn!(
                avs_address = %avs,
                task_id = %flight.task.task_id,
                performer_id,
                code = ?status.code(),
                error = status.message(),
                "task failed"
            ),
        }
        for waiter in flight.waiters {
            let _ = waiter.send(result.clone());
        }
        if let Some(performer) = self.performers.get_mut(&performer_id) {
            performer.in_flight = performer.in_flight.saturating_sub(1);
            if performer.role == Role::Draining && performer.in_flight == 0 {
                self.stop_performer(&performer_id);
            }
        }
        if let Some(state) = self.avs.get_mut(&avs) {
            state.running = state.running.saturating_sub(1);
        }
        self.pump(&avs);
    }

    /// Starts queued tasks while workers are free.
    pub(super) fn pump(&mut self, avs: &str) {
        loop {
            let Some(state) = self.avs.get_mut(avs) else {
                return;
            };
            if state.running >= state.config.max_concurrent_tasks || state.swapping() {
                break;
            }
            let Some(key) = state.queue.pop_front() else {
                break;
            };
            self.start_task(&key);
        }
        if let Some(state) = self.avs.get(avs) {
            let labels = Metrics::avs(avs);
            self.metrics
                .queue_depth
                .get_or_create(&labels)
                .set(state.queue.len() as i64);
            self.metrics
                .in_flight
                .get_or_create(&labels)
                .set(state.running as i64);
        }
    }
}

/// The AVS's performer that takes tasks now, or why there is none.
fn serving_performer(
    state: &AvsState,
    performers: &BTreeMap<String, PerformerState>,
) -> Result<String, Status> {
    let Some(id) = &state.current else {
        return Err(Status::failed_precondition(format!(
            "AVS performer not found: no performer is deployed for AVS {}",
            state.config.address
        )));
    };
    match performers.get(id) {
        Some(p) if p.role == Role::InService && p.instance.is_some() => Ok(id.clone()),
        Some(p) if p.role == Role::Failed => Err(Status::failed_precondition(format!(
            "performer {id} of AVS {} failed; deploy it again",
            state.config.address
        ))),
        _ => Err(Status::unavailable(format!(
            "performer {id} of AVS {} is restarting",
            state.config.address
        ))),
    }
}

/// Whether tonic itself ended the call at its `grpc-timeout` (a `TimeoutExpired` somewhere in
/// the status's source chain).
fn tonic_timed_out(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Runs one task on a performer and signs the result; the record is durable before it returns.
async fn execute(
    channel: tonic::transport::Channel,
    task: &CheckedTask,
    deadline: Instant,
    config: &Config,
    operator: Address,
    store: &Store,
) -> Result<TaskResult, Status> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Status::deadline_exceeded("the task's deadline passed"));
    }
    let mut request = tonic::Request::new(TaskRequest {
        task_id: task.task_id.as_bytes().to_vec(),
        payload: task.payload.clone(),
    });
    request.set_timeout(remaining);
    let mut client = PerformerServiceClient::new(channel)
        .max_decoding_message_size(MAX_PERFORMER_MESSAGE)
        .max_encoding_message_size(MAX_PERFORMER_MESSAGE);
    // Dropping the call at the deadline resets the stream: the performer sees it cancelled.
    let response = match tokio::time::timeout(remaining, client.execute_task(request)).await {
        Err(_) => {
            return Err(Status::deadline_exceeded(
                "the task's deadline passed; the performer's call was cancelled",
            ));
        }
        // tonic's client ends the call at the `grpc-timeout` it sent too, with a bare
        // CANCELLED ("Timeout expired") that races the timer above.
        Ok(Err(status)) if status.code() == Code::DeadlineExceeded || tonic_timed_out(&status) => {
            return Err(Status::deadline_exceeded(format!(
                "the task's deadline passed: {}",
                status.message()
            )));
        }
        // The performer could not be reached (it just exited, or is restarting): a transient
        // condition the caller may retry, not a performer answer.
        // (tonic gives a failed connection a source error; a performer's own answer has none).
        Ok(Err(status))
            if status.code() == Code::Unavailable
                || std::error::Error::source(&status).is_some() =>
        {
            return Err(Status::unavailable(format!(
                "the performer is unreachable: {}",
                status.message()
            )));
        }
        Ok(Err(status)) => {
            return Err(Status::internal(format!(
                "performer error ({:?}): {}",
                status.code(),
                status.message()
            )));
        }
        Ok(Ok(response)) => response.into_inner(),
    };
    if response.result.len() >= MAX_OUTPUT {
        return Err(Status::failed_precondition(format!(
            "the performer's output is {} bytes, at or above the 1.5 MiB limit",
            response.result.len()
        )));
    }
    if response.task_id != task.task_id.as_bytes() {
        warn!(
            task_id = task.task_id,
            echoed = %String::from_utf8_lossy(&response.task_id),
            "performer echoed another task id; answering with the submitted one"
        );
    }
    if task.cluster {
        // A cluster-run AVS's output is signed by the cluster once it agrees on it; nothing is
        // signed with this operator's key, and the cluster's task record is the durable one.
        return Ok(TaskResult {
            task_id: task.task_id.clone(),
            operator_address: String::new(),
            output: response.result,
            result_signature: Vec::new(),
            avs_address: task.avs.clone(),
            operator_set_id: task.operator_set_id,
            auth_signature: Vec::new(),
            version: 1,
        });
    }
    let signatures = config.operator_key.sign_result(
        &task.task_hash,
        &task.avs_bytes,
        &operator,
        task.operator_set_id,
        task.reference_timestamp,
        &response.result,
    );
    let result = TaskResult {
        task_id: task.task_id.clone(),
        operator_address: config.operator_address.clone(),
        output: response.result,
        result_signature: signatures.result_signature,
        avs_address: task.avs.clone(),
        operator_set_id: task.operator_set_id,
        auth_signature: signatures.auth_signature,
        version: 1,
    };
    store
        .append(&Record::Task {
            task_id: task.key.clone(),
            request: task.request_hash.clone(),
            result: hex::encode(result.encode_to_vec()),
        })
        .await
        .map_err(|err| Status::internal(format!("the result could not be stored: {err}")))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonic_s_own_timeout_is_told_from_a_performer_s_cancellation() {
        let timed_out = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(timed_out.code(), Code::Cancelled);
        assert!(tonic_timed_out(&timed_out));
        assert!(!tonic_timed_out(&Status::cancelled(
            "the performer cancelled"
        )));
    }
}
