#!/usr/bin/env bash
# What CI runs after the tests: a short fresh campaign over every fault plan. (The failure
# corpus, tests/corpus.json, is replayed by `tests/tests/corpus.rs` inside ./scripts/test.sh.)
# The campaign's seeds move with the commit, so each submission explores new runs; a failing
# seed prints the command that replays it, and belongs in tests/corpus.json once its bug is
# fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
# The node binary exactly as the devnet, dkg and Lodestar tests and ./scripts/python-tests.sh
# build it (`-p cohort-node --bin cohort`): after them this is a no-op (3 s). Building
# `--workspace --bins` instead unifies every member's features and compiled the node's graph
# once more (9 to 11 min on the 2-core machine, measured 2026-12-03).
cargo build -p cohort-node --bin cohort
cohort="${CARGO_TARGET_DIR:-target}/debug/cohort"
commit=$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0)
first=$(( (16#${commit} % 100000) * 10 + 1000 ))
seeds="${CAMPAIGN_SEEDS:-${first}..$((first + 5))}"
echo "fresh campaign: seeds ${seeds}, every plan, 16 slots"
"$cohort" campaign --seeds "${seeds}" --plan all --slots 16 --jobs 2
