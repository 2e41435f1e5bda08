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
}
