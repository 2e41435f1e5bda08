//! The supervisor's Prometheus metrics (Hourglass exports none). Registered into the node's
//! registry under the `supervisor_` prefix, or a registry of its own for `cohort executor`.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub avs: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AvsLabel {
    pub avs: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ])
}

/// Every metric, cheap to clone (handles share their values).
#[derive(Clone)]
pub struct Metrics {
    pub tasks: Family<TaskLabels, Counter>,
    pub task_duration: Family<AvsLabel, Histogram, fn() -> Histogram>,
    pub in_flight: Family<AvsLabel, Gauge>,
    pub queue_depth: Family<AvsLabel, Gauge>,
    pub restarts: Family<AvsLabel, Counter>,
    pub health_failures: Family<AvsLabel, Counter>,
    pub deployments: Family<OutcomeLabel, Counter>,
    pub log_lines_dropped: Family<AvsLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            tasks: Family::default(),
            task_duration: Family::new_with_constructor(duration_histogram),
            in_flight: Family::default(),
            queue_depth: Family::default(),
            restarts: Family::default(),
            health_failures: Family::default(),
            deployments: Family::default(),
            log_lines_dropped: Family::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("supervisor");
        sub.register(
            "tasks",
            "Tasks answered, by AVS and outcome",
            metrics.tasks.clone(),
        );
        sub.register(
            "task_duration_seconds",
            "Time from submission to answer of executed tasks",
            metrics.task_duration.clone(),
        );
        sub.register(
            "tasks_in_flight",
            "Tasks running on performers",
            metrics.in_flight.clone(),
        );
        sub.register(
            "queue_depth",
            "Tasks waiting for a worker",
            metrics.queue_depth.clone(),
        );
        sub.register(
            "performer_restarts",
            "Performer restarts",
            metrics.restarts.clone(),
        );
        sub.register(
            "health_failures",
            "Failed performer health checks",
            metrics.health_failures.clone(),
        );
        sub.register(
            "deployments",
            "Deployments by outcome",
            metrics.deployments.clone(),
        );
        sub.register(
            "performer_log_lines_dropped",
            "Performer output lines dropped by the log rate limit",
            metrics.log_lines_dropped.clone(),
        );
        metrics
    }

    pub fn task(&self, avs: &str, outcome: &str) {
        self.tasks
            .get_or_create(&TaskLabels {
                avs: avs.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn avs(avs: &str) -> AvsLabel {
        AvsLabel {
            avs: avs.to_string(),
        }
    }
}
