#!/usr/bin/env bash
# Prints "name digest violations" for every corpus entry and for mixed seeds 1..100 (32 slots), with the
# cohort binary given as $1. Used to check a refactor keeps every outcome digest.
# usage: scripts/digests.sh BIN tests/corpus.json > out.txt   (BIN: target/debug/cohort)
# Run it before and after a change and diff the two outputs.
set -uo pipefail
bin=$1; corpus=$2
cmds=$(mktemp)
trap 'rm -f "$cmds"' EXIT
python3 - "$corpus" <<'PY' > "$cmds"
import json,sys
for e in json.load(open(sys.argv[1])):
    print(f"corpus-{e['plan']}-{e['seed']}-{e['slots']}\t--seed {e['seed']} --operators {e['operators']} --validators {e['validators']} --slots {e['slots']} {e['faults']} {('--inject-bug '+e['inject_bug']) if e.get('inject_bug') else ''}".rstrip())
PY
run() { # name args...
  name=$1; shift
  out=$("$bin" "$@" --json 2>/dev/null | tail -1)
  d=$(printf '%s' "$out" | python3 -c 'import json,sys
try:
  r=json.load(sys.stdin); print(r["outcome_digest"], len(r["violations"]))
except Exception as e: print("ERROR", e)')
  echo "$name $d"
}
export -f run; export bin
{
  while IFS=$'\t' read -r name args; do echo "$name simulate $args"; done < "$cmds"
  for s in $(seq 1 100); do echo "mixed-$s replay --plan mixed --seed $s --slots 32"; done
} | xargs -P 2 -L 1 bash -c 'run "$@"' _ | sort
