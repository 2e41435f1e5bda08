//! The fault kinds a campaign draws, one at a time, with what a user would check: the cluster
//! keeps its chain and its duties, and the misbehaving operator is the only one that pays.

use cohort_simulation::{
    ClockSkew, Fault, Kind, LIVENESS_SLOTS, PowerCut, SimConfig, SourceFault, SourceFaultKind, run,
};
use cohort_tests::assert_clean;

fn accepted(report: &cohort_simulation::Report, kind: Kind) -> (u64, u64) {
    (
        report.accepted.get(&kind).copied().unwrap_or(0),
        report.expected.get(&kind).copied().unwrap_or(0),
    )
}

/// Junk on the consensus channels is caught by every peer's consensus (and counted), and the
/// sender stays connected, as an equivocator does (see the next test).
#[test]
fn a_noisy_operator_is_caught_by_every_peer_and_costs_no_attestation() {
    let report = run(&SimConfig {
        slots: 16,
        faults: vec![Fault::Noise(1)],
        ..SimConfig::default()
    });
    assert_clean(&report);
    let (got, owed) = accepted(&report, Kind::Attestation);
    assert_eq!(got, owed, "attestations accepted");
    assert_eq!(report.caught, vec![(0, 1), (2, 1), (3, 1)]);
    assert_eq!(report.blocked, Vec::<(usize, usize)>::new());
}

/// Issue 19, item 5: an equivocating voter is caught by consensus, and only it, but stays
/// connected, so the views it leads still make progress and no slot's aggregations are lost to
/// its leader timeouts. Before, every peer that caught it blocked it at the transport, each view
/// it then led waited out the leader timeout (slot + 2 s), and this run accepted 17 of its 27
/// aggregates and 32 of its 56 sync contributions (measured by restoring the block).
#[test]
fn an_equivocating_operator_is_caught_and_the_chain_stays_one() {
    let report = run(&SimConfig {
        slots: 16,
        faults: vec![Fault::Equivocate(2)],
        ..SimConfig::default()
    });
    // `same_finalized_chain` and `no_two_finalized_blocks_at_one_height` hold.
    assert_clean(&report);
    assert!(
        !report.caught.is_empty() && report.caught.iter().all(|(_, peer)| *peer == 2),
        "the equivocator, and only it, is caught: {:?}",
        report.caught
    );
    assert_eq!(
        report.blocked,
        Vec::<(usize, usize)>::new(),
        "nobody is cut off for votes"
    );
    for kind in [
        Kind::Attestation,
        Kind::Proposal,
        Kind::Aggregate,
        Kind::Contribution,
    ] {
        let (got, owed) = accepted(&report, kind);
        assert_eq!(got, owed, "{kind}s accepted; replay: {}", report.replay);
    }
}

/// Issue 21: a leader that proposes harmful but well-formed values whenever it leads (slot
/// jumps, values of the wrong kind, bad sources, stale blocks, unknown duties, oversized
/// batches) gets none of them finalized and costs the cluster no attestation or proposal.
#[test]
fn a_byzantine_leader_gets_nothing_harmful_finalized_and_costs_no_duty() {
    let report = run(&SimConfig {
        slots: 16,
        faults: vec![Fault::ByzantineLeader(1)],
        ..SimConfig::default()
    });
    assert_clean(&report);
    for kind in [Kind::Attestation, Kind::Proposal] {
        let (got, owed) = accepted(&report, kind);
        assert_eq!(got, owed, "{kind}s accepted; replay: {}", report.replay);
    }
}

/// Issue 21: a peer flooding partial signatures built for the most decoding work costs no
/// duty, and gets no honest operator blocked.
#[test]
fn a_partial_signature_flood_costs_no_duty() {
    let report = run(&SimConfig {
        slots: 16,
        faults: vec![Fault::ByzantineFlood(2)],
        ..SimConfig::default()
    });
    assert_clean(&report);
    for kind in [Kind::Attestation, Kind::Proposal] {
        let (got, owed) = accepted(&report, kind);
        assert_eq!(got, owed, "{kind}s accepted; replay: {}", report.replay);
    }
}

