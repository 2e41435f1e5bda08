#!/usr/bin/env bash
# The Python environment for the Python tests (tests/python): a venv under
# ${COHORT_CACHE:-$HOME/.cache}/cohort-python with exactly tests/python/requirements.txt.
#
#   scripts/python-venv.sh                       # create/update it, print its path
#   scripts/python-venv.sh python -m pytest tests/python -q   # ... and run a command in it
#
# Idempotent and fast when nothing changed: the venv records a hash of the requirements file and
# of the interpreter, and pip runs only when either differs. A lock serialises concurrent callers
# (several test suites may call this at once).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REQUIREMENTS="$ROOT/tests/python/requirements.txt"
VENV="${COHORT_CACHE:-$HOME/.cache}/cohort-python"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.cohort-requirements"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "python-venv: $PYTHON not found (set PYTHON=...)" >&2
  exit 1
fi

want="$( { sha256sum "$REQUIREMENTS" | cut -d' ' -f1; "$PYTHON" -c 'import sys; print(sys.version)'; } )"

up_to_date() {
  [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]
}

if ! up_to_date; then
  mkdir -p "$(dirname "$VENV")"
  exec 9>"$VENV.lock"
  flock 9
  if ! up_to_date; then # another caller may have finished it while we waited
    echo "python-venv: installing tests/python/requirements.txt into $VENV" >&2
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
      rm -rf "$VENV"
      "$PYTHON" -m venv "$VENV"
    fi
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS" >&2
    printf '%s' "$want" >"$STAMP"
  fi
  exec 9>&-
fi

if [[ $# -eq 0 ]]; then
  echo "$VENV"
else
  export VIRTUAL_ENV="$VENV"
  export PATH="$VENV/bin:$PATH"
  cd "$ROOT"
  exec "$@"
fi
