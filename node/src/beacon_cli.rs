//! The beacon nodes as `cohort cluster init` and `cohort config check` see them: asked once,
//! on a short-lived runtime, before any operator runs.

use cohort_beacon::{
    Chain, Metrics, Nodes,
    api::{Data, ValidatorEntry},
    chain::{self, NodeReport},
};
use commonware_runtime::{Runner as _, Supervisor as _, tokio};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

/// Each question to a node gets this long: enough for a node across the world, short enough
/// that a typo in a URL is reported at once.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

fn runtime() -> tokio::Runner {
    tokio::Runner::new(tokio::Config::new().with_catch_panics(false))
}

/// The chain the nodes describe (genesis, slot timing, fork); every reachable node must agree.
pub fn chain_of(urls: &[String]) -> Result<Chain, String> {
    let urls = urls.to_vec();
    runtime().start(|context| async move {
        let clock = Arc::new(context.child("beacon"));
        let metrics = Metrics::register(&context, clock.clone());
        let nodes = Nodes::new(clock, &urls, &metrics, ATTEMPT_TIMEOUT)?;
        chain::discover(&nodes).await
    })
}

/// Each node's version, genesis and sync state.
pub fn describe(urls: &[String]) -> Result<Vec<NodeReport>, String> {
    let urls = urls.to_vec();
    runtime().start(|context| async move {
        let clock = Arc::new(context.child("beacon"));
        let metrics = Metrics::register(&context, clock.clone());
        let nodes = Nodes::new(clock, &urls, &metrics, ATTEMPT_TIMEOUT)?;
        Ok(chain::describe(&nodes).await)
    })
}

/// The chain index of each public key (lowercase hex, no `0x`) the nodes know; keys they do not
/// know are absent from the answer.
pub fn indices_of(
    urls: &[String],
    public_keys: &[String],
) -> Result<BTreeMap<String, u64>, String> {
    /// Keys per request: repeated `id` parameters keep the URL well under common limits.
    const BATCH: usize = 64;
    let urls = urls.to_vec();
    let public_keys = public_keys.to_vec();
    runtime().start(|context| async move {
        let clock = Arc::new(context.child("beacon"));
        let metrics = Metrics::register(&context, clock.clone());
        let nodes = Nodes::new(clock, &urls, &metrics, ATTEMPT_TIMEOUT)?;
        let mut found = BTreeMap::new();
        for batch in public_keys.chunks(BATCH) {
            let query: Vec<String> = batch.iter().map(|key| format!("id=0x{key}")).collect();
            let path = format!("/eth/v1/beacon/states/head/validators?{}", query.join("&"));
            let answer: Data<Vec<ValidatorEntry>> = nodes
                .read("the imported validators", |node| {
                    let path = &path;
                    async move { node.get("beacon/states/validators", path).await }
                })
                .await?;
            for entry in answer.data {
                let key = entry.validator.pubkey.to_ascii_lowercase();
                found.insert(key.trim_start_matches("0x").to_string(), entry.index);
            }
        }
        Ok(found)
    })
}
