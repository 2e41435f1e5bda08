#!/usr/bin/env bash
# The real devnet under abuse: a 4-process devnet on 127.0.0.1 (scripts/devnet.sh) whose
# operators are SIGKILLed at random, one every few slots, and restarted from their storage.
# Not part of CI (it takes about KILLS x EVERY_SLOTS slots); run it by hand:
#
#   scripts/soak.sh [options]
#
# At the end it checks, and exits 1 if any fails:
#   - no devnet chain saw a conflicting signature (`devnet_chain_conflicts` is 0 everywhere);
#   - every operator's log shows the same digest at every finalized height (the check
#     tests/tests/devnet.rs makes);
#   - after each restart, the restarted operator completes a committee duty within two slots of
#     being ready again (its /health says 200).
# and prints the figures: time to ready and to the first duty after each restart, duties
# succeeded and failed per operator, chain height.
#
# Options (or the environment variable in brackets):
#   --kills N          SIGKILLs in all                       [KILLS, default 20]
#   --every-slots K    slots between two kills               [EVERY_SLOTS, default 3]
#   --slot-seconds S   slot length                           [SLOT_SECONDS, default 4]
#   --validators N     validators                            [VALIDATORS, default 16]
#   --seed K           which operator is killed when         [SOAK_SEED, default 1]
#   --dir D            where the devnet lives                [SOAK_DIR, default <repo>/.soak]
#   --base-port P      p2p ports P..P+3                      [BASE_PORT, default 9300]
#   --metrics-base-port M  /metrics, /health on M..M+3       [METRICS_BASE_PORT, default 9400]
#   --no-build         use the release binary as it is       [NO_BUILD=1]
#   DEVNET_BIN=path    run this binary instead of target/release/cohort
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KILLS="${KILLS:-20}"
EVERY_SLOTS="${EVERY_SLOTS:-3}"
SLOT_SECONDS="${SLOT_SECONDS:-4}"
VALIDATORS="${VALIDATORS:-16}"
SOAK_SEED="${SOAK_SEED:-1}"
SOAK_DIR="${SOAK_DIR:-$REPO/.soak}"
BASE_PORT="${BASE_PORT:-9300}"
METRICS_BASE_PORT="${METRICS_BASE_PORT:-9400}"
NO_BUILD="${NO_BUILD:-}"
OPERATORS=4

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}
die() {
    echo "soak: $*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --kills) KILLS="$2"; shift 2 ;;
    --every-slots) EVERY_SLOTS="$2"; shift 2 ;;
    --slot-seconds) SLOT_SECONDS="$2"; shift 2 ;;
    --validators) VALIDATORS="$2"; shift 2 ;;
    --seed) SOAK_SEED="$2"; shift 2 ;;
    --dir) SOAK_DIR="$2"; shift 2 ;;
    --base-port) BASE_PORT="$2"; shift 2 ;;
    --metrics-base-port) METRICS_BASE_PORT="$2"; shift 2 ;;
    --no-build) NO_BUILD=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
command -v python3 >/dev/null || die "python3 is needed to read the JSON logs"
command -v curl >/dev/null || die "curl is needed for /health and /metrics"
[[ "$SOAK_DIR" = /* ]] || SOAK_DIR="$PWD/$SOAK_DIR"
CLUSTER="$SOAK_DIR/cluster"
LOGS="$SOAK_DIR/logs"
PIDS="$SOAK_DIR/pids"

devnet() {
    DEVNET_DIR="$SOAK_DIR" BASE_PORT="$BASE_PORT" METRICS_BASE_PORT="$METRICS_BASE_PORT" \
        "$REPO/scripts/devnet.sh" "$@"
}

# The binary devnet.sh runs.
bin="${DEVNET_BIN:-}"
if [[ -z "$bin" ]]; then
    target="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    bin="${target:-${CARGO_TARGET_DIR:-$REPO/target}}/release/cohort"
fi

start_flags=(--operators "$OPERATORS" --validators "$VALIDATORS" --slot-seconds "$SLOT_SECONDS"
    --genesis-delay 10 --log-format json --log info)
[[ -n "$NO_BUILD" ]] && start_flags+=(--no-build)
echo "soak: $KILLS SIGKILLs, one every $EVERY_SLOTS slots of ${SLOT_SECONDS}s, seed $SOAK_SEED"
devnet start "${start_flags[@]}"
trap 'echo "soak: interrupted; stopping the devnet" >&2; devnet stop --force || true; exit 130' INT TERM

metrics_address() {
    sed -n 's/^metrics_listen *= *"\(.*\)"/\1/p' "$CLUSTER/operator-$1/operator.toml" | head -1
}
# A metric (summed over its labels unless given with them) of operator i; empty if it is down.
metric_of() {
    local body
    body="$(curl -s --max-time 3 "http://$(metrics_address "$1")/metrics" 2>/dev/null)" || return 0
    awk -v want="$2" '
        /^#/ { next }
        { series = $1; name = series; sub(/\{.*/, "", name)
          if (series == want || (index(want, "{") == 0 && name == want)) { sum += $NF; found = 1 } }
        END { if (found) printf "%.0f", sum; else if (NR > 0) print 0 }' <<<"$body"
}
health_of() {
    curl -s -o /dev/null --max-time 3 -w '%{http_code}' "http://$(metrics_address "$1")/health" 2>/dev/null || true
}
pid_of() {
    cat "$PIDS/operator-$1.pid" 2>/dev/null || true
}

