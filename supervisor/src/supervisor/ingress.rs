//! The supervisor's mailbox: what the gRPC handlers (and the node) may ask it. Each message
//! carries a oneshot for its answer; the actor owns all state and answers in order.

use crate::{
    proto::executor::{
        DeployArtifactRequest, DeployArtifactResponse, GetChallengeTokenResponse,
        ListPerformersRequest, ListPerformersResponse, RemovePerformerRequest,
        RemovePerformerResponse, TaskResult,
    },
    validate::CheckedTask,
};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

type Reply<T> = oneshot::Sender<Result<T, Status>>;

pub enum Message {
    /// A task that passed the stateless checks; `deadline` is the caller's (or the default).
    Submit {
        task: Box<CheckedTask>,
        deadline: Instant,
        reply: Reply<TaskResult>,
    },
    /// Answered when the new performer is serving, or the deployment failed.
    Deploy {
        request: DeployArtifactRequest,
        reply: Reply<DeployArtifactResponse>,
    },
    List {
        request: ListPerformersRequest,
        reply: Reply<ListPerformersResponse>,
    },
    Remove {
        request: RemovePerformerRequest,
        reply: Reply<RemovePerformerResponse>,
    },
    ChallengeToken {
        operator_address: String,
        reply: Reply<GetChallengeTokenResponse>,
    },
    /// Stop accepting, finish in-flight tasks (up to the stop timeout), stop every performer;
    /// answered when no performer process is left.
    Stop { reply: oneshot::Sender<()> },
}

/// A handle to the supervisor actor.
#[derive(Clone)]
pub struct Mailbox {
    tx: mpsc::Sender<Message>,
}

fn gone() -> Status {
    Status::unavailable("the supervisor has stopped")
}

impl Mailbox {
    pub(super) fn new(tx: mpsc::Sender<Message>) -> Self {
        Self { tx }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Message) -> Result<T, Status> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub async fn submit(&self, task: CheckedTask, deadline: Instant) -> Result<TaskResult, Status> {
        self.ask(|reply| Message::Submit {
            task: Box::new(task),
            deadline,
            reply,
        })
        .await
    }

    /// Runs a task of a cluster-run AVS on this operator's performer, through the AVS's worker
    /// pool, and returns the output unsigned: the cluster signs the output it agrees on.
    pub async fn perform(&self, task: CheckedTask, deadline: Instant) -> Result<Vec<u8>, Status> {
        if !task.cluster {
            return Err(Status::internal(format!(
                "AVS {} is not cluster-run; its tasks are signed by this operator",
                task.avs
            )));
        }
        self.submit(task, deadline)
            .await
            .map(|result| result.output)
    }

    pub async fn deploy(
        &self,
        request: DeployArtifactRequest,
    ) -> Result<DeployArtifactResponse, Status> {
        self.ask(|reply| Message::Deploy { request, reply }).await
    }

    pub async fn list(
        &self,
        request: ListPerformersRequest,
    ) -> Result<ListPerformersResponse, Status> {
        self.ask(|reply| Message::List { request, reply }).await
    }

    pub async fn remove(
        &self,
        request: RemovePerformerRequest,
    ) -> Result<RemovePerformerResponse, Status> {
        self.ask(|reply| Message::Remove { request, reply }).await
    }

    pub async fn challenge_token(
        &self,
        operator_address: String,
    ) -> Result<GetChallengeTokenResponse, Status> {
        self.ask(|reply| Message::ChallengeToken {
            operator_address,
            reply,
        })
        .await
    }

    /// Stops the supervisor gracefully; returns when it has (or was already gone).
    pub async fn stop(&self) {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Message::Stop { reply }).await.is_ok() {
            let _ = answer.await;
        }
    }
}
