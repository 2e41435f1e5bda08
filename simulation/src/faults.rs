//! The faults a run can be given, and the one set of `simulate` flags that spells them out.
//!
//! A campaign draws faults from a seed; a failure is then printed, stored in the corpus and
//! replayed as these flags. Keeping the flag set here, next to [`SimConfig`], means the node's
//! command line, the corpus and the replay command can never disagree on what a flag means.
//! Each [`Fault`] knows its flag, what makes it invalid for a cluster, and when it heals.

use crate::{
    ConfigError, SimConfig,
    engine_fault::{EngineFault, EngineFaultKind},
    source_fault::SourceFault,
};
use serde::Serialize;

mod flags;
pub use flags::FaultArgs;

/// One thing a run does to the cluster. A run's faults are one list; their flags print grouped
/// by kind, in the order of the variants here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An operator that starts late, or never.
    Offline(Offline),
    /// An operator that crashes during a slot and restarts with its storage later, or never.
    Crash(Crash),
    /// A byzantine operator that sends well-formed but wrong partial signatures, and offers
    /// attestation data of its own making at each slot's start.
    Byzantine(usize),
    /// A byzantine operator that floods every channel with malformed, oversized, mutated and
    /// replayed messages besides its honest work.
    Noise(usize),
    /// A byzantine operator that sends a second, conflicting consensus vote for each view.
    Equivocate(usize),
    /// A byzantine operator that, whenever it leads a view, proposes well-formed but harmful
    /// values drawn from the seed: a jump to the next slot, a value of the wrong kind for its
    /// duty, a source checkpoint not before its target or not yet justified, a stale block,
    /// a decision for a duty that does not exist, more decisions than a block may carry.
    ByzantineLeader(usize),
    /// A byzantine operator that, besides its honest work, sends its peers partial-signature
    /// messages built for the most decoding work allowed: as many entries as a message may
    /// carry, each a valid point for one of the cluster's validators in the current slot, at
    /// the partials channel's rate limit.
    ByzantineFlood(usize),
    /// A group of operators cut off from the rest for a while.
    Partition(Partition),
    /// An execution engine answering SYNCING, hanging or calling payloads INVALID for a while.
    Engine(EngineFault),
    /// An operator whose clock reads ahead of or behind the cluster's.
    ClockSkew(ClockSkew),
    /// An operator whose beacon node answers late or not at all for a while.
    Source(SourceFault),
    /// Every operator losing power at once, with unsynced writes cut mid-way.
    PowerCut(PowerCut),
    /// Every link losing a share of its messages for a while, then healing.
    Loss(Loss),
}

/// When a fault stops owing the cluster an excuse (see [`SimConfig::liveness_from`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Healing {
    /// The operator the fault takes away for the rest of the run, if any.
    pub lost: Option<usize>,
    /// The last slot the fault began or ended in: liveness is owed again some slots after it.
    /// `None` for a fault the cluster must absorb without losing a duty.
    pub settled: Option<u64>,
}

impl Fault {
    /// The operator the fault hits, for the faults that hit one.
    pub fn operator(&self) -> Option<usize> {
        match self {
            Self::Offline(offline) => Some(offline.operator),
            Self::Crash(crash) => Some(crash.operator),
            Self::Byzantine(operator)
            | Self::Noise(operator)
            | Self::Equivocate(operator)
            | Self::ByzantineLeader(operator)
            | Self::ByzantineFlood(operator) => Some(*operator),
            Self::Engine(fault) => Some(fault.operator),
            Self::ClockSkew(skew) => Some(skew.operator),
            Self::Source(fault) => Some(fault.operator),
            Self::Partition(_) | Self::PowerCut(_) | Self::Loss(_) => None,
        }
    }

    /// Whether the fault makes its operator byzantine: its own actors are honest code, but
    /// its peers may block it for what it sends.
    pub fn is_byzantine(&self) -> bool {
        matches!(
            self,
            Self::Byzantine(_)
                | Self::Noise(_)
                | Self::Equivocate(_)
                | Self::ByzantineLeader(_)
                | Self::ByzantineFlood(_)
        )
    }

