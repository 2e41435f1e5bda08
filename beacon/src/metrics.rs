//! Per-node metrics: what an operator reads to tell a slow or failing beacon node from a slow
//! cluster.

use commonware_runtime::telemetry::metrics::Registered;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub node: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ValidatorLabels {
    pub validator: String,
}

/// Per-node, per-endpoint latency histograms, all with [`latency_buckets`].
type Latency = Family<EndpointLabels, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
}

/// Every family this crate publishes, registered once on the runtime's registry (the handles
/// keep them registered).
#[derive(Clone)]
pub struct Metrics {
    requests: Registered<Family<EndpointLabels, Counter>>,
    errors: Registered<Family<EndpointLabels, Counter>>,
    latency: Registered<Latency>,
    pub(crate) health: Registered<Family<NodeLabels, Gauge>>,
    pub(crate) submissions: Registered<Family<RoleLabels, Counter>>,
    pub(crate) included: Registered<Family<ValidatorLabels, Counter>>,
    pub(crate) missed: Registered<Family<ValidatorLabels, Counter>>,
    pub(crate) inclusion_distance: Registered<Histogram>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl Metrics {
    /// Registers on `registry`; `clock` times the requests.
    pub fn register<E: commonware_runtime::Clock + Send + Sync + 'static>(
        registry: &impl commonware_runtime::Metrics,
        clock: Arc<E>,
    ) -> Self {
        let context = registry;
        Self {
            requests: context.register(
                "beacon_requests",
                "Requests to each beacon node, by endpoint",
                Family::default(),
            ),
            errors: context.register(
                "beacon_errors",
                "Failed requests to each beacon node (no answer, non-2xx, malformed), by endpoint",
                Family::default(),
            ),
            latency: context.register(
                "beacon_request_seconds",
                "Latency of each beacon node's answers, by endpoint",
                Family::new_with_constructor(latency_buckets as fn() -> Histogram),
            ),
            health: context.register(
                "beacon_node_health",
                "Each beacon node's health tier: 0 unreachable or incompatible, 1 syncing, \
                 2 optimistic or execution offline, 3 synced",
                Family::default(),
            ),
            submissions: context.register(
                "beacon_submissions",
                "Signed objects the beacon nodes accepted, by role",
                Family::default(),
            ),
            included: context.register(
                "attestations_included",
                "Cluster attestations found on chain, by validator",
                Family::default(),
            ),
            missed: context.register(
                "attestations_missed",
                "Cluster attestations not found on chain within an epoch of their slot, by validator",
                Family::default(),
            ),
            inclusion_distance: context.register(
                "attestation_inclusion_distance_slots",
                "Slots between an attestation's slot and the block that included it",
                Histogram::new([1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0, 32.0]),
            ),
            clock: Arc::new(move || clock.current()),
        }
    }

    pub fn for_node(&self, node: &str) -> NodeMetrics {
        NodeMetrics {
            metrics: self.clone(),
            node: node.to_string(),
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        (self.clock)()
    }
}

/// One node's view of [`Metrics`].
#[derive(Clone)]
pub struct NodeMetrics {
    metrics: Metrics,
    node: String,
}

impl NodeMetrics {
    fn labels(&self, endpoint: &str) -> EndpointLabels {
        EndpointLabels {
            node: self.node.clone(),
            endpoint: endpoint.to_string(),
        }
    }

    pub(crate) fn request(&self, endpoint: &str) {
        self.metrics
            .requests
            .get_or_create(&self.labels(endpoint))
            .inc();
    }

    pub(crate) fn error(&self, endpoint: &str) {
        self.metrics
            .errors
            .get_or_create(&self.labels(endpoint))
            .inc();
    }

    pub(crate) fn latency(&self, endpoint: &str, elapsed: Duration) {
        self.metrics
            .latency
            .get_or_create(&self.labels(endpoint))
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.metrics.now()
    }

    pub(crate) fn set_health(&self, tier: i64) {
        self.metrics
            .health
            .get_or_create(&NodeLabels {
                node: self.node.clone(),
            })
            .set(tier);
    }
}
