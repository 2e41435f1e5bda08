use super::Config;
use cohort_ingress::{committee, executor::Message, runner};
use cohort_marshal::Block;
use commonware_consensus::marshal::Update;
use commonware_cryptography::Digestible;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, telemetry::metrics::Registered};
use commonware_utils::{Acknowledgement as _, channel::mpsc};
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use tracing::{debug, error, info};

/// A finalized block as the observer sees it.
#[derive(Clone, Debug)]
pub struct Finalized {
    pub block: Arc<Block>,
    /// When this operator processed it.
    pub at: std::time::SystemTime,
}

pub struct Actor<E> {
    context: E,
    runner: runner::Mailbox,
    committee: committee::Mailbox,
    observer: Option<mpsc::UnboundedSender<Finalized>>,
    mailbox: mpsc::UnboundedReceiver<Message<Block>>,
    /// Highest height processed; marshal redelivers unacknowledged blocks after a restart.
    processed: Option<u64>,
    finalized_height: Registered<Gauge>,
}

impl<E: Clock + Spawner + Metrics> Actor<E> {
    pub(super) fn new(
        context: E,
        config: Config,
        mailbox: mpsc::UnboundedReceiver<Message<Block>>,
    ) -> Self {
        let finalized_height = context.register(
            "finalized_height",
            "height of the last finalized block processed",
            Gauge::default(),
        );
        Self {
            context,
            runner: config.runner,
            committee: config.committee,
            observer: config.observer,
            mailbox,
            processed: None,
            finalized_height,
        }
    }

    /// Starts the executor. `processed_height` is what marshal reports as already processed
    /// before this start (known only once marshal, which needs this actor's mailbox, exists);
    /// redeliveries at or below it are acknowledged and skipped.
    pub fn start(mut self, processed_height: Option<u64>) -> Handle<()> {
        self.processed = processed_height;
        let context = self.context.child("executor");
        context.spawn(move |_| self.run())
    }

    async fn run(mut self) {
        while let Some(Message::Update(update)) = self.mailbox.recv().await {
            match update {
                Update::Tip(round, height, digest) => {
                    debug!(height = height.get(), view = round.view().get(), %digest, "new finalized tip");
                }
                Update::Block(block, ack) => {
                    let height = block.inner().height;
                    if self.processed.is_some_and(|p| height <= p) {
                        // Already processed before a restart: acknowledging again is harmless.
                        ack.acknowledge();
                        continue;
                    }
                    if let Some(p) = self.processed
                        && height != p + 1
                    {
                        error!(
                            height,
                            processed = p,
                            "finalized blocks arrived out of order; stopping the executor"
                        );
                        return;
                    }
                    let block: Arc<Block> = block.inner_shared();
                    let decisions = Arc::new(block.decisions.clone());
                    self.runner
                        .finalized(height, block.slot, decisions.clone())
                        .await;
                    self.committee.finalized(decisions).await;
                    if let Some(observer) = &self.observer {
                        let _ = observer.send(Finalized {
                            block: block.clone(),
                            at: self.context.current(),
                        });
                    }
                    self.processed = Some(height);
                    self.finalized_height.set(height as i64);
                    info!(
                        height,
                        slot = block.slot,
                        digest = %block.digest(),
                        decisions = block.decisions.len(),
                        "processed finalized block"
                    );
                    ack.acknowledge();
                }
            }
        }
        debug!("executor mailbox closed; stopping");
    }
}
