//! Forks by name, as the Beacon API's `version` fields and `Eth-Consensus-Version` headers name
//! them, and which fork is active at an epoch.

use crate::Error;
use serde_json::Value;

/// A consensus fork with its own block body shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fork {
    Phase0,
    Altair,
    Bellatrix,
    Capella,
    Deneb,
    Electra,
    Fulu,
}

/// `FAR_FUTURE_EPOCH`: the epoch of a fork that is not scheduled.
pub const FAR_FUTURE_EPOCH: u64 = u64::MAX;

impl Fork {
    /// Every fork, oldest first.
    pub const ALL: [Fork; 7] = [
        Fork::Phase0,
        Fork::Altair,
        Fork::Bellatrix,
        Fork::Capella,
        Fork::Deneb,
        Fork::Electra,
        Fork::Fulu,
    ];

    /// The name as the Beacon API spells it (`version` in responses, `Eth-Consensus-Version`).
    pub fn as_str(self) -> &'static str {
        match self {
            Fork::Phase0 => "phase0",
            Fork::Altair => "altair",
            Fork::Bellatrix => "bellatrix",
            Fork::Capella => "capella",
            Fork::Deneb => "deneb",
            Fork::Electra => "electra",
            Fork::Fulu => "fulu",
        }
    }

    /// The prefix of this fork's keys in `/eth/v1/config/spec` (`ALTAIR_FORK_EPOCH`, ...);
    /// phase0 has `GENESIS_FORK_VERSION` and no epoch key.
    fn spec_key(self) -> &'static str {
        match self {
            Fork::Phase0 => "GENESIS",
            Fork::Altair => "ALTAIR",
            Fork::Bellatrix => "BELLATRIX",
            Fork::Capella => "CAPELLA",
            Fork::Deneb => "DENEB",
            Fork::Electra => "ELECTRA",
            Fork::Fulu => "FULU",
        }
    }

    /// From Altair on, blocks carry a sync aggregate and the sync-committee roles exist.
    pub fn has_sync_committee(self) -> bool {
        self >= Fork::Altair
    }

    /// From Electra on, attestations carry `committee_bits` and are published as
    /// `SingleAttestation`.
    pub fn is_electra_or_later(self) -> bool {
        self >= Fork::Electra
    }
}

impl std::str::FromStr for Fork {
    type Err = Error;

    /// Parses an API `version` string ("phase0" ... "fulu"); any case, since some nodes send the
    /// header in upper case.
    fn from_str(s: &str) -> Result<Self, Error> {
        let lower = s.to_ascii_lowercase();
        Fork::ALL
            .into_iter()
            .find(|fork| fork.as_str() == lower)
            .ok_or_else(|| Error::UnknownFork(s.to_string()))
    }
}

impl std::fmt::Display for Fork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scheduled fork.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledFork {
    pub fork: Fork,
    /// The fork's version, when the source gave it.
    pub version: Option<[u8; 4]>,
    /// Its first epoch; [`FAR_FUTURE_EPOCH`] when it is not scheduled.
    pub epoch: u64,
}

/// The network's forks in order, each with its first epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkSchedule {
    forks: Vec<ScheduledFork>,
}

impl ForkSchedule {
    /// A schedule from `(fork, first epoch)` pairs. Phase0 is always active from epoch 0, so it
    /// is added when missing. Epochs must not decrease with the fork order.
    pub fn new(forks: impl IntoIterator<Item = (Fork, u64)>) -> Result<Self, Error> {
        Self::from_scheduled(forks.into_iter().map(|(fork, epoch)| ScheduledFork {
            fork,
            version: None,
            epoch,
        }))
    }

