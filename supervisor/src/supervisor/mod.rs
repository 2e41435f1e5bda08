//! The supervisor actor: runs each AVS's performer as a child process and serves tasks and
//! deployments through it. All state (performers, deployments, in-flight and processed tasks,
//! worker pools, challenge tokens) lives in [`actor::Actor`]; the gRPC handlers and the node
//! reach it only through the [`Mailbox`].

mod actor;
mod ingress;

pub use actor::Actor;
pub use ingress::{Mailbox, Message};

use crate::{config, metrics::Metrics as SupervisorMetrics, store::Store};
use commonware_runtime::{Clock, Metrics, Spawner, Storage};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the actor needs.
pub struct Config {
    pub config: Arc<config::Config>,
    pub metrics: SupervisorMetrics,
    /// Requests waiting for the actor before senders wait.
    pub mailbox_size: usize,
}

/// Opens the durable store in `storage`'s partitions and builds the actor and its mailbox;
/// [`Actor::run`] starts it (on a tokio runtime).
pub async fn init<E: Storage + Clock + Metrics + Spawner>(
    cfg: Config,
    storage: E,
) -> Result<(Actor, Mailbox), String> {
    let (store, records) = Store::open(storage).await?;
    let (tx, rx) = mpsc::channel(cfg.mailbox_size);
    let actor = Actor::new(cfg.config, cfg.metrics, store, records, rx);
    Ok((actor, Mailbox::new(tx)))
}
