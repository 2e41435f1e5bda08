//! A distributed validator's client of the standard Beacon node API.
//!
//! [`ApiSource`] is the cluster's [`DutySource`](cohort_ingress::DutySource) and
//! [`DutySink`](cohort_ingress::DutySink) on one or several real beacon nodes ([`Nodes`]): the
//! same traits the embedded devnet beacon implements, so the scheduler and runner do not know
//! which one they talk to. [`chain::discover`] learns the chain (genesis, timing, fork) from the
//! nodes at start, and [`events::head_events`] follows their event stream.

pub mod api;
pub mod blocks;
pub mod chain;
pub mod effectiveness;
pub mod events;
pub mod metrics;
pub mod node;
pub mod nodes;
pub mod source;
pub mod validators;

pub use chain::Chain;
pub use metrics::Metrics;
pub use nodes::{NodeHealth, Nodes, Tier};
pub use source::{ApiSource, Settings};
