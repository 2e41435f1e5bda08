//! The ordering side of the actor: which tasks and outputs this operator's blocks carry as
//! leader, whether it vouches for a block's decisions as a follower, and what a finalized block
//! orders and decides.

use super::*;

impl<E: Clock + Spawner + Metrics + Storage, P: PublicKey> Actor<E, P> {
    /// The task decisions of this operator's next block as leader: outputs enough operators
    /// computed, then tasks waiting to be ordered, within the block's count and byte bounds.
    pub(super) fn propose(&mut self) -> Vec<TaskDecision> {
        let now = self.context.current();
        let mut decisions = Vec::new();
        let mut bytes = 0;
        let fits = |decisions: &Vec<TaskDecision>, bytes: usize, size: usize| {
            decisions.len() < MAX_TASK_DECISIONS && bytes + size <= MAX_TASK_DECISION_BYTES
        };
        for task_id in &self.undecided {
            let Some(tracked) = self.tasks.get_mut(task_id) else {
                continue;
            };
            if let Some(output) = tracked.proposable_output(self.threshold, now, REPROPOSE_AFTER) {
                let decision = TaskDecision::Output {
                    task_id: *task_id,
                    output,
                };
                let size = decision.encode_size();
                if !fits(&decisions, bytes, size) {
                    break;
                }
                tracked.output_proposed = Some(now);
                bytes += size;
                decisions.push(decision);
            }
        }
        for task_id in &self.unordered {
            let Some(tracked) = self.tasks.get_mut(task_id) else {
                continue;
            };
            if tracked.orderable(now, REPROPOSE_AFTER, ORDER_MARGIN) {
                let size = 1 + tracked.task.encode_size();
                if !fits(&decisions, bytes, size) {
                    break;
                }
                tracked.order_proposed = Some(now);
                bytes += size;
                decisions.push(TaskDecision::Order(tracked.task.clone()));
            }
        }
        if decisions.is_empty() {
            // Whatever made this operator think it had work is gone (expired, ordered).
            self.work_stale = true;
        } else {
            self.proposed_now();
        }
        decisions
    }

    /// A block being voted on proposes these decisions: this operator, as the next leader,
    /// does not propose them again while that block may still be finalized.
    pub(super) fn seen_proposed(&mut self, decisions: &[TaskDecision]) {
        let now = self.context.current();
        for decision in decisions {
            if let Some(tracked) = self.tasks.get_mut(decision.task_id()) {
                match decision {
                    TaskDecision::Order(_) => tracked.order_proposed = Some(now),
                    TaskDecision::Output { .. } => tracked.output_proposed = Some(now),
                }
            }
        }
        if !decisions.is_empty() {
            self.proposed_now();
        }
    }

    /// Whether this operator vouches for a block's task decisions; `None` while it cannot tell.
    pub(super) fn evaluate(&self, decisions: &[TaskDecision]) -> Option<bool> {
        let mut undecided = false;
        for decision in decisions {
            match decision {
                TaskDecision::Order(task) => {
                    if let Err(reason) = self.admissible(task) {
                        warn!(task_id = %to_hex(&task.task_id), %reason, "refusing block: it orders a task this operator finds invalid");
                        return Some(false);
                    }
                }
                TaskDecision::Output { task_id, output } => {
                    match self
                        .tasks
                        .get(task_id)
                        .and_then(|t| t.vouch(output, self.threshold))
                    {
                        Some(true) => {}
                        Some(false) => {
                            warn!(task_id = %to_hex(task_id), "refusing block: its output for the task is not the one this operator's performer gave");
                            return Some(false);
                        }
                        None => undecided = true,
                    }
                }
            }
        }
        (!undecided).then_some(true)
    }

    /// Answers the blocks waiting for this operator's verdict: again only once something they
    /// depend on changed (a performer answered, a report or a decision came), else only those
    /// whose wait ran out.
    pub(super) fn answer_waiting(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let now = self.context.current();
        let reevaluate = std::mem::take(&mut self.verdicts_stale);
        let waiting = std::mem::take(&mut self.waiting);
        for entry in waiting {
            if entry.response.is_closed() {
                continue;
            }
            let verdict = if reevaluate || now >= entry.until {
                self.evaluate(&entry.decisions)
            } else {
                None
            };
            match verdict {
                Some(vote) => {
                    let _ = entry.response.send(vote);
                }
                None if now >= entry.until => {
                    warn!(
                        "not voting for a block: this operator's performer has not answered and too few peers reported the proposed output"
                    );
                    let _ = entry.response.send(false);
                }
                None => self.waiting.push(entry),
            }
        }
    }

