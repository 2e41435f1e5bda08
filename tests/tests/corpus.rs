//! Replays every run in `tests/corpus.json`: each once violated an invariant, and each must
//! hold every invariant now. A failure prints the command that replays it.

use cohort_simulation::campaign::parse_corpus;

#[test]
fn every_corpus_entry_holds_every_invariant_now() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{path}: {err}"));
    let entries = parse_corpus(&text).unwrap_or_else(|err| panic!("{path}: {err}"));
    assert!(!entries.is_empty(), "{path} lists no runs");
    let mut failures = Vec::new();
    for entry in &entries {
        let config = entry
            .config()
            .unwrap_or_else(|err| panic!("{path}: {} seed {}: {err}", entry.plan, entry.seed));
        let report = cohort_simulation::run(&config);
        if !report.violations.is_empty() {
            failures.push(format!(
                "{} seed {} (once: {}; {}) violates {:?}\n  replay: {}",
                entry.plan,
                entry.seed,
                entry.invariant,
                entry.note,
                report.violations.first(),
                config.replay_command()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "corpus regressions:\n{}",
        failures.join("\n")
    );
}
