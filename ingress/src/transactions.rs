//! The transaction relay's mailbox: how a JSON-RPC server (or a simulated wallet) hands the
//! operator a signed transaction for the cluster chain.

use crate::Stopped;
use cohort_engine::{AlloyBytes, B256, TransactionRefused};
use commonware_utils::channel::{mpsc, oneshot};

pub enum Message {
    /// A signed transaction (EIP-2718 bytes) from a user of this operator: checked by the
    /// engine's pool and, if taken, sent to every peer so whoever leads can include it.
    Submit {
        raw: AlloyBytes,
        answer: oneshot::Sender<Result<B256, TransactionRefused>>,
    },
}

#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::Sender<Message>,
}

impl Mailbox {
    pub fn new(sender: mpsc::Sender<Message>) -> Self {
        Self { sender }
    }

    /// See [`Message::Submit`]: the transaction's hash or why the pool refused it; `Err` if
    /// the relay has stopped (its operator is down).
    pub async fn submit(
        &self,
        raw: AlloyBytes,
    ) -> Result<Result<B256, TransactionRefused>, Stopped> {
        const STOPPED: Stopped = Stopped {
            actor: "transaction relay",
        };
        let (answer, response) = oneshot::channel();
        self.sender
            .send(Message::Submit { raw, answer })
            .await
            .map_err(|_| STOPPED)?;
        response.await.map_err(|_| STOPPED)
    }
}