    pub(super) async fn on_finalized(&mut self, height: u64, decisions: &[TaskDecision]) {
        // Genesis is "finalized" at every start; a block above it was agreed by the cluster.
        if !self.chain_moving && height > 0 {
            self.chain_moving = true;
            self.work_stale = true;
        }
        let mut requests = Vec::new();
        for decision in decisions {
            match decision {
                TaskDecision::Order(task) => self.on_ordered(height, task),
                TaskDecision::Output { task_id, output } => {
                    if let Some(request) = self.on_decided(task_id, output) {
                        requests.push(request);
                    }
                }
            }
        }
        if !decisions.is_empty() {
            self.work_stale = true;
            self.verdicts_stale = true;
        }
        if !requests.is_empty() {
            self.sign_decided(&requests).await;
        }
        if height >= self.pruned_at + PRUNE_EVERY_HEIGHTS {
            self.prune(height).await;
        }
    }

    fn on_ordered(&mut self, height: u64, task: &ClusterTask) {
        let now = self.context.current();
        self.track(task);
        let Some(tracked) = self.tasks.get_mut(&task.task_id) else {
            return;
        };
        if tracked.ordered_at.is_some() {
            return;
        }
        // The finalized body is the task every operator runs and signs for (its deadline may
        // differ from a peer's copy: the timer below follows the finalized one).
        tracked.task = task.clone();
        tracked.ordered_at = Some(height);
        let deadline = tracked.deadline();
        let expired = deadline <= now;
        if expired {
            debug!(task_id = %to_hex(&task.task_id), height, "task ordered after its deadline; not running it");
            tracked.own = Some(Err("ordered after its deadline".into()));
        }
        let execution = (!expired).then(|| self.performer.execute(&tracked.task));
        self.unordered.remove(&task.task_id);
        self.undecided.insert(task.task_id);
        self.timers.insert((deadline, task.task_id));
        self.metrics.ordered.inc();
        emit(
            &self.events,
            TaskEvent::Ordered {
                height,
                task_id: task.task_id,
            },
        );
        let Some(execution) = execution else {
            return;
        };
        debug!(task_id = %to_hex(&task.task_id), height, "task ordered; running the performer");
        let task_id = task.task_id;
        let done = self.performed.0.clone();
        self.context
            .child("performer")
            .spawn(move |context| async move {
                let result = select! {
                    result = execution => result,
                    _ = context.sleep_until(deadline) => Err("the performer did not answer by the task's deadline".to_string()),
                };
                let _ = done.send((task_id, result));
            });
    }

    /// Takes a finalized output; returns the record request its partial needs.
    fn on_decided(&mut self, task_id: &TaskId, output: &Bytes) -> Option<SignRequest> {
        let Some(tracked) = self.tasks.get_mut(task_id) else {
            warn!(task_id = %to_hex(task_id), "output decided for a task this operator does not know (ordered before it restarted, or already forgotten); not signing it");
            return None;
        };
        let height = tracked.ordered_at?;
        if tracked.decided.is_some() {
            return None;
        }
        self.undecided.remove(task_id);
        let decided = digest(task_id, output);
        tracked.decided = Some(output.clone());
        self.metrics.decided.inc();
        emit(
            &self.events,
            TaskEvent::Decided {
                task_id: *task_id,
                digest: decided,
            },
        );
        for (operator, reported) in &tracked.reports {
            if *reported != decided {
                self.metrics.disagreements.inc();
                warn!(task_id = %to_hex(task_id), operator = operator + 1, "operator's performer reported another output than the one the cluster decided");
                emit(
                    &self.events,
                    TaskEvent::Disagreed {
                        task_id: *task_id,
                        operator: *operator,
                    },
                );
            }
        }
        tracked.signing = Some(ResultSigning::new(
            self.sharing.clone(),
            &ResultFields {
                task_id: B256::from(*task_id),
                avs: Address::from(tracked.task.avs),
                operator: Address::from(self.operator_address),
                operator_set_id: tracked.task.operator_set_id,
                reference_timestamp: tracked.task.reference_timestamp,
                output,
            },
        ));
        Some(SignRequest {
            height,
            task_id: *task_id,
            output: decided,
        })
    }
}
