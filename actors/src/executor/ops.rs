//! The cluster operations a finalized block hands the engine: one per decided duty.

use cohort_engine::{B256, ops::ClusterOp};
use cohort_ingress::{Decision, DutyTarget};
use commonware_codec::Encode as _;
use commonware_cryptography::{Hasher as _, Sha256};

/// The op recording `decision`: under the duty's target (`COMMITTEE`, `PROPOSER-v7`, ...), the
/// slot decided and the digest of the value. Keyed by target, not by duty, so the engine's
/// state stays as large as the cluster's validator set however long the chain runs.
pub fn op_for(decision: &Decision) -> Option<ClusterOp> {
    let key = match &decision.duty.target {
        DutyTarget::Committee(_) => decision.duty.role.as_str().to_string(),
        DutyTarget::Validator(index) => format!("{}-v{index}", decision.duty.role.as_str()),
    };
    let digest = Sha256::hash(&[&decision.value.encode()]);
    ClusterOp::new(key, decision.duty.slot, B256::from_slice(digest.as_ref()))
}
