//! The signing of a decided output: the once-only record first, then this operator's result
//! partial, the auth partial once the result signature is combined, and the callers' answers
//! once both are. Bad partials are named as they turn up.

use super::*;

impl<E: Clock + Spawner + Metrics + Storage, P: PublicKey> Actor<E, P> {
    /// Records the decided outputs (one sync for the block), then signs and sends a partial for
    /// each the record allows.
    pub(super) async fn sign_decided<S: Sender<PublicKey = P>>(
        &mut self,
        requests: &[SignRequest],
        sender: &mut S,
    ) {
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
                Verdict::Sign | Verdict::SignAgain => self.sign_result(&request.task_id, sender),
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

    pub(super) fn sign_result<S: Sender<PublicKey = P>>(
        &mut self,
        task_id: &TaskId,
        sender: &mut S,
    ) {
        let Some(tracked) = self.tasks.get_mut(task_id) else {
            return;
        };
        let Some(signing) = tracked.signing.as_mut() else {
            return;
        };
        let partial = signing.result_partial(&self.share);
        let _ = signing.add(Round::Result, partial);
        broadcast(
            sender,
            &TaskMessage::Partial {
                task_id: *task_id,
                round: SignatureRound::Result,
                partial: partial.to_bytes(),
            },
        );
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
        self.advance(task_id, sender);
    }

    /// Combines whatever round can be, sends the auth partial once the result is combined, and
    /// answers the callers once both are.
    pub(super) fn advance<S: Sender<PublicKey = P>>(&mut self, task_id: &TaskId, sender: &mut S) {
        let Some(tracked) = self.tasks.get_mut(task_id) else {
            return;
        };
        let Some(signing) = tracked.signing.as_mut() else {
            return;
        };
        let bad_before: BTreeSet<u32> = signing.bad().keys().copied().collect();
        let mut signatures = signing.advance();
        if !tracked.auth_sent
            && let Some(partial) = signing.auth_partial(&self.share)
        {
            tracked.auth_sent = true;
            let _ = signing.add(Round::Auth, partial);
            broadcast(
                sender,
                &TaskMessage::Partial {
                    task_id: *task_id,
                    round: SignatureRound::Auth,
                    partial: partial.to_bytes(),
                },
            );
            signatures = signing.advance();
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
        let (Some(signatures), None) = (signatures, &tracked.signed) else {
            return;
        };
        let signed = SignedTask {
            task_id: *task_id,
            output: tracked.decided.clone().unwrap_or_default(),
            result_signature: signatures.result_signature,
            auth_signature: signatures.auth_signature,
        };
        tracked.signed = Some(signed.clone());
        self.metrics.signed.inc();
        info!(task_id = %to_hex(task_id), callers = tracked.waiters.len(), "task result signed by the cluster");
        for waiter in tracked.waiters.drain(..) {
            let _ = waiter.send(Ok(signed.clone()));
        }
        emit(&self.events, TaskEvent::Signed(signed));
    }
}
