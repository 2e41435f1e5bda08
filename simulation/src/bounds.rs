//! What every operator may hold in memory at once: each actor counts its growing collections in
//! a `*_held` gauge, and the simulation reads them every slot. A bound depends on the cluster's
//! shape, never on how many slots ran, so a leak shows as a violation however slowly it grows.

use cohort_actors::runner::POST_CONSENSUS_SLOTS;
use cohort_ingress::{
    committee::MAX_BLOCK_AGE_SLOTS,
    sync::{MAX_SYNC_COMMITTEE_SUBNETS, MAX_SYNC_SUBCOMMITTEE_SIZE},
};

/// The prefix the simulation's operator contexts give every actor metric.
const PREFIX: &str = "lifecycle_operator_";

/// The bound of the gauge `name` (without [`PREFIX`]) for `validators` and `operators`, or
/// `None` for a gauge nobody bounded yet (which is itself a violation: every gauge needs one).
pub fn bound(name: &str, validators: u64, operators: u64) -> Option<u64> {
    let v = validators;
    let n = operators;
    // The slots a duty's state lives for: its own, the block-age window, post-consensus.
    let w = 1 + MAX_BLOCK_AGE_SLOTS + POST_CONSENSUS_SLOTS;
    let e = 32;
    // Sync committee members who sign in one slot (at most the committee's positions), and
    // (member, subcommittee) pairs among them.
    let (positions, subnets) = (
        MAX_SYNC_SUBCOMMITTEE_SIZE * MAX_SYNC_COMMITTEE_SUBNETS,
        MAX_SYNC_COMMITTEE_SUBNETS,
    );
    let sync = v.min(positions);
    let pairs = (subnets * v).min(positions);
    Some(match name {
        "runner_running_duties_held" | "runner_finalized_early_held" | "runner_step_items_held" => {
            2 * (w + 1) + 2 * v + (w + 1) * (sync + pairs)
        }
        "runner_waiting_keys_held" => 2 * (w + 1) + 4 * v + 2 * (w + 1) * (sync + pairs),
        // Keys with partials, over the window's slots and the next. Each holds at least one
        // partial, and what one sender (this operator included) may add per slot is capped
        // twice: by the runner's per-slot budget (twice what an honest operator signs in a
        // slot) and by MAX_ROOTS_PER_SENDER roots per validator. A key a lone sender opened
        // costs about 400 bytes with its share of the map (its point stays compressed until
        // awaited; `a_key_a_lone_sender_opens_costs_a_few_hundred_bytes`), so one byzantine
        // sender at 10,000 validators can make a runner hold at most ~63,000 keys per slot,
        // ~180 MB over the window's 7 slots (before: 16 roots x V x 7 slots of ~3 KB each,
        // ~3.4 GB).
        "runner_quorum_entries_held" => {
            let budget = cohort_actors::runner::max_partials_per_slot(v as usize) as u64;
            let roots = cohort_actors::runner::quorum::MAX_ROOTS_PER_SENDER as u64 * v;
            n * budget.min(roots) * (w + 2)
        }
        // Missed duties of MISSED_MEMORY_SLOTS slots: a committee duty and a proposer per slot,
        // an aggregator per validator and epoch (the window spans three epochs at most), the
        // slot's sync committee members' contributions.
        "runner_missed_duties_held" => {
            let m = cohort_actors::runner::MISSED_MEMORY_SLOTS + 1;
            2 * m + 3 * v + m * sync
        }
        "runner_decided_data_held" => w + 3,
        "runner_pending_calls_held" => 3 * (w + 2) + 8 * v + 3 * (w + 2) * sync,
        "committee_pool_values_held" => 2 * (v + 2) + 2 * sync,
        // Decided duties are remembered 64 slots, known ones until the end of the next epoch.
        "committee_known_duties_held" | "committee_decided_duties_held" => {
            4 * (v + 2 * e) + (64 + 2 * e + 1) * sync
        }
        "committee_decided_data_held" => 2 * e + 3,
        "committee_pending_proposals_held" | "committee_pending_verifications_held" => 4,
        // The first offer of each peer for the previous, current and next slot.
        "committee_offers_held" => 3 * n,
        "scheduler_duty_epochs_held" => 3,
        "scheduler_scheduled_duties_held" => 3 * (v + e) + 3 * sync,
        "scheduler_duty_fetches_held" => 5,
        "scheduler_dispatched_slots_held" => 4,
        "scheduler_head_slots_held" => 2,
        "executor_proposed_payloads_held" => 2 * e + 1,
        // Marshal leaves at most `max_pending_acks` (16) blocks unacknowledged.
        "executor_finalized_blocks_held" => 16,
        "executor_requests_held" => cohort_ingress::executor::REQUESTS_CAPACITY as u64,
        "executor_engine_calls_held" => cohort_actors::executor::MAX_ENGINE_CALLS as u64,
        // Submissions and shared tasks stop at the cap of tracked tasks; beyond it only orders
        // from finalized blocks are tracked, and those come from what the other operators
        // track (each under the same cap).
        "avs_tasks_held" => n * cohort_operator::MAX_TRACKED_TASKS as u64,
        _ => return None,
    })
}

/// Every `*_held` gauge in a metrics encoding: `(operator, name without prefix, value)`.
pub fn held(encoded: &str) -> Vec<(usize, String, u64)> {
    encoded
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, rest) = line.split_once('{')?;
            let name = name.strip_prefix(PREFIX)?;
            if !name.ends_with("_held") {
                return None;
            }
            let operator = rest
                .split("operator=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()?;
            let value = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((operator, name.to_string(), value as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_read_with_their_operator_and_bounded_by_shape_alone() {
        let encoded = "# HELP x\nlifecycle_operator_runner_quorum_entries_held{operator=\"2\"} 12\n\
                       lifecycle_operator_runner_partials_invalid_total{operator=\"1\",sender=\"2\"} 3\n\
                       lifecycle_operator_scheduler_head_slots_held{operator=\"0\"} 1\n";
        assert_eq!(
            held(encoded),
            vec![
                (2, "runner_quorum_entries_held".to_string(), 12),
                (0, "scheduler_head_slots_held".to_string(), 1)
            ]
        );
        assert_eq!(bound("scheduler_head_slots_held", 64, 4), Some(2));
        assert!(
            bound("runner_running_duties_held", 64, 4)
                < bound("runner_running_duties_held", 128, 4)
        );
        assert_eq!(bound("a_new_gauge_held", 64, 4), None);
    }
}
