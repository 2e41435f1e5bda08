//! Several beacon nodes behind one operator: reads go to the healthiest first and fall through
//! on error or timeout, publications go to every node and succeed if one accepts. One dead or
//! lying node therefore never costs a duty, which is what users of every DV client ask for.

use crate::{
    api::{self, Data},
    metrics::Metrics,
    node::{BeaconNode, CallError},
};
use commonware_macros::select;
use commonware_runtime::Clock;
use futures::future::join_all;
use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};
use tracing::{error, info, warn};

/// How usable a node is, best last so that tiers sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// Unreachable, or on another chain: never asked.
    Unusable = 0,
    /// Reachable but still syncing: asked only when nothing better answers.
    Syncing = 1,
    /// Synced, but optimistic or with its execution client offline: its blocks may not be built.
    Degraded = 2,
    Synced = 3,
}

impl Tier {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Unusable => "unusable",
            Self::Syncing => "syncing",
            Self::Degraded => "degraded",
            Self::Synced => "synced",
        }
    }

    /// A node more than this many slots behind its head is syncing, whatever it says.
    const MAX_SYNC_DISTANCE: u64 = 2;

    fn of(syncing: &api::Syncing) -> Self {
        if syncing.is_syncing || syncing.sync_distance > Self::MAX_SYNC_DISTANCE {
            Self::Syncing
        } else if syncing.is_optimistic == Some(true) || syncing.el_offline == Some(true) {
            Self::Degraded
        } else {
            Self::Synced
        }
    }
}

/// The chain every node must be on: a node with another genesis is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainIdentity {
    pub genesis_validators_root: [u8; 32],
    pub genesis_fork_version: [u8; 4],
}

#[derive(Clone, Debug)]
struct NodeState {
    tier: Tier,
    /// `None` until the node has answered `beacon/genesis` once.
    compatible: Option<bool>,
}

/// What a health poll found, for `/health` and for re-sending registrations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHealth {
    pub url: String,
    pub tier: Tier,
    /// The node was unusable before this poll and is usable now.
    pub came_back: bool,
}

pub struct Nodes<E> {
    context: Arc<E>,
    nodes: Arc<[BeaconNode]>,
    state: Arc<Mutex<Vec<NodeState>>>,
    identity: Arc<Mutex<Option<ChainIdentity>>>,
    attempt_timeout: Duration,
}

// By hand: the runtime's contexts are not `Clone`, and an `Arc` of one needs no bound.
impl<E> Clone for Nodes<E> {
    fn clone(&self) -> Self {
        Self {
            context: self.context.clone(),
            nodes: self.nodes.clone(),
            state: self.state.clone(),
            identity: self.identity.clone(),
            attempt_timeout: self.attempt_timeout,
        }
    }
}

