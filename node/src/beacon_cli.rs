//! The beacon nodes as `cohort cluster init` and `cohort config check` see them: asked once,
//! on a short-lived runtime, before any operator runs.

use cohort_beacon::{
    Chain, Metrics, Nodes,
    chain::{self, NodeReport},
};
use commonware_runtime::{Runner as _, Supervisor as _, tokio};
use std::{sync::Arc, time::Duration};

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