    fn from_scheduled(forks: impl IntoIterator<Item = ScheduledFork>) -> Result<Self, Error> {
        let mut forks: Vec<ScheduledFork> = forks.into_iter().collect();
        forks.sort_by_key(|scheduled| scheduled.fork);
        forks.dedup_by_key(|scheduled| scheduled.fork);
        if forks.first().map(|scheduled| scheduled.fork) != Some(Fork::Phase0) {
            forks.insert(
                0,
                ScheduledFork {
                    fork: Fork::Phase0,
                    version: None,
                    epoch: 0,
                },
            );
        }
        for pair in forks.windows(2) {
            if pair[1].epoch < pair[0].epoch {
                return Err(Error::ForkSchedule(format!(
                    "{} at epoch {} is before {} at epoch {}",
                    pair[1].fork, pair[1].epoch, pair[0].fork, pair[0].epoch
                )));
            }
        }
        Ok(Self { forks })
    }

    /// From `/eth/v1/config/spec` (its `data` object, or the whole response): each fork's
    /// `{NAME}_FORK_EPOCH` and `{NAME}_FORK_VERSION`. A fork the node does not know (no key) is
    /// not scheduled.
    pub fn from_config_spec(spec: &Value) -> Result<Self, Error> {
        let spec = spec.get("data").unwrap_or(spec);
        let mut forks = Vec::new();
        for fork in Fork::ALL {
            let version = match spec.get(format!("{}_FORK_VERSION", fork.spec_key())) {
                Some(value) => Some(parse_version(value)?),
                None => None,
            };
            let epoch = if fork == Fork::Phase0 {
                0
            } else {
                match spec.get(format!("{}_FORK_EPOCH", fork.spec_key())) {
                    Some(value) => parse_u64(value)?,
                    None => FAR_FUTURE_EPOCH,
                }
            };
            forks.push(ScheduledFork {
                fork,
                version,
                epoch,
            });
        }
        Self::from_scheduled(forks)
    }

    /// From `/eth/v1/config/fork_schedule` (its `data` array, or the whole response). The
    /// endpoint does not name the forks: its entries are taken in fork order (phase0 first), as
    /// beacon nodes list them, and each entry's `previous_version` must be the one before's
    /// `current_version`, which catches a node that skips or reorders entries.
    pub fn from_fork_schedule(schedule: &Value) -> Result<Self, Error> {
        let entries = schedule
            .get("data")
            .unwrap_or(schedule)
            .as_array()
            .ok_or_else(|| Error::ForkSchedule("not an array".into()))?;
        if entries.len() > Fork::ALL.len() {
            return Err(Error::ForkSchedule(format!(
                "{} entries, more forks than this build knows ({})",
                entries.len(),
                Fork::ALL.len()
            )));
        }
        let mut forks = Vec::new();
        let mut previous: Option<[u8; 4]> = None;
        for (fork, entry) in Fork::ALL.into_iter().zip(entries) {
            let field = |name: &str| {
                entry
                    .get(name)
                    .ok_or_else(|| Error::ForkSchedule(format!("entry for {fork} has no {name}")))
            };
            let current = parse_version(field("current_version")?)?;
            let previous_version = parse_version(field("previous_version")?)?;
            if let Some(expected) = previous
                && previous_version != expected
            {
                return Err(Error::ForkSchedule(format!(
                    "entry for {fork}: previous_version does not follow the entry before"
                )));
            }
            previous = Some(current);
            forks.push(ScheduledFork {
                fork,
                version: Some(current),
                epoch: parse_u64(field("epoch")?)?,
            });
        }
        Self::from_scheduled(forks)
    }

    /// The fork active at `epoch`: the newest whose first epoch is at most `epoch`.
    pub fn fork_at_epoch(&self, epoch: u64) -> Fork {
        self.scheduled_at_epoch(epoch).fork
    }

    /// The scheduled fork (with its version, when known) active at `epoch`.
    pub fn scheduled_at_epoch(&self, epoch: u64) -> ScheduledFork {
        self.forks
            .iter()
            .rev()
            .find(|scheduled| scheduled.epoch <= epoch)
            .copied()
            // Phase0 at epoch 0 is always present (see `from_scheduled`).
            .unwrap_or(ScheduledFork {
                fork: Fork::Phase0,
                version: None,
                epoch: 0,
            })
    }

