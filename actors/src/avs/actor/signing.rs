//! The signing of a decided output: the once-only record first, then this operator's result
//! partial, the auth partial once the result signature is combined, and the callers' answers
//! once both are. Bad partials are named as they turn up.

use super::*;

impl<E: Clock + Spawner + Metrics + Storage, P: PublicKey> Actor<E, P> {
    /// Records the decided outputs (one sync for the block), then signs a partial for each the
    /// record allows; they leave together in the next batch.
    pub(super) async fn sign_decided(&mut self, requests: &[SignRequest]) {
        let verdicts = match self.record.decide(requests).await {
            Ok(verdicts) => verdicts,
            Err(err) => {
                error!(%err, "cannot record the task outputs this block decided; not signing them (no partial leaves without a durable record); restart the node once the disk is fixed");
                for request in requests {
                    self.refuse(&request.task_id, TaskError::Refused(err.to_string()));
                }
                return;
            }
        };
        for (request, verdict) in requests.iter().zip(verdicts) {
            match verdict {
                Verdict::Sign | Verdict::SignAgain => self.sign_result(&request.task_id),
                Verdict::Refuse(refusal) => {
                    error!(task_id = %to_hex(&request.task_id), %refusal, "not signing the decided output");
                    self.refuse(&request.task_id, TaskError::Refused(refusal.to_string()));
                }
            }
        }
    }

    pub(super) fn refuse(&mut self, task_id: &TaskId, error: TaskError) {
        let Some(tracked) = self.tasks.get_mut(task_id) else {
            return;
        };
        tracked.refused = Some(error.clone());
        for waiter in tracked.waiters.drain(..) {
            self.metrics.failed.inc();
            let _ = waiter.send(Err(error.clone()));
        }
        emit(
            &self.events,
            TaskEvent::Failed {
                task_id: *task_id,
                error,
            },
        );
    }

    fn sign_result(&mut self, task_id: &TaskId) {
        let Some(tracked) = self.tasks.get_mut(task_id) else {
            return;
        };
        let Some(signing) = tracked.signing.as_mut() else {
            return;
        };
        let partial = signing.result_partial(&self.share);
        let _ = signing.add(Round::Result, partial);
        self.outbox.partials.push(TaskPartial {
            task_id: *task_id,
            round: SignatureRound::Result,
            partial: partial.to_bytes(),
        });
        emit(
            &self.events,
            TaskEvent::PartialSigned {
                task_id: *task_id,
                digest: digest(task_id, tracked.decided.as_deref().unwrap_or_default()),
            },
        );
        for (round, partial) in std::mem::take(&mut tracked.early) {
            let _ = signing.add(round_of(round), partial);
        }
        self.dirty.insert(*task_id);
    }

    /// Combines every round that can be, across all the tasks whose partials changed, in one
    /// batch (one pairing check for the lot while nobody lies); then the auth rounds the
    /// combined results opened, with this operator's auth partials sent; then answers the
    /// callers of every task whose two signatures are both combined.
    pub(super) fn settle_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        // The rounds of a task come in order, so two passes finish whatever can be.
        for _ in 0..2 {
            let mut pending = Vec::new();
            let mut items = Vec::new();
            for task_id in &dirty {
                let Some(tracked) = self.tasks.get(task_id) else {
                    continue;
                };
                if tracked.signed.is_some() {
                    continue;
                }
                if let Some((round, message, partials)) =
                    tracked.signing.as_ref().and_then(|s| s.combinable())
                {
                    pending.push((*task_id, round));
                    items.push((message, partials));
                }
            }
            if items.is_empty() {
                return;
            }
            let outcomes = self.sharing.combine_verified_batch(&items);
            let mut next = BTreeSet::new();
            for ((task_id, round), outcome) in pending.into_iter().zip(outcomes) {
                if self.settle(&task_id, round, outcome) {
                    next.insert(task_id);
                }
            }
            dirty = next;
        }
    }

    /// Applies one round's combination to a task; returns whether its auth round just opened
    /// (this operator's auth partial then joins the batch, and the round may combine at once).
    fn settle(
        &mut self,
        task_id: &TaskId,
        round: Round,
        outcome: Result<cohort_avs_crypto::Combined, cohort_avs_crypto::ThresholdError>,
    ) -> bool {
        let Some(tracked) = self.tasks.get_mut(task_id) else {
            return false;
        };
        let Some(signing) = tracked.signing.as_mut() else {
            return false;
        };
        let bad_before: BTreeSet<u32> = signing.bad().keys().copied().collect();
        signing.settle(round, outcome);
        let mut opened = false;
        if !tracked.auth_sent
            && let Some(partial) = signing.auth_partial(&self.share)
        {
            tracked.auth_sent = true;
            let _ = signing.add(Round::Auth, partial);
            self.outbox.partials.push(TaskPartial {
                task_id: *task_id,
                round: SignatureRound::Auth,
                partial: partial.to_bytes(),
            });
            opened = true;
        }
        for (operator, round) in newly_bad(&bad_before, signing.bad()) {
            self.metrics.bad_partials.inc();
            warn!(task_id = %to_hex(task_id), operator = operator + 1, ?round, "operator's partial signature does not verify; dropped, and nothing more from it counts for this task");
            emit(
                &self.events,
                TaskEvent::BadPartial {
                    task_id: *task_id,
                    operator,
                },
            );
        }
        let Some(signatures) = signing.signatures() else {
            return opened;
        };
        let signed = SignedTask {
            task_id: *task_id,
            output: tracked.decided.clone().unwrap_or_default(),
            result_signature: signatures.result_signature,
            auth_signature: signatures.auth_signature,
        };
        tracked.signed = Some(signed.clone());
        // Only the answer is needed from here on (for a caller that asks again).
        tracked.compact();
        self.metrics.signed.inc();
        debug!(task_id = %to_hex(task_id), callers = tracked.waiters.len(), "task result signed by the cluster");
        for waiter in tracked.waiters.drain(..) {
            let _ = waiter.send(Ok(signed.clone()));
        }
        emit(&self.events, TaskEvent::Signed(signed));
        false
    }
}
