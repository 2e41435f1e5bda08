use super::Config;
use cohort_engine::ExecutionEngine;
use cohort_ingress::transactions::Message;
use commonware_cryptography::PublicKey;
use commonware_macros::select;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{
    ContextCell, Handle, IoBuf, Metrics, Spawner, spawn_cell, telemetry::metrics::Registered,
};
use commonware_utils::channel::mpsc;
use prometheus_client::metrics::counter::Counter;
use tracing::{debug, warn};

struct RelayMetrics {
    submitted: Registered<Counter>,
    refused: Registered<Counter>,
    received: Registered<Counter>,
    received_refused: Registered<Counter>,
}

pub struct Actor<E: Spawner + Metrics, X: ExecutionEngine> {
    context: ContextCell<E>,
    engine: X,
    mailbox: mpsc::Receiver<Message>,
    metrics: RelayMetrics,
}

impl<E: Spawner + Metrics, X: ExecutionEngine> Actor<E, X> {
    pub(super) fn new(context: E, config: Config<X>, mailbox: mpsc::Receiver<Message>) -> Self {
        let metrics = RelayMetrics {
            submitted: context.register(
                "submitted",
                "transactions this operator's users sent that the pool took and peers were sent",
                Counter::default(),
            ),
            refused: context.register(
                "refused",
                "transactions this operator's users sent that the pool refused",
                Counter::default(),
            ),
            received: context.register(
                "received",
                "transactions peers sent that the pool took",
                Counter::default(),
            ),
            received_refused: context.register(
                "received_refused",
                "transactions peers sent that the pool refused (known, stale or invalid)",
                Counter::default(),
            ),
        };
        Self {
            context: ContextCell::new(context),
            engine: config.engine,
            mailbox,
            metrics,
        }
    }

    pub fn start<Tx, Rx, P>(mut self, sender: Tx, receiver: Rx) -> Handle<()>
    where
        P: PublicKey,
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        spawn_cell!(self.context, self.run(sender, receiver))
    }

    async fn run<Tx, Rx, P>(mut self, mut sender: Tx, mut receiver: Rx)
    where
        P: PublicKey,
        Tx: Sender<PublicKey = P>,
        Rx: Receiver<PublicKey = P>,
    {
        loop {
            // Priorities: this operator's users first, then peers.
            select! {
                message = self.mailbox.recv() => {
                    let Some(Message::Submit { raw, answer }) = message else {
                        debug!("transaction relay mailbox closed; stopping");
                        return;
                    };
                    let result = self.engine.submit_transaction(raw.clone()).await;
                    match &result {
                        Ok(hash) => {
                            self.metrics.submitted.inc();
                            debug!(%hash, "transaction pooled; sending it to every peer");
                            let sent = sender.send(Recipients::All, IoBuf::from(raw.0), false);
                            if sent.is_empty() {
                                warn!(%hash, "transaction pooled here but no peer could be sent it; it waits for this operator to lead");
                            }
                        }
                        Err(reason) => {
                            self.metrics.refused.inc();
                            debug!(%reason, "transaction refused by the pool");
                        }
                    }
                    let _ = answer.send(result);
                },
                received = receiver.recv() => {
                    let (peer, bytes) = match received {
                        Ok(received) => received,
                        Err(err) => {
                            warn!(%err, "transactions channel closed; the relay stops");
                            return;
                        }
                    };
                    let raw = cohort_engine::AlloyBytes::copy_from_slice(bytes.as_ref());
                    match self.engine.submit_transaction(raw).await {
                        Ok(_) => {
                            self.metrics.received.inc();
                        }
                        Err(reason) => {
                            self.metrics.received_refused.inc();
                            debug!(%peer, %reason, "a peer's transaction was refused by the pool");
                        }
                    }
                },
            }
        }
    }
}