RANDOM="$SOAK_SEED"
committee='operator_runner_duties_succeeded_total{role="COMMITTEE"}'
slot_ms=$((SLOT_SECONDS * 1000))
failures=()
figures=()
for ((kill = 1; kill <= KILLS; kill++)); do
    sleep $((EVERY_SLOTS * SLOT_SECONDS))
    i=$((RANDOM % OPERATORS))
    pid="$(pid_of "$i")"
    [[ "$pid" =~ ^[0-9]+$ ]] || die "no pid for operator $i"
    kill -KILL "$pid" 2>/dev/null || die "operator $i (pid $pid) was not running before kill $kill"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    killed_at=$(date +%s%3N)
    # Restart it from its storage, as devnet.sh started it.
    setsid "$bin" run --config "$CLUSTER/operator-$i/operator.toml" --log-format json --log info \
        </dev/null >>"$LOGS/operator-$i.log" 2>&1 &
    echo $! >"$PIDS/operator-$i.pid"
    restarted_at=$(date +%s%3N)
    # Ready again, then its first committee duty: within two slots of ready.
    ready_at=""
    deadline=$((restarted_at + 20 * slot_ms))
    while [[ -z "$ready_at" ]]; do
        [[ "$(health_of "$i")" == 200 ]] && ready_at=$(date +%s%3N) && break
        (($(date +%s%3N) > deadline)) && break
        sleep 0.1
    done
    if [[ -z "$ready_at" ]]; then
        failures+=("kill $kill: operator $i not ready 20 slots after its restart")
        figures+=("$kill $i - -")
        continue
    fi
    duty_at=""
    deadline=$((ready_at + 2 * slot_ms))
    while (($(date +%s%3N) <= deadline)); do
        done_duties="$(metric_of "$i" "$committee")"
        if [[ -n "$done_duties" && "$done_duties" -gt 0 ]]; then
            duty_at=$(date +%s%3N)
            break
        fi
        sleep 0.1
    done
    ready_ms=$((ready_at - restarted_at))
    if [[ -z "$duty_at" ]]; then
        failures+=("kill $kill: operator $i completed no committee duty within 2 slots of being ready")
        figures+=("$kill $i $ready_ms -")
    else
        figures+=("$kill $i $ready_ms $((duty_at - ready_at))")
    fi
    echo "kill $kill: operator $i down $((restarted_at - killed_at)) ms; ready after ${ready_ms} ms; first duty ${duty_at:+$((duty_at - ready_at)) ms after ready}${duty_at:-NOT within 2 slots}"
done
trap - INT TERM

echo
echo "after $KILLS kills:"
devnet status || true
conflicts=0
for ((i = 0; i < OPERATORS; i++)); do
    c="$(metric_of "$i" devnet_chain_conflicts)"
    [[ -z "$c" ]] && failures+=("operator $i: /metrics does not answer at the end")
    [[ -n "$c" && "$c" != 0 ]] && conflicts=1 && failures+=("operator $i: devnet_chain_conflicts = $c")
done
devnet stop --force || failures+=("not every operator stopped cleanly")

# Every log's finalized blocks: no height with two digests, across all operators and restarts.
chain="$(python3 - "$LOGS" "$OPERATORS" <<'EOF'
import json, sys
logs, n = sys.argv[1], int(sys.argv[2])
chain, problems, heights = {}, [], []
for i in range(n):
    path = f"{logs}/operator-{i}.log"
    mine = 0
    with open(path, errors="replace") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by SIGKILL
            if entry.get("message") != "processed finalized block":
                continue
            height, digest = entry.get("height"), entry.get("digest")
            known = chain.setdefault(height, (digest, i))
            if known[0] != digest:
                problems.append(f"height {height}: operator {known[1]} finalized {known[0]}, operator {i} {digest}")
            mine = max(mine, height)
    heights.append(mine)
print(f"heights {heights}")
for p in problems[:10]:
    print(f"PROBLEM {p}")
EOF
)"
echo "$chain" | sed 's/^/  /'
grep -q '^PROBLEM' <<<"$chain" && failures+=("operators finalized different blocks at one height")

echo
echo "kill  operator  ready_after_restart_ms  first_duty_after_ready_ms (limit $((2 * slot_ms)))"
printf '%s\n' "${figures[@]}" | awk '{ printf "%4s  %8s  %22s  %25s\n", $1, $2, $3, $4 }'
printf '%s\n' "${figures[@]}" | awk '$3 != "-" { r[++n] = $3 } $4 != "-" { d[++m] = $4 }
    function pct(a, k, p,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return k ? a[int((k - 1) * p) + 1] : "-" }
    END { printf "ready after restart: p50 %s ms, max %s ms; first duty after ready: p50 %s ms, max %s ms\n",
        pct(r, n, 0.5), pct(r, n, 1), pct(d, m, 0.5), pct(d, m, 1) }'
if [[ ${#failures[@]} -gt 0 ]]; then
    echo
    echo "soak FAILED:"
    printf '  %s\n' "${failures[@]}"
    exit 1
fi
echo "soak passed: no conflicting signature, one finalized chain, duties back within two slots of every restart"
