//! The failure corpus: runs that once violated an invariant, kept and replayed forever.

use super::Plan;
use crate::{FaultArgs, SimConfig};
use serde::{Deserialize, Serialize};

/// One run that once violated an invariant: kept forever and replayed by CI, so the bug it
/// found stays fixed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CorpusEntry {
    pub plan: Plan,
    pub seed: u64,
    pub operators: usize,
    pub validators: u64,
    pub slots: u64,
    /// The invariant it violated when it was found.
    pub invariant: String,
    /// When and how it was found.
    pub found: String,
    /// The bug it found, in one line.
    pub note: String,
    /// The network and faults the plan drew for the seed when the entry was found, as
    /// `simulate` flags: plans gain new faults over time, and the entry must keep replaying
    /// the run that failed, not whatever the plan draws for its seed today.
    pub faults: String,
}

impl CorpusEntry {
    /// The cluster shape the entry's plan runs on.
    fn base(&self) -> SimConfig {
        SimConfig {
            operators: self.operators,
            validators: self.validators,
            slots: self.slots,
            ..SimConfig::default()
        }
    }

    /// The run this entry replays.
    pub fn config(&self) -> Result<SimConfig, String> {
        let faults = FaultArgs::parse(&self.faults)?;
        Ok(faults.apply(SimConfig {
            seed: self.seed,
            ..self.base()
        }))
    }

    /// The command that replays this entry.
    pub fn replay(&self) -> Result<String, String> {
        self.config().map(|config| config.replay_command())
    }
}

/// Parses a corpus file (a JSON array of [`CorpusEntry`]), refusing entries that could not run.
pub fn parse_corpus(text: &str) -> Result<Vec<CorpusEntry>, String> {
    let entries: Vec<CorpusEntry> =
        serde_json::from_str(text).map_err(|err| format!("corpus: not valid: {err}"))?;
    for entry in &entries {
        entry
            .config()
            .and_then(|config| config.validate().map_err(|err| err.to_string()))
            .map_err(|err| format!("corpus: {} seed {}: {err}", entry.plan, entry.seed))?;
        if entry.note.trim().is_empty() {
            return Err(format!(
                "corpus: {} seed {} has no note of the bug it found",
                entry.plan, entry.seed
            ));
        }
    }
    Ok(entries)
}
