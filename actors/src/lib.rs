//! Cohort's actors. Each folder is one actor: `mod.rs` (its `Config` and `init`, returning the
//! actor and its mailbox) and `actor.rs` (its state and `select!` run loop). Actors talk only
//! through the mailboxes of `cohort-ingress`.

pub mod avs;
pub mod committee;
pub mod doppelganger;
pub mod executor;
pub mod exits;
pub mod relay;
pub mod runner;
pub mod scheduler;
pub mod task_record;

/// What the actors' tests share.
#[cfg(test)]
mod testing {
    use commonware_runtime::Metrics as _;

    /// The value of the gauge `metric` (its full name) in the runtime's metrics.
    pub fn gauge(context: &commonware_runtime::deterministic::Context, metric: &str) -> i64 {
        context
            .encode()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let rest = line.strip_prefix(metric)?;
                if !(rest.starts_with(' ') || rest.starts_with('{')) {
                    return None;
                }
                rest.rsplit(' ').next()?.parse::<i64>().ok()
            })
            .unwrap_or_else(|| panic!("no gauge {metric}"))
    }

    /// A started simulated network among `operators`, every pair linked both ways with
    /// `latency` and nothing lost.
    pub async fn fully_connected(
        context: &commonware_runtime::deterministic::Context,
        operators: &commonware_utils::ordered::Set<commonware_cryptography::ed25519::PublicKey>,
        max_size: u32,
        latency: std::time::Duration,
    ) -> commonware_p2p::simulated::Oracle<
        commonware_cryptography::ed25519::PublicKey,
        commonware_runtime::deterministic::Context,
    > {
        use commonware_p2p::simulated::{self, Link};
        use commonware_runtime::Supervisor as _;
        let (network, oracle) = simulated::Network::new_with_peers(
            context.child("network"),
            simulated::Config {
                max_size,
                max_peers_per_set: commonware_utils::NZUsize!(operators.len()),
                disconnect_on_block: true,
                tracked_peer_sets: commonware_utils::NZUsize!(1),
            },
            operators.iter().cloned(),
        )
        .await;
        network.start();
        let link = Link {
            latency,
            jitter: std::time::Duration::ZERO,
            success_rate: commonware_utils::probability::Probability::from_f64(1.0)
                .expect("1.0 is a probability"),
        };
        for from in operators.iter() {
            for to in operators.iter().filter(|to| *to != from) {
                oracle
                    .add_link(from.clone(), to.clone(), link.clone())
                    .await
                    .expect("link between distinct peers");
            }
        }
        oracle
    }
}