impl<E: Clock + Send + Sync + 'static> Nodes<E> {
    /// `attempt_timeout` bounds each node's turn: with several nodes, a fraction of a slot each.
    pub fn new(
        context: Arc<E>,
        urls: &[String],
        metrics: &Metrics,
        attempt_timeout: Duration,
    ) -> Result<Self, String> {
        if urls.is_empty() {
            return Err("no beacon node configured".into());
        }
        let nodes = urls
            .iter()
            .map(|url| BeaconNode::new(url, metrics.for_node(url)))
            .collect::<Result<Vec<_>, _>>()?;
        let state = vec![
            NodeState {
                // Unknown until the first poll; asked in configured order meanwhile.
                tier: Tier::Syncing,
                compatible: None,
            };
            nodes.len()
        ];
        Ok(Self {
            context,
            nodes: nodes.into(),
            state: Arc::new(Mutex::new(state)),
            identity: Arc::new(Mutex::new(None)),
            attempt_timeout,
        })
    }

    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|node| node.url())
    }

    /// Fixes the chain every node must be on (from the first node that answered at start).
    pub fn set_identity(&self, identity: ChainIdentity) {
        if let Ok(mut slot) = self.identity.lock() {
            *slot = Some(identity);
        }
    }

    fn identity(&self) -> Option<ChainIdentity> {
        self.identity.lock().ok().and_then(|slot| *slot)
    }

    /// Node positions to ask, healthiest first, in configured order within a tier. Unusable
    /// nodes come last rather than never: when every node looks down, asking is still better
    /// than failing the duty, and a node may have come back since the last poll.
    fn order(&self) -> Vec<usize> {
        let Ok(state) = self.state.lock() else {
            return (0..self.nodes.len()).collect();
        };
        let mut order: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| state[i].compatible != Some(false))
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(state[i].tier));
        order
    }

    /// The compatible nodes, healthiest first.
    pub fn ranked(&self) -> Vec<BeaconNode> {
        self.order()
            .into_iter()
            .map(|i| self.nodes[i].clone())
            .collect()
    }

    /// Asks nodes in turn until one answers; each gets `attempt_timeout`.
    pub async fn read<T, F, Fut>(&self, what: &str, call: F) -> Result<T, String>
    where
        F: Fn(BeaconNode) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut failures = Vec::new();
        for i in self.order() {
            let node = self.nodes[i].clone();
            let url = node.url().to_string();
            let timeout = self.context.sleep(self.attempt_timeout);
            let outcome = select! {
                result = call(node) => result,
                _ = timeout => Err(CallError::Timeout(self.attempt_timeout.as_millis() as u64)),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(err) => {
                    // "Not found" is an answer (an empty slot, an unknown root), not a failing
                    // node: another node may still know it, but it is no cause for alarm.
                    if matches!(err, CallError::Status { status: 404, .. }) {
                        tracing::debug!(node = %url, %err, "beacon node does not have {what}; trying the next");
                    } else {
                        warn!(node = %url, %err, "beacon node failed to answer {what}; trying the next");
                    }
                    failures.push(format!("{url}: {err}"));
                }
            }
        }
        if failures.is_empty() {
            failures.push("no compatible beacon node".into());
        }
        Err(failures.join("; "))
    }

    /// Sends to every compatible node at once; succeeds with the number that accepted if any
    /// did. Each node's refusal is logged with its own message: that is what tells an operator
    /// why a submission failed.
    pub async fn publish<F, Fut>(&self, what: &str, call: F) -> Result<usize, String>
    where
        F: Fn(BeaconNode) -> Fut,
        Fut: Future<Output = Result<(), CallError>>,
    {
        let attempts = self.order().into_iter().map(|i| {
            let node = self.nodes[i].clone();
            let url = node.url().to_string();
            let context = self.context.clone();
            let timeout = self.attempt_timeout * 2;
            let call = call(node);
            async move {
                let outcome = select! {
                    result = call => result,
                    _ = context.sleep(timeout) => Err(CallError::Timeout(timeout.as_millis() as u64)),
                };
                (url, outcome)
            }
        });
        let mut accepted = 0;
        let mut failures = Vec::new();
        for (url, outcome) in join_all(attempts).await {
            match outcome {
                Ok(()) => accepted += 1,
                Err(err) => {
                    warn!(node = %url, %err, "beacon node did not accept {what}");
                    failures.push(format!("{url}: {err}"));
                }
            }
        }
        if accepted > 0 {
            Ok(accepted)
        } else if failures.is_empty() {
            Err("no compatible beacon node".into())
        } else {
            Err(failures.join("; "))
        }
    }

    /// Polls every node's sync state (and, once, its genesis) and re-ranks them.
    pub async fn poll_health(&self) -> Vec<NodeHealth> {
        let identity = self.identity();
        let checks = self.nodes.iter().enumerate().map(|(i, node)| {
            let node = node.clone();
            let context = self.context.clone();
            let timeout = self.attempt_timeout;
            let needs_genesis = self
                .state
                .lock()
                .map(|state| state[i].compatible.is_none())
                .unwrap_or(false);
            async move {
                let probe = async {
                    let syncing: Data<api::Syncing> =
                        node.get("node/syncing", "/eth/v1/node/syncing").await?;
                    let compatible = match (needs_genesis, identity) {
                        (true, Some(identity)) => {
                            let genesis: Data<api::Genesis> =
                                node.get("beacon/genesis", "/eth/v1/beacon/genesis").await?;
                            Some(
                                genesis.data.genesis_validators_root.0
                                    == identity.genesis_validators_root
                                    && genesis.data.genesis_fork_version
                                        == identity.genesis_fork_version,
                            )
                        }
                        _ => None,
                    };
                    Ok::<_, CallError>((Tier::of(&syncing.data), compatible))
                };
                let outcome = select! {
                    result = probe => result,
                    _ = context.sleep(timeout) => Err(CallError::Timeout(timeout.as_millis() as u64)),
                };
                (i, node, outcome)
            }
        });
        let results = join_all(checks).await;
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let mut report = Vec::with_capacity(results.len());
        for (i, node, outcome) in results {
            let before = state[i].tier;
            let tier = match outcome {
                Ok((tier, compatible)) => {
                    if let Some(compatible) = compatible {
                        if !compatible {
                            error!(
                                node = %node.url(),
                                "beacon node is on another chain (its genesis differs from the \
                                 cluster's); it is never asked again"
                            );
                        }
                        state[i].compatible = Some(compatible);
                    }
                    if state[i].compatible == Some(false) {
                        Tier::Unusable
                    } else {
                        tier
                    }
                }
                Err(err) => {
                    if before != Tier::Unusable {
                        warn!(node = %node.url(), %err, "beacon node is unreachable; reads go to the others");
                    }
                    Tier::Unusable
                }
            };
            if tier != before && tier != Tier::Unusable {
                info!(node = %node.url(), tier = tier.as_str(), "beacon node health changed");
            }
            state[i].tier = tier;
            node.metrics().set_health(tier as i64);
            report.push(NodeHealth {
                url: node.url().to_string(),
                tier,
                came_back: before == Tier::Unusable && tier != Tier::Unusable,
            });
        }
        report
    }

    /// Each node with its last known tier.
    pub fn health(&self) -> Vec<NodeHealth> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        self.nodes
            .iter()
            .zip(state.iter())
            .map(|(node, state)| NodeHealth {
                url: node.url().to_string(),
                tier: state.tier,
                came_back: false,
            })
            .collect()
    }

    /// Every node, for calls that must reach one node in particular (start-up checks).
    pub fn all(&self) -> &[BeaconNode] {
        &self.nodes
    }

    /// Marks a node as on another chain, found so at start.
    pub fn refuse(&self, url: &str) {
        if let Ok(mut state) = self.state.lock() {
            for (node, state) in self.nodes.iter().zip(state.iter_mut()) {
                if node.url() == url {
                    state.compatible = Some(false);
                    state.tier = Tier::Unusable;
                }
            }
        }
    }

    /// Marks a node as checked and on the cluster's chain.
    pub fn accept(&self, url: &str) {
        if let Ok(mut state) = self.state.lock() {
            for (node, state) in self.nodes.iter().zip(state.iter_mut()) {
                if node.url() == url {
                    state.compatible = Some(true);
                }
            }
        }
    }
}
