//! Fault plans: what a campaign throws at the cluster, drawn from the seed alone.

use crate::avs::{AvsLoad, PerformerFault};
use crate::{
    ClockSkew, Crash, EngineFault, EngineFaultKind, Fault, Loss, Offline, Partition, PowerCut,
    SimConfig, SourceFault, SourceFaultKind,
};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, time::Duration};

/// What a campaign throws at the cluster. Every fault a plan draws is explicit in the
/// [`SimConfig`] it returns, so a run replays from `(plan, seed)` or from its flags alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// No faults: the baseline every other plan is compared to.
    Calm,
    /// Link latency, jitter and one or two windows of message loss that heal.
    Network,
    /// Up to `f` operators crash at a seed-drawn point and restart with their storage, or not;
    /// one run in three the whole cluster also loses power, unsynced writes cut mid-way.
    Crash,
    /// A group of operators (possibly more than `f`) is cut off for a few slots, then healed.
    Partition,
    /// Up to `f` byzantine operators, each sending well-formed but wrong partial signatures,
    /// flooding every channel with junk and replays, equivocating in consensus, proposing
    /// harmful values whenever it leads, or flooding partial signatures built for decoding
    /// work.
    Byzantine,
    /// Operators' clocks reading up to a twelfth of a slot ahead or behind.
    Clock,
    /// Up to `f` execution engines answering SYNCING, hanging or calling payloads INVALID.
    Engine,
    /// Up to `f` beacon nodes answering late or not at all for a few slots.
    Source,
    /// A cluster-run AVS under task load (1..=12 tasks a slot) with up to `f` operators'
    /// performers lying, slow, hanging or crashed, on a drawn network (a loss window one run
    /// in four).
    Avs,
    /// Network faults (a loss window one run in four) plus up to `f` faulty operators, each
    /// drawn from every kind above, skewed clocks one run in two, a partition one run in
    /// three and a power cut one run in five; one run in two also carries AVS load, the
    /// performers of faulty operators faulty too one in two.
    Mixed,
}

