//! What a run reports: the numbers a reader compares across runs, the invariants that broke,
//! and the command that replays it. `Display` is the human summary `cohort simulate` prints.

mod build;

use cohort_devnet::Kind;
use serde::Serialize;
use std::{collections::BTreeMap, fmt};

pub(crate) use build::build;

/// What lone crashes kept of their operators' unsynced writes, summed over every crash and
/// blob (`simulation/src/disk.rs`).
#[derive(Clone, Debug, Serialize, Default, PartialEq, Eq)]
pub struct CrashCuts {
    /// Blobs that had unsynced mutations when their operator crashed.
    pub blobs: u64,
    /// Their unsynced writes and resizes.
    pub unsynced: u64,
    /// Of those, the ones that reached the disk whole.
    pub kept: u64,
    /// Writes that reached it torn.
    pub torn: u64,
}

impl CrashCuts {
    pub(crate) fn add(&mut self, cuts: &[crate::disk::Cut]) {
        for cut in cuts {
            self.blobs += 1;
            self.unsynced += cut.unsynced as u64;
            self.kept += cut.kept as u64;
            self.torn += u64::from(cut.torn.is_some());
        }
    }
}

/// One invariant broken once.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    pub invariant: String,
    pub slot: u64,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

/// How leaders got their slots' payloads (see [`Report::prebuild`]).
#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct PrebuildCounts {
    /// The payload pre-built at the previous slot's last interval was still on the head.
    pub hits: u64,
    /// A pre-build existed but the head had moved: rebuilt on the new head.
    pub fallbacks: u64,
    /// No pre-build for the slot (a late start or a restart): built at the slot.
    pub misses: u64,
}

/// See [`Report::crypto_cpu_ms_per_operator_slot`].
#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct CryptoCpu {
    /// Signing with the operator's shares.
    pub sign: f64,
    /// Decoding the peers' partial-signature messages.
    pub decode: f64,
    /// Recovering each validator's signature and verifying it against the validator's key.
    pub recover_and_verify: f64,
    pub total: f64,
}

#[derive(Clone, Debug, Serialize, Default, PartialEq)]
pub struct DutyCounts {
    /// Validator attestation duties scheduled in the run's slots.
    pub scheduled: u64,
    /// Of those, decided in a finalized block of their own slot.
    pub decided: u64,
    pub missed: u64,
    /// Committee duties (one per slot with attesters), the unit of agreement.
    pub committee_scheduled: u64,
    pub committee_decided: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub operators: usize,
    pub validators: u64,
    pub slots: u64,
    /// The executor's round in simulated microseconds (`--cycle-us`): every hop between
    /// tasks costs one, so latencies depend on it.
    pub cycle_us: u64,
    /// What each item of the runners' cryptography cost in simulated time, sign, decode and
    /// recover in microseconds (`--crypto-cost-us`; `None`: none).
    pub crypto_cost_us: Option<[u64; 3]>,
    /// The cores that charge is spread over (`--crypto-cores`; `None`: no charge).
    pub crypto_cores: Option<usize>,
    pub finalized_height: u64,
    /// Blocks finalized with no decisions (pacing: about one per idle heartbeat at most).
    pub empty_blocks: u64,
    /// Slots (of the run) with at least one finalized block.
    pub slots_with_block: u64,
    pub duties: DutyCounts,
    /// Simulated time from duty start (runner) to finalization, over every operator.
    pub decide_latency_ms: Percentiles,
    /// Of the decide latency: duty start until the leader built the block deciding it.
    pub block_wait_ms: Percentiles,
    /// Of the decide latency: block built until this operator processed its finalization
    /// (consensus hops, block dissemination, marshal).
    pub consensus_ms: Percentiles,
    /// Signed objects the devnet beacon chain received, per role: distinct objects
    /// submitted, accepted (valid signature), rejected, duplicates; and what the run's slots
    /// scheduled (`expected`).
    pub submitted: BTreeMap<Kind, u64>,
    pub accepted: BTreeMap<Kind, u64>,
    pub rejected: BTreeMap<Kind, u64>,
    pub expected: BTreeMap<Kind, u64>,
    /// Simulated time from slot start to the beacon chain accepting each object.
    pub submit_latency_ms: Percentiles,
    /// The same by role: attestations are due at one third of the slot and aggregates at two
    /// thirds, so each role is judged against its own deadline.
    pub submit_latency_ms_by_role: BTreeMap<Kind, Percentiles>,
    /// With the head block's arrival fixed (`--head-at-ms`): simulated time from the head event
    /// to the beacon chain accepting each object of the roles the head starts (attestations
    /// and sync committee messages). Empty when heads arrive at drawn times.
    pub head_to_submit_ms_by_role: BTreeMap<Kind, Percentiles>,
    /// Signatures each share made after slashing protection allowed them.
    pub share_signatures: u64,
    /// The first rejections the chain logged, if any.
    pub rejections: Vec<String>,
    /// Partial signatures the honest operators found invalid and dropped, by the simulation
    /// index of the operator that sent them (from the runners' `InvalidPartial` events).
    pub invalid_partials_by_operator: BTreeMap<usize, u64>,
    /// The cluster-run AVS's tasks, when the run has one.
    pub avs: Option<crate::avs::AvsReport>,
    /// The first slot the liveness invariant covered (`None`: the faults did not owe it).
    pub liveness_from: Option<u64>,
    /// Restarts of crashed operators during the run.
    pub restarts: u64,
    /// What lone crashes kept of their operators' unsynced writes.
    pub crash_cuts: CrashCuts,
    /// `(by, peer)`: operator `by` blocked `peer` for a message it sent.
    pub blocked: Vec<(usize, usize)>,
    /// `(by, peer)`: operator `by`'s consensus caught `peer` sending conflicting or invalid
    /// votes (it stays connected; see `operator/src/consensus_faults.rs`).
    pub caught: Vec<(usize, usize)>,
    /// The most any operator held at once in each in-memory collection (`*_held` gauges).
    pub max_held: BTreeMap<String, u64>,
    /// Finalized cluster blocks that carried an execution payload.
    pub execution_blocks: u64,
    /// The lowest finalized execution height among the live operators' engines at the end.
    pub engine_finalized_height: u64,
    /// Each operator's engine's finalized execution height at the end (an operator whose
    /// executor stopped shows where it stopped).
    pub engine_finalized_by_operator: BTreeMap<usize, u64>,
    /// The state root the engines hold at that height (they agree, or `engine_converged` fails).
    pub engine_state_root: String,
    /// The transaction load and how much of it the finalized chain executed.
    pub transactions: crate::TxReport,
    /// Payloads leaders handed to consensus, by how they were built.
    pub prebuild: PrebuildCounts,
    /// Network messages received per live operator per slot, over every channel.
    pub messages_per_operator_per_slot: f64,
    /// Real CPU one live operator's runner spent per slot on its share's cryptography, in
    /// milliseconds of thread CPU time (meaningful in a release build).
    pub crypto_cpu_ms_per_operator_slot: CryptoCpu,
    pub outcome_digest: String,
    /// The deterministic runtime's audit of every event, for bit-for-bit replay checks.
    pub runtime_audit: String,
    pub violations: Vec<Violation>,
    pub replay: String,
    pub wall_ms: u64,
}

