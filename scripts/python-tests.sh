#!/usr/bin/env bash
# The supervisor's wire-compatibility tests: Python performers and a Python aggregator (grpcio,
# stubs generated at test time from supervisor/proto) against `cohort executor`, every signature
# checked with the independent crypto of tests/python/hourglass_crypto.py.
#
#   scripts/python-tests.sh                 # build cohort, run tests/python/supervisor
#   scripts/python-tests.sh tests/python/supervisor -k blue_green   # arguments replace the default
#
# The venv (grpcio, grpcio-tools, pytest, the crypto libraries; pinned in
# tests/python/requirements.txt) is made by scripts/python-venv.sh under ~/.cache.
# COHORT_BIN skips the build and uses that binary.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$("$ROOT/scripts/python-venv.sh")"
if [[ -z "${COHORT_BIN:-}" ]]; then
  cargo build -p cohort-node --bin cohort
  TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
  export COHORT_BIN="$TARGET/debug/cohort"
fi
if [[ $# -eq 0 ]]; then
  set -- "$ROOT/tests/python/supervisor"
fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