impl Plan {
    pub const ALL: [Plan; 10] = [
        Plan::Calm,
        Plan::Network,
        Plan::Crash,
        Plan::Partition,
        Plan::Byzantine,
        Plan::Clock,
        Plan::Engine,
        Plan::Source,
        Plan::Avs,
        Plan::Mixed,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Plan::Calm => "calm",
            Plan::Network => "network",
            Plan::Crash => "crash",
            Plan::Partition => "partition",
            Plan::Byzantine => "byzantine",
            Plan::Clock => "clock",
            Plan::Engine => "engine",
            Plan::Source => "source",
            Plan::Avs => "avs",
            Plan::Mixed => "mixed",
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        Plan::ALL
            .into_iter()
            .find(|plan| plan.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Plan::ALL.iter().map(|p| p.name()).collect();
                format!("plan: unknown `{text}`; one of {}", names.join(", "))
            })
    }

    /// The run this plan draws for `seed`: `base`'s cluster size, validators, slots and slot
    /// length, with faults drawn from the seed (and nothing else).
    pub fn config(&self, seed: u64, base: &SimConfig) -> SimConfig {
        // The shape comes from `base`; every fault from the seed alone.
        let mut config = SimConfig {
            seed,
            operators: base.operators,
            validators: base.validators,
            slots: base.slots,
            slot_duration: base.slot_duration,
            injected_bug: base.injected_bug,
            crash_cut: base.crash_cut,
            avs: base.avs.clone(),
            ..SimConfig::default()
        };
        let mut draw = Draw::new(*self, seed);
        let mut faults = Vec::new();
        let n = config.operators;
        let f = (n - 1) / 3;
        let slots = config.slots.max(2);
        match self {
            Plan::Calm => {}
            Plan::Network => network(&mut draw, &mut config, &mut faults, true),
            Plan::Crash => {
                for operator in draw.some_operators(n, f) {
                    faults.push(Fault::Crash(crash(&mut draw, operator, slots)));
                }
                if draw.below(3) == 0 {
                    faults.extend(power_cut(&mut draw, slots).map(Fault::PowerCut));
                }
            }
            Plan::Partition => faults.push(Fault::Partition(partition(&mut draw, n, slots))),
            Plan::Byzantine => {
                for operator in draw.some_operators(n, f) {
                    faults.push(byzantine(&mut draw, operator));
                }
            }
            Plan::Clock => skews(&mut draw, &mut faults, n, config.slot_duration),
            Plan::Engine => {
                for operator in draw.some_operators(n, f) {
                    faults.push(Fault::Engine(engine_fault(&mut draw, operator, slots)));
                }
            }
            Plan::Source => {
                for operator in draw.some_operators(n, f) {
                    faults.push(Fault::Source(source_fault(&mut draw, operator, slots)));
                }
            }
            Plan::Avs => {
                network(&mut draw, &mut config, &mut faults, false);
                let faulty = draw.below(f as u64 + 1) as usize;
                let performers = draw.operators(n, faulty);
                config.avs = Some(avs_load(&mut draw, &performers, true));
            }
            Plan::Mixed => {
                network(&mut draw, &mut config, &mut faults, false);
                let faulty = draw.below(f as u64 + 1) as usize;
                let faulty = draw.operators(n, faulty);
                for &operator in &faulty {
                    let fault = match draw.below(7) {
                        0 | 1 => Fault::Crash(crash(&mut draw, operator, slots)),
                        2 => Fault::Offline(Offline {
                            operator,
                            start_slot: Some(1 + draw.below(slots / 2)),
                        }),
                        3 | 4 => byzantine(&mut draw, operator),
                        5 => Fault::Engine(engine_fault(&mut draw, operator, slots)),
                        _ => Fault::Source(source_fault(&mut draw, operator, slots)),
                    };
                    faults.push(fault);
                }
                if draw.below(3) == 0 {
                    faults.push(Fault::Partition(partition(&mut draw, n, slots)));
                }
                if draw.below(2) == 0 {
                    skews(&mut draw, &mut faults, n, config.slot_duration);
                }
                if draw.below(5) == 0 {
                    faults.extend(power_cut(&mut draw, slots).map(Fault::PowerCut));
                }
                // Drawn last, so the faults above are the ones this seed drew before plans
                // carried AVS load. Only operators already faulty get a faulty performer: the
                // cluster still has at most `f` faulty operators.
                if draw.below(2) == 0 {
                    config.avs = Some(avs_load(&mut draw, &faulty, false));
                }
            }
        }
        // Grouped by kind as the flags print them, byzantine operators in ascending order.
        faults.sort_by_key(|fault| match fault {
            Fault::Byzantine(operator) => (fault.flag_order(), *operator),
            _ => (fault.flag_order(), 0),
        });
        config.faults = faults;
        config
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Latency 10..150 ms with up to a quarter of it as jitter; message loss in one or two windows
/// always (`lossy`), or in one window one run in four. Loss comes in windows that heal, never
/// for the whole run, so every lossy run is also checked for liveness after the loss.
fn network(draw: &mut Draw, config: &mut SimConfig, faults: &mut Vec<Fault>, lossy: bool) {
    let latency = 10 + draw.below(141);
    config.latency = Duration::from_millis(latency);
    config.jitter = Duration::from_millis(draw.below(latency / 4 + 1));
    if lossy || draw.below(4) == 0 {
        let windows = if lossy { 1 + draw.below(2) } else { 1 };
        let slots = config.slots.max(2);
        faults.extend(loss_windows(draw, slots, windows).map(Fault::Loss));
    }
}

/// Up to `count` windows, one after the other, each losing 5%..=30% of every link's messages
/// (whole percent, so the replay flag is exact) for 1..=6 slots, starting in the first two
/// thirds of the run and healing before it ends.
fn loss_windows(draw: &mut Draw, slots: u64, count: u64) -> impl Iterator<Item = Loss> {
    let mut windows = Vec::new();
    let mut earliest = 1;
    for _ in 0..count {
        let latest = (slots * 2 / 3).max(earliest);
        let from_slot = earliest + draw.below(latest - earliest + 1);
        let heal_slot = (from_slot + 1 + draw.below(6)).min(slots - 1);
        let percent = 5 + draw.below(26) as u8;
        if heal_slot <= from_slot {
            break;
        }
        windows.push(Loss {
            percent,
            from_slot,
            heal_slot,
        });
        earliest = heal_slot + 1;
    }
    windows.into_iter()
}

/// A crash in the first two thirds of the run, restarting 1..=10 slots later (within the
/// run), or, one time in four, never.
fn crash(draw: &mut Draw, operator: usize, slots: u64) -> Crash {
    let slot = 1 + draw.below((slots * 2 / 3).max(1));
    let restart = slot + 1 + draw.below(10);
    let restart_slot = (draw.below(4) != 0 && restart < slots).then_some(restart);
    Crash {
        operator,
        slot,
        restart_slot,
    }
}

/// The whole cluster losing power in the first two thirds of the run and coming back 1..=4
/// slots later (within the run), or no cut when the run is too short for one.
fn power_cut(draw: &mut Draw, slots: u64) -> Option<PowerCut> {
    let slot = 1 + draw.below((slots * 2 / 3).max(1));
    let restart_slot = slot + 1 + draw.below(4);
    (restart_slot < slots).then_some(PowerCut { slot, restart_slot })
}

/// One byzantine operator of a kind drawn from the seed.
fn byzantine(draw: &mut Draw, operator: usize) -> Fault {
    match draw.below(5) {
        0 => Fault::Byzantine(operator),
        1 => Fault::Noise(operator),
        2 => Fault::Equivocate(operator),
        3 => Fault::ByzantineLeader(operator),
        _ => Fault::ByzantineFlood(operator),
    }
}

/// Each operator's clock, one in two, up to a twelfth of a slot (1 s of 12) ahead or behind.
fn skews(draw: &mut Draw, faults: &mut Vec<Fault>, operators: usize, slot_duration: Duration) {
    let bound = (slot_duration.as_millis() / 12) as u64;
    for operator in 0..operators {
        if draw.below(2) == 0 {
            let millis = draw.below(2 * bound + 1) as i64 - bound as i64;
            faults.push(Fault::ClockSkew(ClockSkew { operator, millis }));
        }
    }
}

/// An engine that syncs or hangs for 1..=6 slots, or (one time in four) calls a payload
/// INVALID, which stops that operator's executor for good.
fn engine_fault(draw: &mut Draw, operator: usize, slots: u64) -> EngineFault {
    let kind = match draw.below(4) {
        0 => EngineFaultKind::Invalid,
        1 => EngineFaultKind::Hang,
        _ => EngineFaultKind::Syncing,
    };
    let (from_slot, to_slot) = window(draw, slots);
    EngineFault {
        operator,
        kind,
        from_slot,
        to_slot,
    }
}

/// A window of 1..=6 slots starting in the first two thirds of the run.
fn window(draw: &mut Draw, slots: u64) -> (u64, u64) {
    let from_slot = 1 + draw.below((slots * 2 / 3).max(1));
    (from_slot, from_slot + 1 + draw.below(6))
}

/// A beacon node answering 0.5..3 s late, or not at all, for 1..=6 slots.
fn source_fault(draw: &mut Draw, operator: usize, slots: u64) -> SourceFault {
    let kind = match draw.below(2) {
        0 => SourceFaultKind::Late(500 + 100 * draw.below(26)),
        _ => SourceFaultKind::Absent,
    };
    let (from_slot, to_slot) = window(draw, slots);
    SourceFault {
        operator,
        kind,
        from_slot,
        to_slot,
    }
}

/// Up to half the cluster cut off, from a slot in the first half of the run, for 1..=8 slots.
fn partition(draw: &mut Draw, n: usize, slots: u64) -> Partition {
    let size = 1 + draw.below((n / 2) as u64) as usize;
    let from_slot = 1 + draw.below((slots / 2).max(1));
    Partition {
        operators: draw.operators(n, size),
        from_slot,
        heal_slot: from_slot + 1 + draw.below(8),
    }
}

/// A cluster-run AVS taking 1..=12 tasks a slot; the performer of each of `faulty` (every one,
/// or one in two) lies, is slow, hangs or has crashed.
fn avs_load(draw: &mut Draw, faulty: &[usize], every: bool) -> AvsLoad {
    let tasks_per_slot = 1 + draw.below(12) as u32;
    let mut performer_faults = BTreeMap::new();
    for &operator in faulty {
        if every || draw.below(2) == 0 {
            let fault = match draw.below(4) {
                0 => PerformerFault::Lie,
                1 => PerformerFault::Slow,
                2 => PerformerFault::Hang,
                _ => PerformerFault::Crash,
            };
            performer_faults.insert(operator, fault);
        }
    }
    AvsLoad {
        tasks_per_slot,
        performer_faults,
    }
}

/// A stream of numbers drawn from `(plan, seed)` alone (splitmix64), independent of any
/// library's generator so a plan's draws never change under a dependency update.
struct Draw(u64);

impl Draw {
    fn new(plan: Plan, seed: u64) -> Self {
        let salt = plan.name().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Self(seed ^ salt)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }

    /// 1..=`f` distinct operators out of `n` (how many drawn first), in ascending order.
    fn some_operators(&mut self, n: usize, f: usize) -> Vec<usize> {
        let count = 1 + self.below(f as u64) as usize;
        self.operators(n, count)
    }

    /// `count` distinct operators out of `n`, in ascending order.
    fn operators(&mut self, n: usize, count: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = (0..n).collect();
        let mut chosen = Vec::new();
        for _ in 0..count.min(n) {
            let at = self.below(pool.len() as u64) as usize;
            chosen.push(pool.swap_remove(at));
        }
        chosen.sort_unstable();
        chosen
    }
}
