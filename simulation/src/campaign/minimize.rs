//! Shrinking a failing run to the fewest faults and slots that still break the same invariant.

use crate::{Fault, SimConfig, Violation, run};
use serde::Serialize;
use std::time::Duration;

/// What shrinking a failing run found.
#[derive(Clone, Debug, Serialize)]
pub struct Minimized {
    /// The smallest run found that still violates `invariant`.
    #[serde(skip)]
    pub config: SimConfig,
    /// The same, as `cohort simulate` flags.
    pub config_flags: String,
    pub invariant: String,
    pub first_violation: Violation,
    /// Runs tried while shrinking.
    pub attempts: u64,
}

/// Shrinks a failing run: drops faults one at a time, calms the network and shortens the run
/// while it still violates the same invariant as `config`'s first violation. Returns `None`
/// if `config` does not fail.
pub fn minimize(
    config: &SimConfig,
    mut progress: impl FnMut(&SimConfig, bool),
) -> Option<Minimized> {
    let mut attempts = 1;
    let first = run(config).violations.into_iter().next()?;
    let invariant = first.invariant.clone();
    let mut best = config.clone();
    let mut best_violation = first;
    let mut still_fails = |candidate: &SimConfig, attempts: &mut u64| -> Option<Violation> {
        if candidate.validate().is_err() {
            return None;
        }
        *attempts += 1;
        let found = run(candidate)
            .violations
            .into_iter()
            .find(|v| v.invariant == invariant);
        progress(candidate, found.is_some());
        found
    };
    loop {
        let mut shrunk = false;
        for candidate in smaller(&best) {
            if let Some(violation) = still_fails(&candidate, &mut attempts) {
                best = candidate;
                best_violation = violation;
                shrunk = true;
                break;
            }
        }
        if !shrunk {
            break;
        }
    }
    Some(Minimized {
        config_flags: best.replay_command(),
        config: best,
        invariant: best_violation.invariant.clone(),
        first_violation: best_violation,
        attempts,
    })
}

/// Every run one step smaller than `config`, most promising first: one fault fewer, a calmer
/// network, fewer slots (cut to just past the violation, then halved).
fn smaller(config: &SimConfig) -> Vec<SimConfig> {
    let mut out = Vec::new();
    // Crashes and late starts first: they are most often what a failure needs.
    let mut order: Vec<usize> = (0..config.faults.len()).collect();
    order.sort_by_key(|at| shrink_order(&config.faults[*at]));
    out.extend(order.into_iter().map(|at| {
        let mut faults = config.faults.clone();
        faults.remove(at);
        SimConfig {
            faults,
            ..config.clone()
        }
    }));
    // AVS load: a performer fault fewer, no tasks at all, or half as many.
    if let Some(avs) = &config.avs {
        for operator in avs.performer_faults.keys() {
            let mut avs = avs.clone();
            avs.performer_faults.remove(operator);
            out.push(SimConfig {
                avs: Some(avs),
                ..config.clone()
            });
        }
        out.push(SimConfig {
            avs: None,
            ..config.clone()
        });
        if avs.tasks_per_slot > 1 {
            out.push(SimConfig {
                avs: Some(crate::avs::AvsLoad {
                    tasks_per_slot: avs.tasks_per_slot / 2,
                    ..avs.clone()
                }),
                ..config.clone()
            });
        }
    }
    if config.delivery < 1.0 {
        out.push(SimConfig {
            delivery: 1.0,
            ..config.clone()
        });
    }
    if !config.jitter.is_zero() {
        out.push(SimConfig {
            jitter: Duration::ZERO,
            ..config.clone()
        });
    }
    if config.latency != SimConfig::default().latency {
        out.push(SimConfig {
            latency: SimConfig::default().latency,
            ..config.clone()
        });
    }
    // Fewer slots, keeping every fault inside the run.
    let last_fault = config
        .faults
        .iter()
        .filter_map(Fault::last_slot)
        .max()
        .unwrap_or(1);
    for slots in [config.slots / 2, config.slots * 3 / 4, config.slots - 1] {
        if slots >= last_fault.max(2) && slots < config.slots {
            out.push(SimConfig {
                slots,
                ..config.clone()
            });
        }
    }
    out
}

/// Which faults shrinking tries to drop first.
fn shrink_order(fault: &Fault) -> u8 {
    match fault {
        Fault::Crash(_) => 0,
        Fault::Offline(_) => 1,
        Fault::Byzantine(_) => 2,
        Fault::Noise(_) => 3,
        Fault::Equivocate(_) => 4,
        Fault::ByzantineLeader(_) => 5,
        Fault::ByzantineFlood(_) => 6,
        Fault::Partition(_) => 7,
        Fault::Engine(_) => 8,
        Fault::Source(_) => 9,
        Fault::ClockSkew(_) => 10,
        Fault::PowerCut(_) => 11,
        Fault::Loss(_) => 12,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Crash;

    #[test]
    fn shrinking_steps_are_each_one_fault_or_setting_smaller() {
        let crash = Fault::Crash(Crash {
            operator: 1,
            slot: 3,
            restart_slot: Some(6),
        });
        let config = SimConfig {
            faults: vec![crash.clone(), Fault::Byzantine(2)],
            delivery: 0.95,
            slots: 40,
            avs: Some(crate::avs::AvsLoad {
                tasks_per_slot: 6,
                performer_faults: [(0, crate::avs::PerformerFault::Slow)].into(),
            }),
            ..SimConfig::default()
        };
        let steps = smaller(&config);
        assert!(steps.iter().any(|c| c.avs.is_none()));
        assert!(steps.iter().any(|c| {
            c.avs
                .as_ref()
                .is_some_and(|avs| avs.performer_faults.is_empty() && avs.tasks_per_slot == 6)
        }));
        assert!(
            steps
                .iter()
                .any(|c| c.avs.as_ref().is_some_and(|avs| avs.tasks_per_slot == 3))
        );
        assert!(steps.iter().any(|c| c.faults == vec![Fault::Byzantine(2)]));
        assert!(steps.iter().any(|c| c.faults == vec![crash.clone()]));
        assert!(steps.iter().any(|c| c.delivery == 1.0));
        assert!(steps.iter().any(|c| c.slots == 20));
        // Never so short that a fault falls outside the run.
        assert!(steps.iter().all(|c| c.slots >= 7));
    }
}
