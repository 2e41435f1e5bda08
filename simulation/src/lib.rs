//! The deterministic cluster harness: `n` operators, a simulated network, devnet beacons, and
//! invariants checked while the run goes. A run is a function of its [`SimConfig`] (seed
//! included): the same config gives the same `outcome_digest` and runtime audit, bit for bit.
//!
//! Where things are:
//! - [`config`]: what a run is ([`SimConfig`]) and what its faults excuse; [`faults`] beside it:
//!   the one list of [`Fault`]s, their `simulate` flags, validation and healing;
//! - `cluster`: set-up (keys, links, partitions, operator lives) and the slot loop, with the
//!   power-cut hand-off between two runtimes;
//! - `checker`: the invariants, while the run goes and once it ended, one function each;
//! - [`report`]: the [`Report`] and its human summary (`Display`);
//! - [`campaign`]: many seeds of a fault plan, the failure corpus, shrinking a failing run.

pub mod avs;
mod bounds;
mod byzantine;
pub mod campaign;
mod checker;
mod cluster;
pub mod config;
mod counting;
mod disk;
pub mod engine_fault;
pub mod faults;
mod load;
pub mod logs;
pub mod report;
pub mod source_fault;
mod traced;

pub use cluster::{ClusterKeys, run, run_with_keys, setup::avs_key};
/// What each item of a runner's cryptography costs when a run charges it in simulated time.
pub use cohort_actors::runner::cpu::CryptoCost;
pub use cohort_devnet::Kind;
pub use config::{ConfigError, InjectedBug, LIVENESS_SLOTS, SimConfig};
pub use engine_fault::{EngineFault, EngineFaultKind};
pub use faults::{ClockSkew, Crash, Fault, FaultArgs, Healing, Loss, Offline, Partition, PowerCut};
pub use load::TxReport;
pub use report::{
    CrashCuts, CryptoCpu, DutyCounts, Percentiles, PrebuildCounts, Report, Violation,
};
pub use source_fault::{SourceFault, SourceFaultKind};
