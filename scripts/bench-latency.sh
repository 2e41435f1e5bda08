#!/usr/bin/env bash
# Decide-latency and speed report (a benchmark, not a timed test): 50 ms one-way links,
# 4 operators, release build. Prints one JSON line per configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p cohort-node
# Wherever the target directory is (CI keeps it outside the clone).
cohort="${CARGO_TARGET_DIR:-target}/release/cohort"
for validators in 64 1024 4096; do
  "$cohort" simulate --operators 4 --validators "$validators" --slots 256 --seed 7 \
    --latency-ms 50 --jitter-ms 0 --json
done
