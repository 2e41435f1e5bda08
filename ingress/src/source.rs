//! Where duties and the data to carry them out come from.
//!
//! The simulation's devnet beacon implements [`DutySource`]; a Beacon-API source comes later.
//! Every call can fail or be slow: callers bound them with the runtime's timeout and treat a
//! failure as "try again later", never as "no duties".

use crate::{AttestationData, AttesterDuty, Checkpoint};
use std::future::Future;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("duty source unavailable: {0}")]
    Unavailable(String),
    #[error("duty source does not know {what} yet")]
    NotYet { what: &'static str },
}

/// A beacon node as the duty flow needs it.
pub trait DutySource: Clone + Send + Sync + 'static {
    /// The attester duties of the cluster's validators in `epoch`.
    fn attester_duties(
        &self,
        epoch: u64,
    ) -> impl Future<Output = Result<Vec<AttesterDuty>, SourceError>> + Send;

    /// The attestation data this beacon node would have validators sign in `slot`.
    fn attestation_data(
        &self,
        slot: u64,
    ) -> impl Future<Output = Result<AttestationData, SourceError>> + Send;

    /// The finalized checkpoint this beacon node knows.
    fn finalized_checkpoint(&self) -> impl Future<Output = Result<Checkpoint, SourceError>> + Send;
}