    /// The flag's name, as `simulate` takes it and as errors name it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Offline(_) => "offline",
            Self::Crash(_) => "crash",
            Self::Byzantine(_) => "byzantine",
            Self::Noise(_) => "noise",
            Self::Equivocate(_) => "equivocate",
            Self::ByzantineLeader(_) => "byzantine-leader",
            Self::ByzantineFlood(_) => "byzantine-flood",
            Self::Partition(_) => "partition",
            Self::Engine(_) => "engine-fault",
            Self::ClockSkew(_) => "clock-skew",
            Self::Source(_) => "source-fault",
            Self::PowerCut(_) => "power-cut",
            Self::Loss(_) => "loss",
        }
    }

    /// Where the fault's flag comes in a printed run: flags print grouped by kind.
    pub(crate) fn flag_order(&self) -> u8 {
        match self {
            Self::Offline(_) => 0,
            Self::Crash(_) => 1,
            Self::Byzantine(_) => 2,
            Self::Noise(_) => 3,
            Self::Equivocate(_) => 4,
            Self::ByzantineLeader(_) => 5,
            Self::ByzantineFlood(_) => 6,
            Self::Partition(_) => 7,
            Self::Engine(_) => 8,
            Self::ClockSkew(_) => 9,
            Self::Source(_) => 10,
            Self::PowerCut(_) => 11,
            Self::Loss(_) => 12,
        }
    }

    /// The `simulate` flag that gives a run this fault ([`FaultArgs`] parses it back).
    pub fn flag(&self) -> String {
        let value = match self {
            Self::Offline(offline) => offline.flag(),
            Self::Crash(crash) => crash.flag(),
            Self::Byzantine(operator)
            | Self::Noise(operator)
            | Self::Equivocate(operator)
            | Self::ByzantineLeader(operator)
            | Self::ByzantineFlood(operator) => operator.to_string(),
            Self::Partition(partition) => partition.flag(),
            Self::Engine(fault) => fault.flag(),
            Self::ClockSkew(skew) => skew.flag(),
            Self::Source(fault) => fault.flag(),
            Self::PowerCut(cut) => cut.flag(),
            Self::Loss(loss) => loss.flag(),
        };
        format!("--{} {value}", self.name())
    }

    /// Rejects a fault `config`'s cluster cannot be given, naming the flag.
    pub fn validate(&self, config: &SimConfig) -> Result<(), ConfigError> {
        if let Some(operator) = self.operator()
            && operator >= config.operators
        {
            return Err(ConfigError::NoSuchOperator {
                flag: self.name(),
                operator,
            });
        }
        let invalid = |reason: String| {
            Err(ConfigError::InvalidFault {
                flag: self.name(),
                reason,
            })
        };
        match self {
            Self::Crash(crash) if crash.restart_slot.is_some_and(|r| r <= crash.slot) => {
                invalid(format!(
                    "operator {} must restart after the slot it crashes in ({})",
                    crash.operator, crash.slot
                ))
            }
            Self::Partition(partition)
                if partition.operators.is_empty()
                    || partition.operators.len() >= config.operators =>
            {
                invalid(format!(
                    "`{}` must cut off at least one operator and leave at least one",
                    partition.flag()
                ))
            }
            Self::Partition(partition) => {
                if let Some(operator) = partition.operators.iter().find(|i| **i >= config.operators)
                {
                    return Err(ConfigError::NoSuchOperator {
                        flag: self.name(),
                        operator: *operator,
                    });
                }
                if partition.heal_slot <= partition.from_slot {
                    return invalid(format!("`{}` must heal after it starts", partition.flag()));
                }
                Ok(())
            }
            // Beyond a third of a slot an operator's view of "now" no longer shares an
            // interval with the cluster's; that is a broken node, not a skewed clock.
            Self::ClockSkew(skew)
                if skew.millis.unsigned_abs() as u128 > config.slot_duration.as_millis() / 3 =>
            {
                invalid(format!("{} ms is more than a third of a slot", skew.millis))
            }
            Self::PowerCut(cut)
                if cut.restart_slot <= cut.slot || cut.restart_slot >= config.slots =>
            {
                invalid(format!(
                    "`{}` must restart after its slot and before the run ends ({} slots)",
                    cut.flag(),
                    config.slots
                ))
            }
            Self::Loss(loss) if loss.heal_slot > config.slots => invalid(format!(
                "`{}` must heal within the run ({} slots): liveness is checked after it",
                loss.flag(),
                config.slots
            )),
            _ => Ok(()),
        }
    }

    /// When the fault heals, as far as what the cluster owes is concerned.
    pub fn healing(&self) -> Healing {
        let heals_at = |slot| Healing {
            lost: None,
            settled: Some(slot),
        };
        match self {
            Self::Offline(Offline {
                operator,
                start_slot,
            }) => match start_slot {
                Some(slot) => heals_at(*slot),
                None => Healing {
                    lost: Some(*operator),
                    settled: None,
                },
            },
            Self::Crash(crash) => match crash.restart_slot {
                Some(restart) => heals_at(restart),
                None => Healing {
                    lost: Some(crash.operator),
                    settled: Some(crash.slot + 1),
                },
            },
            // A byzantine operator never heals. Peers block a noisy or equivocating one once
            // they see what it sends; until simplex skips a silent leader, each view it leads
            // then costs a leader timeout, as a crash at slot 0 would.
            Self::Byzantine(operator) => Healing {
                lost: Some(*operator),
                settled: None,
            },
            Self::Noise(operator) | Self::Equivocate(operator) => Healing {
                lost: Some(*operator),
                settled: Some(0),
            },
            // A harmful leader's view is refused (its block waits for a slot, or is voted
            // down, or cannot be decoded and gets it blocked): each costs one view timeout,
            // as a crashed leader's would, and once blocked it is a silent leader simplex
            // learns to skip. Its share still counts until then.
            Self::ByzantineLeader(operator) => Healing {
                lost: Some(*operator),
                settled: Some(0),
            },
            // A flood must cost nothing: past its per-slot budget it is dropped unread, and
            // the flooder's honest work goes on.
            Self::ByzantineFlood(_) => Healing::default(),
            Self::Partition(partition) => heals_at(partition.heal_slot),
            Self::Engine(fault) => match fault.kind {
                // An executor that met INVALID for a finalized payload stays stopped.
                EngineFaultKind::Invalid => Healing {
                    lost: Some(fault.operator),
                    settled: Some(fault.from_slot + 1),
                },
                EngineFaultKind::Syncing | EngineFaultKind::Hang => heals_at(fault.to_slot),
            },
            // A skewed clock is not a fault the cluster is excused for: within a third of a
            // slot it must not cost a duty.
            Self::ClockSkew(_) => Healing::default(),
            Self::Source(fault) => heals_at(fault.to_slot),
            Self::PowerCut(cut) => heals_at(cut.restart_slot),
            // Lost votes cost views and lost partials cost duties while the window lasts; once
            // the links heal, nothing of it may linger.
            Self::Loss(loss) => heals_at(loss.heal_slot),
        }
    }

    /// The slot after which the fault no longer does anything, for shortening a run without
    /// dropping the fault; `None` for faults that last the whole run whatever its length.
    pub(crate) fn last_slot(&self) -> Option<u64> {
        match self {
            Self::Offline(offline) => offline.start_slot.map(|s| s + 1),
            Self::Crash(crash) => Some(crash.restart_slot.unwrap_or(crash.slot) + 1),
            Self::Partition(partition) => Some(partition.heal_slot + 1),
            Self::Engine(fault) => Some(fault.to_slot + 1),
            Self::Source(fault) => Some(fault.to_slot + 1),
            Self::PowerCut(cut) => Some(cut.restart_slot + 1),
            Self::Loss(loss) => Some(loss.heal_slot + 1),
            Self::Byzantine(_)
            | Self::Noise(_)
            | Self::Equivocate(_)
            | Self::ByzantineLeader(_)
            | Self::ByzantineFlood(_)
            | Self::ClockSkew(_) => None,
        }
    }
}

