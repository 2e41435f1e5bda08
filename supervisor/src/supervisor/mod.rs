//! The supervisor actor: runs each AVS's performer as a child process and serves tasks and
//! deployments through it. All state (performers, deployments, in-flight and processed tasks,
//! worker pools, challenge tokens) lives in [`actor::Actor`]; the gRPC handlers and the node
//! reach it only through the [`Mailbox`].

mod actor;
mod ingress;

pub use actor::Actor;
pub use ingress::{Mailbox, Message};

use crate::{config, metrics::Metrics, store::Store};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the actor needs.
pub struct Config {
    pub config: Arc<config::Config>,
    pub metrics: Metrics,
    /// Requests waiting for the actor before senders wait.
    pub mailbox_size: usize,
}

/// Opens the durable store and builds the actor and its mailbox; [`Actor::run`] starts it
/// (on a tokio runtime).
pub fn init(cfg: Config) -> Result<(Actor, Mailbox), String> {
    let (store, records) = Store::open(&cfg.config.data_dir.join("supervisor"))
        .map_err(|err| format!("avs.data_dir {}: {err}", cfg.config.data_dir.display()))?;
    let (tx, rx) = mpsc::channel(cfg.mailbox_size);
    let actor = Actor::new(cfg.config, cfg.metrics, store, records, rx);
    Ok((actor, Mailbox::new(tx)))
}
