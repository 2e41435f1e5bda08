//! The cluster's validators as the chain knows them: each locked public key must have the index
//! the lock names, or the cluster would sign duties for someone else's validator.

use crate::{
    api::{self, Data},
    nodes::Nodes,
};
use commonware_runtime::Clock;
use std::collections::BTreeMap;
use tracing::warn;

/// Public keys per request: repeated `id` parameters keep the URL well under common limits.
const BATCH: usize = 64;

/// Looks up every `(index, public key hex)` and returns the indices the chain knows with that
/// key. A key the chain does not know yet (not deposited or not yet processed) is left out with
/// a warning; a key at another index fails: the lock and the chain disagree.
pub async fn check<E: Clock + Send + Sync + 'static>(
    nodes: &Nodes<E>,
    locked: &[(u64, String)],
) -> Result<Vec<u64>, String> {
    // The API names keys as 0x-prefixed lowercase hex; the lock may not prefix them.
    let normal = |key: &str| {
        let key = key.to_ascii_lowercase();
        if key.starts_with("0x") {
            key
        } else {
            format!("0x{key}")
        }
    };
    let mut found: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for batch in locked.chunks(BATCH) {
        let query: Vec<String> = batch
            .iter()
            .map(|(_, key)| format!("id={}", normal(key)))
            .collect();
        let path = format!("/eth/v1/beacon/states/head/validators?{}", query.join("&"));
        let answer: Data<Vec<api::ValidatorEntry>> = nodes
            .read("the cluster's validators", |node| {
                let path = &path;
                async move { node.get("beacon/states/validators", path).await }
            })
            .await?;
        for entry in answer.data {
            found.insert(normal(&entry.validator.pubkey), (entry.index, entry.status));
        }
    }
    let mut known = Vec::new();
    for (index, key) in locked {
        match found.get(&normal(key)) {
            Some((chain_index, _)) if chain_index != index => {
                return Err(format!(
                    "validator {key} is index {chain_index} on the chain but {index} in the \
                     cluster lock; the lock does not describe this chain's validators"
                ));
            }
            Some((_, status)) => {
                if status.starts_with("exited") || status.starts_with("withdrawal") {
                    warn!(
                        validator = index,
                        status, "validator has exited; it has no duties"
                    );
                }
                known.push(*index);
            }
            None => warn!(
                validator = index,
                public_key = %key,
                "the beacon node does not know this validator yet; it gets no duties until a restart"
            ),
        }
    }
    Ok(known)
}

/// The hex form the API writes keys in.
pub fn key_hex(bytes: &[u8]) -> String {
    api::hex(bytes)
}