/// Splits `I:KIND@S-E` into operator, kind and window: the form of every fault that hits one
/// operator for a while. `flag` names the fault in the errors; `usage` says what was expected.
pub(crate) fn parse_operator_window<'a>(
    flag: &str,
    text: &'a str,
    usage: impl Fn() -> String,
) -> Result<(usize, &'a str, u64, u64), String> {
    let parts = || {
        let (operator, rest) = text.split_once(':')?;
        let (kind, window) = rest.split_once('@')?;
        let (from, to) = window.split_once('-')?;
        Some((
            operator.trim().parse().ok()?,
            kind,
            from.trim().parse().ok()?,
            to.trim().parse().ok()?,
        ))
    };
    let (operator, kind, from_slot, to_slot) = parts().ok_or_else(&usage)?;
    if to_slot <= from_slot {
        return Err(format!(
            "{flag} `{text}`: the window must end after it starts"
        ));
    }
    Ok((operator, kind, from_slot, to_slot))
}

/// An operator that starts at the start of `start_slot`, or never (`None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offline {
    pub operator: usize,
    pub start_slot: Option<u64>,
}

impl Offline {
    /// Parses `I` (never starts) or `I@S` (starts at slot S).
    pub fn parse(value: &str) -> Result<Self, String> {
        let (index, slot) = match value.split_once('@') {
            Some((i, s)) => (i, Some(s)),
            None => (value, None),
        };
        let operator = index
            .parse()
            .map_err(|_| format!("offline: '{value}' is not an operator index (I or I@SLOT)"))?;
        let start_slot = slot
            .map(|s| {
                s.parse()
                    .map_err(|_| format!("offline: '{value}' has no valid slot after '@'"))
            })
            .transpose()?;
        Ok(Self {
            operator,
            start_slot,
        })
    }