    /// Every fork of the schedule, oldest first.
    pub fn forks(&self) -> &[ScheduledFork] {
        &self.forks
    }
}

fn parse_u64(value: &Value) -> Result<u64, Error> {
    match value {
        Value::String(s) => s
            .parse()
            .map_err(|_| Error::ForkSchedule(format!("not an integer: {s:?}"))),
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| Error::ForkSchedule(format!("not an integer: {n}"))),
        other => Err(Error::ForkSchedule(format!("not an integer: {other}"))),
    }
}

fn parse_version(value: &Value) -> Result<[u8; 4], Error> {
    let text = value
        .as_str()
        .ok_or_else(|| Error::ForkSchedule(format!("version is not a string: {value}")))?;
    let bytes = crate::hex::decode(text)
        .map_err(|e| Error::ForkSchedule(format!("version {text:?}: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| Error::ForkSchedule(format!("version {text:?} is not 4 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip() {
        for fork in Fork::ALL {
            assert_eq!(fork.as_str().parse::<Fork>(), Ok(fork));
            assert_eq!(fork.to_string().to_uppercase().parse::<Fork>(), Ok(fork));
        }
        assert!("gloas".parse::<Fork>().is_err());
        assert!("".parse::<Fork>().is_err());
    }

    #[test]
    fn fork_at_epoch_from_the_config_spec() {
        let spec = json!({"data": {
            "PRESET_BASE": "minimal",
            "GENESIS_FORK_VERSION": "0x00000001",
            "ALTAIR_FORK_VERSION": "0x01000001",
            "ALTAIR_FORK_EPOCH": "0",
            "BELLATRIX_FORK_VERSION": "0x02000001",
            "BELLATRIX_FORK_EPOCH": "0",
            "CAPELLA_FORK_VERSION": "0x03000001",
            "CAPELLA_FORK_EPOCH": "2",
            "DENEB_FORK_VERSION": "0x04000001",
            "DENEB_FORK_EPOCH": "18446744073709551615",
        }});
        let schedule = ForkSchedule::from_config_spec(&spec).expect("valid spec");
        assert_eq!(schedule.fork_at_epoch(0), Fork::Bellatrix);
        assert_eq!(schedule.fork_at_epoch(1), Fork::Bellatrix);
        assert_eq!(schedule.fork_at_epoch(2), Fork::Capella);
        assert_eq!(schedule.fork_at_epoch(u64::MAX - 1), Fork::Capella);
        assert_eq!(
            schedule.scheduled_at_epoch(5).version,
            Some([3, 0, 0, 1]),
            "the version comes along"
        );
        // A bad epoch is an error, not a panic.
        let bad = json!({"ALTAIR_FORK_EPOCH": "soon"});
        assert!(ForkSchedule::from_config_spec(&bad).is_err());
    }

    #[test]
    fn fork_at_epoch_from_the_fork_schedule() {
        let schedule = json!({"data": [
            {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
            {"previous_version": "0x00000001", "current_version": "0x01000001", "epoch": "10"},
            {"previous_version": "0x01000001", "current_version": "0x02000001", "epoch": "20"},
        ]});
        let schedule = ForkSchedule::from_fork_schedule(&schedule).expect("valid schedule");
        assert_eq!(schedule.fork_at_epoch(9), Fork::Phase0);
        assert_eq!(schedule.fork_at_epoch(10), Fork::Altair);
        assert_eq!(schedule.fork_at_epoch(1000), Fork::Bellatrix);
        let broken = json!([
            {"previous_version": "0x00000001", "current_version": "0x00000001", "epoch": "0"},
            {"previous_version": "0x09000001", "current_version": "0x01000001", "epoch": "10"},
        ]);
        assert!(ForkSchedule::from_fork_schedule(&broken).is_err());
        assert!(ForkSchedule::from_fork_schedule(&json!({"data": 5})).is_err());
        assert!(ForkSchedule::new([(Fork::Altair, 10), (Fork::Bellatrix, 5)]).is_err());
    }
}
