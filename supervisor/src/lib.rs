//! Cohort's performer supervisor: runs EigenLayer AVS performers as child processes and serves
//! Hourglass's executor API (`ExecutorService`, `ExecutorManagementService`, `grpc.health.v1`)
//! over them, wire-compatible with Hourglass's aggregator and performers.
//!
//! - [`supervisor`]: the actor that owns every performer, deployment and task;
//! - [`grpc`]: the gRPC handlers, which only talk to the actor's mailbox;
//! - [`process`]: child processes, their logs, their health;
//! - [`signing`]: the one seam to the signing math in `cohort-avs-crypto`;
//! - [`store`]: durable records (processed tasks, serving performers, deployments).

pub mod artifact;
pub mod cli;
pub mod config;
pub mod grpc;
pub mod metrics;
pub mod process;
pub mod proto;
pub mod signing;
pub mod store;
pub mod supervisor;
pub mod validate;

pub use grpc::{Running, start};