    pub fn flag(&self) -> String {
        match self.start_slot {
            Some(slot) => format!("{}@{slot}", self.operator),
            None => self.operator.to_string(),
        }
    }
}

/// One crash of one operator, at a point of `slot` drawn from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    pub operator: usize,
    pub slot: u64,
    pub restart_slot: Option<u64>,
}

impl Crash {
    /// Parses `I@S` (crashes during slot S for good) or `I@S-R` (restarts at slot R).
    pub fn parse(value: &str) -> Result<Self, String> {
        let bad = || format!("crash: '{value}' is not I@SLOT or I@SLOT-RESTART_SLOT");
        let (operator, slots) = value.split_once('@').ok_or_else(bad)?;
        let operator = operator.parse().map_err(|_| bad())?;
        let (slot, restart_slot) = match slots.split_once('-') {
            Some((slot, restart)) => (slot, Some(restart.parse().map_err(|_| bad())?)),
            None => (slots, None),
        };
        Ok(Crash {
            operator,
            slot: slot.parse().map_err(|_| bad())?,
            restart_slot,
        })
    }

    pub fn flag(&self) -> String {
        match self.restart_slot {
            Some(restart) => format!("{}@{}-{restart}", self.operator, self.slot),
            None => format!("{}@{}", self.operator, self.slot),
        }
    }
}

/// The links between `operators` and everyone else are down from the start of `from_slot` to
/// the start of `heal_slot`; messages sent meanwhile are lost, as on a real partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub operators: Vec<usize>,
    pub from_slot: u64,
    pub heal_slot: u64,
}

impl Partition {
    /// Parses `I,J@S-H` (the command-line form).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("partition: expected `I,J@FROM-HEAL` (e.g. `0,1@5-9`), got `{text}`");
        let (group, window) = text.split_once('@').ok_or_else(bad)?;
        let (from, heal) = window.split_once('-').ok_or_else(bad)?;
        let operators = group
            .split(',')
            .map(|i| i.trim().parse::<usize>().map_err(|_| bad()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            operators,
            from_slot: from.trim().parse().map_err(|_| bad())?,
            heal_slot: heal.trim().parse().map_err(|_| bad())?,
        })
    }

    pub fn flag(&self) -> String {
        let group: Vec<String> = self.operators.iter().map(|i| i.to_string()).collect();
        format!("{}@{}-{}", group.join(","), self.from_slot, self.heal_slot)
    }
}

/// One operator's clock reading ahead of (or behind) the cluster's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClockSkew {
    pub operator: usize,
    /// Ahead when positive, behind when negative.
    pub millis: i64,
}

impl ClockSkew {
    /// Parses `I:+MS` or `I:-MS` (e.g. `2:+400`: operator 2's clock reads 400 ms ahead).
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || format!("clock-skew `{text}`: expected I:+MS or I:-MS (e.g. 2:+400)");
        let (operator, millis) = text.split_once(':').ok_or_else(usage)?;
        Ok(Self {
            operator: operator.trim().parse().map_err(|_| usage())?,
            millis: millis
                .trim()
                .trim_start_matches('+')
                .parse()
                .map_err(|_| usage())?,
        })
    }

    pub fn flag(&self) -> String {
        format!("{}:{:+}", self.operator, self.millis)
    }
}

