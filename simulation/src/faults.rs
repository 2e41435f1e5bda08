//! The faults a run can be given, and the one set of `simulate` flags that spells them out.
//!
//! A campaign draws faults from a seed; a failure is then printed, stored in the corpus and
//! replayed as these flags. Keeping the flag set here, next to [`SimConfig`], means the node's
//! command line, the corpus and the replay command can never disagree on what a flag means.

use crate::{Crash, EngineFault, Partition, SimConfig};
use serde::Serialize;
use std::time::Duration;

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

/// What a faulty duty source (the operator's beacon node) does during its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SourceFaultKind {
    /// Answers every request this many milliseconds late.
    Late(u64),
    /// Answers no request at all: every call fails as unavailable.
    Absent,
}

/// One operator's beacon node answering late or not at all from `from_slot` until `to_slot`
/// (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SourceFault {
    pub operator: usize,
    pub kind: SourceFaultKind,
    pub from_slot: u64,
    pub to_slot: u64,
}

impl SourceFault {
    /// Parses `I:late=MS@S-E` or `I:absent@S-E`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || format!("source-fault `{text}`: expected I:late=MS@S-E or I:absent@S-E");
        let (operator, kind, from_slot, to_slot) =
            parse_operator_window("source-fault", text, usage)?;
        let kind = match kind.split_once('=') {
            Some(("late", millis)) => SourceFaultKind::Late(millis.parse().map_err(|_| usage())?),
            None if kind == "absent" => SourceFaultKind::Absent,
            _ => return Err(usage()),
        };
        let fault = Self {
            operator,
            kind,
            from_slot,
            to_slot,
        };
        Ok(fault)
    }

    pub fn flag(&self) -> String {
        let kind = match self.kind {
            SourceFaultKind::Late(millis) => format!("late={millis}"),
            SourceFaultKind::Absent => "absent".into(),
        };
        format!(
            "{}:{kind}@{}-{}",
            self.operator, self.from_slot, self.to_slot
        )
    }

    /// Whether the fault is in force during `slot`.
    pub fn covers(&self, slot: u64) -> bool {
        (self.from_slot..self.to_slot).contains(&slot)
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

/// Parses `I` (never starts) or `I@S` (starts at slot S).
pub fn parse_offline(value: &str) -> Result<(usize, Option<u64>), String> {
    let (index, slot) = match value.split_once('@') {
        Some((i, s)) => (i, Some(s)),
        None => (value, None),
    };
    let index = index
        .parse()
        .map_err(|_| format!("offline: '{value}' is not an operator index (I or I@SLOT)"))?;
    let slot = slot
        .map(|s| {
            s.parse()
                .map_err(|_| format!("offline: '{value}' has no valid slot after '@'"))
        })
        .transpose()?;
    Ok((index, slot))
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

/// The network and fault flags of `cohort simulate`: everything about a run except its seed and
/// cluster shape.
#[derive(clap::Args, Clone, Debug)]
pub struct FaultArgs {
    /// Mean one-way link latency in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Link jitter (standard deviation) in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub jitter_ms: u64,
    /// Probability that a message is delivered (0..=1).
    #[arg(long, default_value_t = 1.0)]
    pub delivery: f64,
    /// Slot length in seconds.
    #[arg(long, default_value_t = 12)]
    pub slot_seconds: u64,
    /// Operator offline: `I` (never starts) or `I@S` (starts at slot S). Repeatable.
    #[arg(long, value_parser = parse_offline)]
    pub offline: Vec<(usize, Option<u64>)>,
    /// Operator crash: `I@S` (crashes during slot S, never returns) or `I@S-R` (restarts with
    /// its storage at slot R). Repeatable, one per operator.
    #[arg(long, value_parser = Crash::parse)]
    pub crash: Vec<Crash>,
    /// Byzantine operator `I`: sends well-formed but wrong partial signatures. Repeatable.
    #[arg(long)]
    pub byzantine: Vec<usize>,
    /// Byzantine operator `I` that, besides its honest work, floods every channel with
    /// malformed, oversized, mutated and replayed messages. Repeatable.
    #[arg(long)]
    pub noise: Vec<usize>,
    /// Byzantine operator `I` that equivocates: each consensus vote it sends goes out with a
    /// second, conflicting vote for the same view to some peers. Repeatable.
    #[arg(long)]
    pub equivocate: Vec<usize>,
    /// Network partition `I,J@S-H`: operators I and J cut off from the rest from the start of
    /// slot S until slot H. Repeatable, not overlapping in time.
    #[arg(long, value_parser = Partition::parse)]
    pub partition: Vec<Partition>,
    /// Execution engine fault `I:KIND@S-E`: operator I's engine answers SYNCING (`syncing`),
    /// never answers (`hang`) or calls every payload INVALID (`invalid`, which stops that
    /// operator's executor) from slot S until slot E. Repeatable.
    #[arg(long = "engine-fault", value_parser = EngineFault::parse)]
    pub engine_fault: Vec<EngineFault>,
    /// Clock skew `I:+MS` or `I:-MS`: operator I's clock reads MS milliseconds ahead of or
    /// behind the cluster's. Repeatable.
    #[arg(long = "clock-skew", value_parser = ClockSkew::parse, allow_hyphen_values = true)]
    pub clock_skew: Vec<ClockSkew>,
    /// Duty source fault `I:late=MS@S-E` or `I:absent@S-E`: operator I's beacon node answers
    /// MS milliseconds late, or not at all, from slot S until slot E. Repeatable.
    #[arg(long = "source-fault", value_parser = SourceFault::parse)]
    pub source_fault: Vec<SourceFault>,
    /// Power cut `S-R`: every operator loses power during slot S, with unsynced writes cut
    /// mid-way, and restarts from its storage at slot R.
    #[arg(long = "power-cut", value_parser = PowerCut::parse)]
    pub power_cut: Option<PowerCut>,
}

impl FaultArgs {
    /// `base` with these faults.
    pub fn apply(&self, base: SimConfig) -> SimConfig {
        SimConfig {
            latency: Duration::from_millis(self.latency_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            delivery: self.delivery,
            slot_duration: Duration::from_secs(self.slot_seconds),
            offline: self.offline.clone(),
            crashes: self.crash.clone(),
            byzantine: self.byzantine.clone(),
            noisy: self.noise.clone(),
            equivocators: self.equivocate.clone(),
            partitions: self.partition.clone(),
            engine_faults: self.engine_fault.clone(),
            skews: self.clock_skew.clone(),
            source_faults: self.source_fault.clone(),
            power_cut: self.power_cut,
            ..base
        }
    }

    /// Parses flags as [`SimConfig::fault_flags`] prints them.
    pub fn parse(flags: &str) -> Result<Self, String> {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            faults: FaultArgs,
        }
        let words = std::iter::once("faults").chain(flags.split_whitespace());
        <Flags as clap::Parser>::try_parse_from(words)
            .map(|flags| flags.faults)
            .map_err(|err| format!("faults `{flags}`: {}", err.render().to_string().trim()))
    }
}

impl SimConfig {
    /// This run's network and faults as `simulate` flags ([`FaultArgs`] parses them back).
    pub fn fault_flags(&self) -> String {
        let mut flags = vec![
            format!("--latency-ms {}", self.latency.as_millis()),
            format!("--jitter-ms {}", self.jitter.as_millis()),
            format!("--delivery {}", self.delivery),
        ];
        if self.slot_duration != Duration::from_secs(12) {
            flags.push(format!("--slot-seconds {}", self.slot_duration.as_secs()));
        }
        for (index, until) in &self.offline {
            match until {
                Some(slot) => flags.push(format!("--offline {index}@{slot}")),
                None => flags.push(format!("--offline {index}")),
            }
        }
        flags.extend(self.crashes.iter().map(|c| format!("--crash {}", c.flag())));
        flags.extend(self.byzantine.iter().map(|i| format!("--byzantine {i}")));
        flags.extend(self.noisy.iter().map(|i| format!("--noise {i}")));
        flags.extend(
            self.equivocators
                .iter()
                .map(|i| format!("--equivocate {i}")),
        );
        flags.extend(
            self.partitions
                .iter()
                .map(|p| format!("--partition {}", p.flag())),
        );
        flags.extend(
            self.engine_faults
                .iter()
                .map(|f| format!("--engine-fault {}", f.flag())),
        );
        flags.extend(
            self.skews
                .iter()
                .map(|s| format!("--clock-skew {}", s.flag())),
        );
        flags.extend(
            self.source_faults
                .iter()
                .map(|f| format!("--source-fault {}", f.flag())),
        );
        if let Some(cut) = &self.power_cut {
            flags.push(format!("--power-cut {}", cut.flag()));
        }
        flags.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineFaultKind;

    #[test]
    fn every_fault_survives_a_round_trip_through_its_flags() {
        let config = SimConfig {
            latency: Duration::from_millis(80),
            jitter: Duration::from_millis(9),
            delivery: 0.93,
            offline: vec![(3, Some(5)), (2, None)],
            crashes: vec![Crash {
                operator: 1,
                slot: 4,
                restart_slot: Some(9),
            }],
            byzantine: vec![0],
            noisy: vec![2],
            equivocators: vec![3],
            partitions: vec![Partition {
                operators: vec![0, 1],
                from_slot: 3,
                heal_slot: 6,
            }],
            engine_faults: vec![EngineFault {
                operator: 2,
                kind: EngineFaultKind::Hang,
                from_slot: 2,
                to_slot: 4,
            }],
            skews: vec![
                ClockSkew {
                    operator: 1,
                    millis: -350,
                },
                ClockSkew {
                    operator: 2,
                    millis: 120,
                },
            ],
            source_faults: vec![
                SourceFault {
                    operator: 0,
                    kind: SourceFaultKind::Late(900),
                    from_slot: 1,
                    to_slot: 3,
                },
                SourceFault {
                    operator: 3,
                    kind: SourceFaultKind::Absent,
                    from_slot: 7,
                    to_slot: 8,
                },
            ],
            power_cut: Some(PowerCut {
                slot: 5,
                restart_slot: 7,
            }),
            ..SimConfig::default()
        };
        let flags = config.fault_flags();
        let parsed = FaultArgs::parse(&flags)
            .expect("printed flags parse")
            .apply(SimConfig::default());
        assert_eq!(parsed.fault_flags(), flags);
        assert_eq!(parsed.skews, config.skews);
        assert_eq!(parsed.source_faults, config.source_faults);
        assert_eq!(parsed.crashes, config.crashes);
        assert_eq!(parsed.power_cut, config.power_cut);
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
        assert!(PowerCut::parse("6-6").unwrap_err().contains("come back"));
    }
}