pub(crate) fn percentiles(mut values: Vec<u64>) -> Percentiles {
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

impl Report {
    /// What the beacon chain took of `kind`: (expected, submitted, accepted, rejected).
    fn chain_counts(&self, kind: Kind) -> [u64; 4] {
        [
            &self.expected,
            &self.submitted,
            &self.accepted,
            &self.rejected,
        ]
        .map(|counts| counts.get(&kind).copied().unwrap_or(0))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cohort simulation: seed {} | {} operators | {} validators | {} slots | {} µs \
             executor cycle",
            self.seed, self.operators, self.validators, self.slots, self.cycle_us
        )?;
        if let Some([sign, decode, recover]) = self.crypto_cost_us {
            writeln!(
                f,
                "  cryptography charged in simulated time: {sign} us per share signed, {decode} \
                 us per partial decoded, {recover} us per key recovered, each batch on {} \
                 core(s)",
                self.crypto_cores.unwrap_or(1)
            )?;
        }
        writeln!(
            f,
            "  finalized height {} ({} empty heartbeat blocks, {} of {} slots with a block)",
            self.finalized_height, self.empty_blocks, self.slots_with_block, self.slots
        )?;
        writeln!(
            f,
            "  attestation duties: {} scheduled, {} decided, {} missed ({} of {} committee duties decided)",
            self.duties.scheduled,
            self.duties.decided,
            self.duties.missed,
            self.duties.committee_decided,
            self.duties.committee_scheduled
        )?;
        writeln!(
            f,
            "  decide latency (simulated): p50 {} ms, p99 {} ms",
            self.decide_latency_ms.p50, self.decide_latency_ms.p99
        )?;
        writeln!(
            f,
            "    of which waiting for a block: p50 {} ms, p99 {} ms; consensus: p50 {} ms, p99 {} ms",
            self.block_wait_ms.p50,
            self.block_wait_ms.p99,
            self.consensus_ms.p50,
            self.consensus_ms.p99
        )?;
        for kind in Kind::ALL {
            let [expected, submitted, accepted, rejected] = self.chain_counts(kind);
            writeln!(
                f,
                "  {kind}s: {expected} expected, {submitted} submitted, {accepted} accepted by the beacon chain, {rejected} rejected",
            )?;
        }
        for (kind, latency) in &self.submit_latency_ms_by_role {
            writeln!(
                f,
                "  {kind} submission from slot start (simulated): p50 {} ms, p99 {} ms, max {} ms",
                latency.p50, latency.p99, latency.max
            )?;
        }
        for (kind, latency) in &self.head_to_submit_ms_by_role {
            writeln!(
                f,
                "  {kind} submission from the head event (simulated): p50 {} ms, p99 {} ms, max {} ms",
                latency.p50, latency.p99, latency.max
            )?;
        }
        for rejection in &self.rejections {
            writeln!(f, "    rejected: {rejection}")?;
        }
        for (operator, count) in &self.invalid_partials_by_operator {
            writeln!(
                f,
                "  invalid partial signatures from operator {operator}: {count} (dropped by the others)"
            )?;
        }
        if !self.blocked.is_empty() {
            let pairs: Vec<String> = self
                .blocked
                .iter()
                .map(|(by, peer)| format!("{peer} by {by}"))
                .collect();
            writeln!(
                f,
                "  operators blocked for what they sent: {}",
                pairs.join(", ")
            )?;
        }
        if !self.caught.is_empty() {
            let pairs: Vec<String> = self
                .caught
                .iter()
                .map(|(by, peer)| format!("{peer} by {by}"))
                .collect();
            writeln!(
                f,
                "  operators caught sending conflicting or invalid votes (kept connected): {}",
                pairs.join(", ")
            )?;
        }
        if let Some(avs) = &self.avs {
            writeln!(
                f,
                "  AVS tasks: {} submitted, {} signed by the cluster key ({:.1} per simulated second), {} failed, {} lost to a power cut; submit to answer (simulated): p50 {} ms, p99 {} ms",
                avs.submitted,
                avs.signed,
                avs.signed_per_second,
                avs.failed,
                avs.lost_to_power_cut,
                avs.latency_ms.p50,
                avs.latency_ms.p99
            )?;
            for (kind, count) in &avs.failures {
                writeln!(f, "    failed: {count} x {kind}")?;
            }
            for (operator, count) in &avs.bad_partials_by_operator {
                writeln!(
                    f,
                    "    invalid task partials from operator {operator}: {count}"
                )?;
            }
            for (operator, count) in &avs.disagreements_by_operator {
                writeln!(
                    f,
                    "    outputs from operator {operator}'s performer that the cluster did not sign: {count}"
                )?;
            }
        }
        if self.restarts > 0 {
            writeln!(f, "  operator restarts: {}", self.restarts)?;
        }
        if self.crash_cuts.blobs > 0 {
            let c = &self.crash_cuts;
            writeln!(
                f,
                "  lone crashes cut {} blob(s) with unsynced writes: {} of {} mutations kept, {} write(s) torn",
                c.blobs, c.kept, c.unsynced, c.torn
            )?;
        }
        writeln!(
            f,
            "  execution: {} payload blocks finalized; every live engine at height >= {} (state root {}); pre-build hits {}, fallbacks {}, misses {}",
            self.execution_blocks,
            self.engine_finalized_height,
            self.engine_state_root,
            self.prebuild.hits,
            self.prebuild.fallbacks,
            self.prebuild.misses
        )?;
        let t = &self.transactions;
        writeln!(
            f,
            "  transactions: {} submitted ({} per slot), {} in finalized payloads ({} owed by the end); contract calls {} submitted, {} finalized, counted {}{}",
            t.submitted,
            t.per_slot,
            t.finalized,
            t.owed,
            t.contract_calls,
            t.contract_calls_finalized,
            t.contract_counter
                .map_or_else(|| "nowhere yet".to_string(), |counter| counter.to_string()),
            match &t.first_refusal {
                Some(reason) => format!("; {} offers refused, first: {reason}", t.refused),
                None => String::new(),
            }
        )?;
        writeln!(
            f,
            "  messages per operator per slot: {:.1}",
            self.messages_per_operator_per_slot
        )?;
        let cpu = &self.crypto_cpu_ms_per_operator_slot;
        writeln!(
            f,
            "  crypto CPU per operator per slot (real, thread time): {:.1} ms (sign {:.1}, decode {:.1}, recover+verify {:.1})",
            cpu.total, cpu.sign, cpu.decode, cpu.recover_and_verify
        )?;
        writeln!(f, "  outcome digest: {}", self.outcome_digest)?;
        writeln!(f, "  wall time: {} ms", self.wall_ms)?;
        if self.violations.is_empty() {
            writeln!(f, "  invariants: all held")
        } else {
            writeln!(f, "  invariants: {} violations", self.violations.len())?;
            for v in &self.violations {
                writeln!(f, "    [{}] slot {}: {}", v.invariant, v.slot, v.detail)?;
            }
            Ok(())
        }
    }
}