/// Every operator loses power at once, at a seed-drawn point of `slot`, and comes back with
/// its storage at the start of `restart_slot`. Writes not yet synced survive only in part (a
/// seed-drawn subset of their bytes), as on a real disk whose cache was lost mid-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PowerCut {
    pub slot: u64,
    pub restart_slot: u64,
}

impl PowerCut {
    /// Parses `S-R`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || format!("power-cut `{text}`: expected S-R (e.g. 6-8)");
        let (slot, restart) = text.split_once('-').ok_or_else(usage)?;
        let cut = Self {
            slot: slot.trim().parse().map_err(|_| usage())?,
            restart_slot: restart.trim().parse().map_err(|_| usage())?,
        };
        if cut.restart_slot <= cut.slot {
            return Err(format!(
                "power-cut `{text}`: power must come back after the slot it is lost in"
            ));
        }
        Ok(cut)
    }

    pub fn flag(&self) -> String {
        format!("{}-{}", self.slot, self.restart_slot)
    }
}

/// Every link loses `percent` % of its messages (on top of `--delivery`) from the start of
/// `from_slot` to the start of `heal_slot`: the lossy network of a real cluster, which heals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Loss {
    pub percent: u8,
    pub from_slot: u64,
    pub heal_slot: u64,
}

impl Loss {
    /// Parses `P@S-H` (e.g. `20@5-9`: a fifth of every link's messages lost in slots 5..9).
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || format!("loss `{text}`: expected PERCENT@FROM-HEAL (e.g. 20@5-9)");
        let (percent, window) = text.split_once('@').ok_or_else(usage)?;
        let (from, heal) = window.split_once('-').ok_or_else(usage)?;
        let loss = Self {
            percent: percent.trim().parse().map_err(|_| usage())?,
            from_slot: from.trim().parse().map_err(|_| usage())?,
            heal_slot: heal.trim().parse().map_err(|_| usage())?,
        };
        if loss.percent == 0 || loss.percent > 100 {
            return Err(format!(
                "loss `{text}`: the percentage must be within 1..=100"
            ));
        }
        if loss.heal_slot <= loss.from_slot {
            return Err(format!(
                "loss `{text}`: the window must heal after it starts"
            ));
        }
        Ok(loss)
    }

    pub fn flag(&self) -> String {
        format!("{}@{}-{}", self.percent, self.from_slot, self.heal_slot)
    }

    /// Whether the window is in force during `slot`.
    pub fn covers(&self, slot: u64) -> bool {
        self.from_slot <= slot && slot < self.heal_slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source_fault::SourceFaultKind;
    use std::time::Duration;

    #[test]
    fn every_fault_survives_a_round_trip_through_its_flags() {
        let config = SimConfig {
            latency: Duration::from_millis(80),
            jitter: Duration::from_millis(9),
            delivery: 0.93,
            faults: vec![
                Fault::Offline(Offline {
                    operator: 3,
                    start_slot: Some(5),
                }),
                Fault::Offline(Offline {
                    operator: 2,
                    start_slot: None,
                }),
                Fault::Crash(Crash {
                    operator: 1,
                    slot: 4,
                    restart_slot: Some(9),
                }),
                Fault::Byzantine(0),
                Fault::Noise(2),
                Fault::Equivocate(3),
                Fault::ByzantineLeader(1),
                Fault::ByzantineFlood(2),
                Fault::Partition(Partition {
                    operators: vec![0, 1],
                    from_slot: 3,
                    heal_slot: 6,
                }),
                Fault::Engine(EngineFault {
                    operator: 2,
                    kind: EngineFaultKind::Hang,
                    from_slot: 2,
                    to_slot: 4,
                }),
                Fault::ClockSkew(ClockSkew {
                    operator: 1,
                    millis: -350,
                }),
                Fault::ClockSkew(ClockSkew {
                    operator: 2,
                    millis: 120,
                }),
                Fault::Source(SourceFault {
                    operator: 0,
                    kind: SourceFaultKind::Late(900),
                    from_slot: 1,
                    to_slot: 3,
                }),
                Fault::Source(SourceFault {
                    operator: 3,
                    kind: SourceFaultKind::Absent,
                    from_slot: 7,
                    to_slot: 8,
                }),
                Fault::PowerCut(PowerCut {
                    slot: 5,
                    restart_slot: 7,
                }),
                Fault::Loss(Loss {
                    percent: 20,
                    from_slot: 2,
                    heal_slot: 6,
                }),
                Fault::Loss(Loss {
                    percent: 5,
                    from_slot: 8,
                    heal_slot: 9,
                }),
            ],
            avs: Some(crate::avs::AvsLoad {
                tasks_per_slot: 7,
                performer_faults: [
                    (1, crate::avs::PerformerFault::Lie),
                    (3, crate::avs::PerformerFault::Hang),
                ]
                .into(),
            }),
            head_at: Some(Duration::from_millis(1_250)),
            cycle: Duration::from_micros(100),
            crypto_cost: Some(cohort_actors::runner::cpu::CryptoCost {
                sign: Duration::from_micros(161),
                decode: Duration::from_micros(78),
                recover: Duration::from_micros(115),
                cores: std::num::NonZeroUsize::new(2).expect("two"),
            }),
            ..SimConfig::default()
        };
        let flags = config.fault_flags();
        let parsed = FaultArgs::parse(&flags)
            .expect("printed flags parse")
            .apply(SimConfig::default());
        assert_eq!(parsed.fault_flags(), flags);
        assert_eq!(parsed.faults, config.faults);
        assert_eq!(parsed.avs, config.avs);
        assert_eq!(parsed.head_at, config.head_at);
        assert_eq!(parsed.cycle, config.cycle);
        assert_eq!(parsed.crypto_cost, config.crypto_cost);
    }

    #[test]
    fn a_cycle_outside_its_range_is_refused_by_name() {
        for cycle in [Duration::ZERO, Duration::from_millis(11)] {
            let config = SimConfig {
                cycle,
                ..SimConfig::default()
            };
            let err = config.validate().expect_err("out of range");
            assert!(err.to_string().starts_with("cycle-us:"), "{err}");
        }
        let fine = SimConfig {
            cycle: Duration::from_micros(50),
            ..SimConfig::default()
        };
        assert_eq!(fine.validate(), Ok(()));
    }

    #[test]
    fn malformed_fault_flags_name_the_flag() {
        assert!(
            ClockSkew::parse("2:ahead")
                .unwrap_err()
                .contains("clock-skew")
        );
        assert!(
            SourceFault::parse("1:late=x@2-3")
                .unwrap_err()
                .contains("source-fault")
        );
        assert!(
            SourceFault::parse("1:absent@5-5")
                .unwrap_err()
                .contains("must end")
        );
        assert!(FaultArgs::parse("--crash 1").unwrap_err().contains("crash"));
        for bad in ["1,2", "1,2,x", "1,2,3,4", "1,2,2000000"] {
            let err = FaultArgs::parse(&format!("--crypto-cost-us {bad}")).unwrap_err();
            assert!(err.contains("crypto-cost-us"), "{bad}: {err}");
        }
        for bad in [
            "--crypto-cores 2",
            "--crypto-cost-us 1,2,3 --crypto-cores 0",
        ] {
            let err = FaultArgs::parse(bad).unwrap_err();
            assert!(err.contains("crypto-c"), "{bad}: {err}");
        }
        assert!(
            FaultArgs::parse("--avs-performer-fault 1:sulk")
                .unwrap_err()
                .contains("one of lie, slow, hang, crash")
        );
        // A faulty performer in a run without tasks is refused, not dropped.
        let no_tasks = FaultArgs::parse("--avs-performer-fault 1:lie")
            .expect("parses")
            .apply(SimConfig::default())
            .validate()
            .unwrap_err()
            .to_string();
        assert!(no_tasks.contains("avs-tasks-per-slot"), "{no_tasks}");
        assert!(PowerCut::parse("6-6").unwrap_err().contains("come back"));
        assert!(Loss::parse("0@2-4").unwrap_err().contains("1..=100"));
        assert!(Loss::parse("10@4-4").unwrap_err().contains("heal after"));
        assert!(Loss::parse("10%@2-4").unwrap_err().contains("loss"));
    }
}