#[test]
fn clocks_a_second_apart_cost_no_duty() {
    let report = run(&SimConfig {
        slots: 16,
        faults: vec![
            Fault::ClockSkew(ClockSkew {
                operator: 1,
                millis: 1000,
            }),
            Fault::ClockSkew(ClockSkew {
                operator: 2,
                millis: -1000,
            }),
        ],
        ..SimConfig::default()
    });
    // Liveness is owed from slot 0: a skewed clock is not a fault the cluster is excused for.
    assert_eq!(report.liveness_from, Some(0));
    assert_clean(&report);
    for kind in [Kind::Attestation, Kind::Proposal] {
        let (got, owed) = accepted(&report, kind);
        assert_eq!(got, owed, "{kind}s accepted");
    }
}

#[test]
fn one_beacon_node_down_or_late_costs_the_cluster_no_attestation() {
    let report = run(&SimConfig {
        slots: 16,
        faults: vec![
            Fault::Source(SourceFault {
                operator: 3,
                kind: SourceFaultKind::Absent,
                from_slot: 3,
                to_slot: 8,
            }),
            Fault::Source(SourceFault {
                operator: 3,
                kind: SourceFaultKind::Late(2500),
                from_slot: 10,
                to_slot: 13,
            }),
        ],
        ..SimConfig::default()
    });
    assert_clean(&report);
    // Three operators with working beacon nodes are a quorum: nothing is lost.
    let (got, owed) = accepted(&report, Kind::Attestation);
    assert_eq!(got, owed, "attestations accepted");
}

#[test]
fn a_power_cut_mid_write_loses_no_finalized_block_and_signs_nothing_twice() {
    let config = SimConfig {
        slots: 16,
        faults: vec![Fault::PowerCut(PowerCut {
            slot: 5,
            restart_slot: 7,
        })],
        ..SimConfig::default()
    };
    let report = run(&config);
    // `same_finalized_chain` across the cut, `no_conflicting_signatures` for every share, and
    // liveness again from LIVENESS_SLOTS after power is back.
    assert_clean(&report);
    assert_eq!(
        report.restarts, 4,
        "every operator restarted from its storage"
    );
    assert_eq!(report.liveness_from, Some(7 + LIVENESS_SLOTS));
    assert!(
        report.engine_finalized_height >= 15,
        "engines caught up: {}",
        report.engine_finalized_height
    );
    // The two runtimes replay bit for bit, cut writes included.
    assert_eq!(run(&config).outcome_digest, report.outcome_digest);
}

/// Issue 19, item 8: message loss heals. A window in which every link loses a third of its
/// messages costs what it costs while it lasts; LIVENESS_SLOTS after it healed every
/// attestation and proposal is owed again, and the checker holds the cluster to it (before,
/// lossy runs had loss for the whole run and liveness was never checked under loss).
#[test]
fn message_loss_heals_and_liveness_is_owed_after_it() {
    use cohort_simulation::Loss;
    let lossy = SimConfig {
        slots: 16,
        faults: vec![Fault::Loss(Loss {
            percent: 35,
            from_slot: 3,
            heal_slot: 7,
        })],
        ..SimConfig::default()
    };
    let report = run(&lossy);
    assert_eq!(report.liveness_from, Some(7 + LIVENESS_SLOTS));
    assert_clean(&report);
    // The window really lost messages: fewer arrived than in the same run without it.
    let calm = run(&SimConfig {
        faults: Vec::new(),
        ..lossy.clone()
    });
    assert!(
        report.messages_per_operator_per_slot < calm.messages_per_operator_per_slot,
        "{} messages per operator-slot with the loss window, {} without",
        report.messages_per_operator_per_slot,
        calm.messages_per_operator_per_slot
    );
    // The flag round-trips, so a failing lossy run replays from its printed command.
    assert!(report.replay.contains("--loss 35@3-7"), "{}", report.replay);
}
