#!/usr/bin/env bash
# Throughput and latency of SubmitTask through the performer supervisor, next to the same
# trivial (echo) performer called directly, in a release build.
#
#   scripts/bench-supervisor.sh [TASKS] [CONCURRENCY]     (defaults 20000 64)
#
# Prints tasks/s and p50/p99 one at a time and CONCURRENCY at once, both ways. The supervisor's
# path includes the aggregator-signature check, the worker pool, the performer call, the ECDSA
# result and auth signatures and the fsynced (group-committed) result record.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
cargo build --release -p cohort-supervisor --example bench
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
exec "$TARGET/release/examples/bench" "${1:-20000}" "${2:-64}"
