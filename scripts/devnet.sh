#!/usr/bin/env bash
# A local devnet: N `cohort run` processes on 127.0.0.1 from one `cohort cluster init`.
#
#   scripts/devnet.sh start  [options]   build (release), init a fresh cluster, start it, wait ready
#   scripts/devnet.sh stop               SIGTERM every operator, wait for them to stop
#   scripts/devnet.sh status             /health of each operator and a line from its /metrics
#   scripts/devnet.sh report             per operator: blocks finalized/s, duty success rate,
#                                        RSS and CPU (% of one core) over the run
#
# Options (or the environment variable in brackets):
#   --operators N          operators (3f+1)                       [OPERATORS, default 4]
#   --validators N         validators the cluster runs            [VALIDATORS, default 64]
#   --slot-seconds S       slot length                            [SLOT_SECONDS, default 12]
#   --genesis-delay S      slot 0 starts S seconds after init     [GENESIS_DELAY, default 15]
#   --base-port P          operator i's p2p port is P+i           [BASE_PORT, default 9000]
#   --metrics-base-port M  operator i's /metrics, /health on M+i  [METRICS_BASE_PORT, default 9100]
#   --dir D                where the devnet lives                 [DEVNET_DIR, default <repo>/.devnet]
#   --log-format F         json or pretty                         [LOG_FORMAT, default pretty]
#   --log FILTER           log filter (RUST_LOG syntax)           [LOG_FILTER, default info]
#   --seed K               seed of the devnet beacon's duties     [SEED, default 1]
#   --ready-timeout S      how long start waits for /health       [READY_TIMEOUT, default
#                          genesis delay + 8 slots]
#   --no-build             use the binary as it is                [NO_BUILD=1]
#   --force                stop: SIGKILL what is still running after the timeout
#   STOP_TIMEOUT=S         stop: how long to wait (default: 30 s, or the operators'
#                          stop_timeout_seconds + 10 s if that is longer)
#   DEVNET_BIN=path        run this binary instead of building target/release/cohort
#
# Layout: <dir>/cluster (what `cohort cluster init` wrote: configs, keys, data dirs),
# <dir>/logs/operator-<i>.log, <dir>/pids/operator-<i>.pid.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

OPERATORS="${OPERATORS:-4}"
VALIDATORS="${VALIDATORS:-64}"
SLOT_SECONDS="${SLOT_SECONDS:-12}"
GENESIS_DELAY="${GENESIS_DELAY:-15}"
BASE_PORT="${BASE_PORT:-9000}"
METRICS_BASE_PORT="${METRICS_BASE_PORT:-9100}"
DEVNET_DIR="${DEVNET_DIR:-$REPO/.devnet}"
LOG_FORMAT="${LOG_FORMAT:-pretty}"
LOG_FILTER="${LOG_FILTER:-info}"
SEED="${SEED:-1}"
READY_TIMEOUT="${READY_TIMEOUT:-}"
NO_BUILD="${NO_BUILD:-}"
STOP_TIMEOUT="${STOP_TIMEOUT:-}"
FORCE=""

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
    echo "devnet: $*" >&2
    exit 1
}

command="${1:-}"
[[ -n "$command" ]] || { usage; exit 2; }
shift
while [[ $# -gt 0 ]]; do
    case "$1" in
    --operators) OPERATORS="$2"; shift 2 ;;
    --validators) VALIDATORS="$2"; shift 2 ;;
    --slot-seconds) SLOT_SECONDS="$2"; shift 2 ;;
    --genesis-delay) GENESIS_DELAY="$2"; shift 2 ;;
    --base-port) BASE_PORT="$2"; shift 2 ;;
    --metrics-base-port) METRICS_BASE_PORT="$2"; shift 2 ;;
    --dir) DEVNET_DIR="$2"; shift 2 ;;
    --log-format) LOG_FORMAT="$2"; shift 2 ;;
    --log) LOG_FILTER="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --ready-timeout) READY_TIMEOUT="$2"; shift 2 ;;
    --no-build) NO_BUILD=1; shift ;;
    --force) FORCE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
done
[[ "$DEVNET_DIR" = /* ]] || DEVNET_DIR="$PWD/$DEVNET_DIR"
CLUSTER="$DEVNET_DIR/cluster"
LOGS="$DEVNET_DIR/logs"
PIDS="$DEVNET_DIR/pids"

command -v curl >/dev/null || die "curl is needed for /health and /metrics"
# `cohort run` reads every COHORT_* variable as a config override (and refuses unknown ones).
if [[ "$command" == start ]] && env | grep -q '^COHORT_'; then
    echo "devnet: note: these COHORT_* variables override every operator's config:" \
        "$(env | grep '^COHORT_' | cut -d= -f1 | tr '\n' ' ')" >&2
fi

# ---- the cluster on disk ----

# Operator indices of the cluster on disk (0 1 2 ...).
operator_indices() {
    local dir
    for dir in "$CLUSTER"/operator-*; do
        [[ -f "$dir/operator.toml" ]] && echo "${dir##*/operator-}"
    done | sort -n
}

# A top-level string field of operator i's config.
config_field() {
    sed -n "s/^$2 *= *\"\\(.*\\)\"/\\1/p" "$CLUSTER/operator-$1/operator.toml" | head -1
}

metrics_address() {
    config_field "$1" metrics_listen
}

genesis_time() {
    sed -n 's/^genesis_time *= *\([0-9]*\).*/\1/p' "$CLUSTER/operator-$1/operator.toml" | head -1
}

# The pid of operator i if it is running (a live `cohort run` on its config), else nothing.
running_pid() {
    local file="$PIDS/operator-$1.pid" pid
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    # Guard against a reused pid: the process must be `cohort run` on this operator's config.
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "operator-$1/operator.toml"; then
        local state
        state="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)"
        [[ "$state" == "Z" || "$state" == "X" ]] || echo "$pid"
    fi
}

# ---- HTTP ----

# GET http://$1$2: sets HTTP_CODE (000 when nothing answers) and HTTP_BODY.
HTTP_CODE=000
HTTP_BODY=""
http_get() {
    local out
    out="$(curl -s --max-time 3 -w '\n%{http_code}' "http://$1$2" 2>/dev/null || true)"
    HTTP_CODE="${out##*$'\n'}"
    [[ "$HTTP_CODE" =~ ^[0-9]{3}$ ]] || HTTP_CODE=000
    HTTP_BODY="${out%$'\n'*}"
    [[ "$out" == *$'\n'* ]] || HTTP_BODY=""
}

# A metric's value from Prometheus text on stdin: $1 is the series as printed (name{labels}), or
# a bare name to sum every label set of it. Missing is 0.
metric() {
    awk -v want="$1" '
        /^#/ { next }
        {
            series = $1; value = $NF
            name = series; sub(/\{.*/, "", name)
            if (series == want || (index(want, "{") == 0 && name == want)) { sum += value; found = 1 }
        }
        END { printf "%.0f", found ? sum : 0 }'
}

# ---- stop ----

stop_operators() {
    local indices=("$@") i pid waited
    local -A pids=()
    for i in "${indices[@]}"; do
        pid="$(running_pid "$i")"
        if [[ -n "$pid" ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            pids[$i]="$pid"
        else
            echo "operator $i: not running"
        fi
    done
    [[ ${#pids[@]} -gt 0 ]] || return 0
    # An operator waits up to its stop_timeout_seconds for running duties, then up to 5 s for
    # its tasks: wait at least 30 s, and a little longer than that.
    local timeout="$STOP_TIMEOUT"
    if [[ -z "$timeout" ]]; then
        timeout=30
        for i in "${!pids[@]}"; do
            local own
            own="$(sed -n 's/^stop_timeout_seconds *= *\([0-9]*\).*/\1/p' \
                "$CLUSTER/operator-$i/operator.toml" 2>/dev/null | head -1)"
            [[ -n "$own" ]] && ((own + 10 > timeout)) && timeout=$((own + 10))
        done
    fi
    echo "sent SIGTERM to ${#pids[@]} operator(s); waiting up to ${timeout}s for them to stop"
    local start=$SECONDS failed=0
    for i in $(printf '%s\n' "${!pids[@]}" | sort -n); do
        pid="${pids[$i]}"
        while kill -0 "$pid" 2>/dev/null && [[ -n "$(running_pid "$i")" ]]; do
            if ((SECONDS - start >= timeout)); then
                break
            fi
            sleep 0.2
        done
        waited=$((SECONDS - start))
        if [[ -n "$(running_pid "$i")" ]]; then
            if [[ -n "$FORCE" ]]; then
                kill -KILL "$pid" 2>/dev/null || true
                echo "operator $i (pid $pid): still running ${timeout}s after SIGTERM; sent SIGKILL"
            else
                echo "operator $i (pid $pid): still running ${timeout}s after SIGTERM (--force to SIGKILL)"
            fi
            failed=1
            continue
        fi
        rm -f "$PIDS/operator-$i.pid"
        # Not our child, so no exit status to wait for: the log says how it ended.
        local log="$LOGS/operator-$i.log" how="exited (no 'operator stopped' line in its log)"
        if [[ -f "$log" ]]; then
            if tail -n 50 "$log" | grep -q 'operator stopped with an error'; then
                how="exited with an error: $(tail -n 50 "$log" | grep -m1 '^error:' || true)"
            elif tail -n 20 "$log" | grep -q 'operator stopped'; then
                how="stopped cleanly"
            fi
        fi
        echo "operator $i (pid $pid): $how within ${waited}s"
    done
    return $failed
}

cmd_stop() {
    local indices=()
    mapfile -t indices < <(operator_indices)
    if [[ ${#indices[@]} -eq 0 && ! -d "$PIDS" ]]; then
        echo "no devnet in $DEVNET_DIR"
        return 0
    fi
    # Also any pid file without a cluster config (a half-finished start).
    local file
    for file in "$PIDS"/operator-*.pid; do
        [[ -f "$file" ]] || continue
        local i="${file##*/operator-}"
        i="${i%.pid}"
        [[ " ${indices[*]} " == *" $i "* ]] || indices+=("$i")
    done
    stop_operators "${indices[@]}"
}

# ---- start ----

find_binary() {
    if [[ -n "${DEVNET_BIN:-}" ]]; then
        echo "$DEVNET_BIN"
        return
    fi
    local target
    target="$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
    [[ -n "$target" ]] || target="${CARGO_TARGET_DIR:-$REPO/target}"
    echo "$target/release/cohort"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

STARTED=()
on_interrupt() {
    trap - INT TERM
    echo
    echo "devnet: interrupted; stopping the operators started so far" >&2
    [[ ${#STARTED[@]} -eq 0 ]] || stop_operators "${STARTED[@]}" || true
    exit 130
}

cmd_start() {
    [[ "$OPERATORS" =~ ^[0-9]+$ && "$OPERATORS" -ge 1 ]] || die "--operators: '$OPERATORS'"
    [[ "$SLOT_SECONDS" =~ ^[0-9]+$ && "$SLOT_SECONDS" -ge 1 ]] || die "--slot-seconds: '$SLOT_SECONDS'"
    [[ -n "$READY_TIMEOUT" ]] || READY_TIMEOUT=$((GENESIS_DELAY + 8 * SLOT_SECONDS))

    local bin
    bin="$(find_binary)"
    if [[ -z "${DEVNET_BIN:-}" && -z "$NO_BUILD" ]]; then
        echo "building: cargo build --release -p cohort-node"
        (cd "$REPO" && cargo build --release -p cohort-node)
    fi
    [[ -x "$bin" ]] || die "no binary at $bin (build it, or set DEVNET_BIN)"

    trap on_interrupt INT TERM

    # An old devnet: stop its processes before deleting anything of it.
    if [[ -d "$CLUSTER" || -d "$PIDS" ]]; then
        echo "stopping the previous devnet in $DEVNET_DIR"
        cmd_stop || die "the previous devnet did not stop; not deleting $CLUSTER"
    fi
    rm -rf "$CLUSTER" "$PIDS"
    if [[ -d "$LOGS" ]]; then
        rm -rf "$DEVNET_DIR/logs.previous"
        mv "$LOGS" "$DEVNET_DIR/logs.previous"
    fi
    mkdir -p "$LOGS" "$PIDS"

    local i port
    for ((i = 0; i < OPERATORS; i++)); do
        for port in $((BASE_PORT + i)) $((METRICS_BASE_PORT + i)); do
            port_in_use "$port" && die "127.0.0.1:$port is in use (--base-port / --metrics-base-port)"
        done
    done

    "$bin" cluster init --out "$CLUSTER" --operators "$OPERATORS" --validators "$VALIDATORS" \
        --kdf light --genesis-delay "$GENESIS_DELAY" --slot-seconds "$SLOT_SECONDS" \
        --base-port "$BASE_PORT" --metrics-base-port "$METRICS_BASE_PORT" --seed "$SEED" \
        >"$DEVNET_DIR/configs.txt" 2>"$DEVNET_DIR/init.log" || {
        cat "$DEVNET_DIR/init.log" >&2
        die "cohort cluster init failed"
    }
    echo "cluster: $OPERATORS operators, $VALIDATORS validators, ${SLOT_SECONDS}s slots, genesis in ${GENESIS_DELAY}s"

    for ((i = 0; i < OPERATORS; i++)); do
        # setsid: the operators are not in this terminal's process group, so a later Ctrl-C or
        # a closed terminal does not reach them; `stop` does.
        setsid "$bin" run --config "$CLUSTER/operator-$i/operator.toml" \
            --log-format "$LOG_FORMAT" --log "$LOG_FILTER" \
            </dev/null >>"$LOGS/operator-$i.log" 2>&1 &
        echo $! >"$PIDS/operator-$i.pid"
        STARTED+=("$i")
        echo "operator $i: pid $!, log $LOGS/operator-$i.log"
    done

    # The node writes its own pid into its data directory's lock file: prefer that one, in
    # case setsid had to fork.
    sleep 1
    for ((i = 0; i < OPERATORS; i++)); do
        local lock="$CLUSTER/operator-$i/data/cohort.lock" pid
        pid="$(cat "$lock" 2>/dev/null || true)"
        if [[ "$pid" =~ ^[0-9]+$ ]] && [[ -d "/proc/$pid" ]]; then
            echo "$pid" >"$PIDS/operator-$i.pid"
        fi
    done

    echo "waiting up to ${READY_TIMEOUT}s for every /health to say ready with a finalized block past height 0..."
    local deadline=$((SECONDS + READY_TIMEOUT)) ready body
    while true; do
        ready=0
        for ((i = 0; i < OPERATORS; i++)); do
            [[ -n "$(running_pid "$i")" ]] || {
                echo "operator $i exited:" >&2
                tail -n 20 "$LOGS/operator-$i.log" >&2
                stop_operators "${STARTED[@]}" || true
                exit 1
            }
            http_get "$(metrics_address "$i")" /health
            # Ready with a block finalized by consensus: a node already reports ready on the
            # genesis block (height 0) it processes at startup.
            if [[ "$HTTP_CODE" == 200 && ! "$HTTP_BODY" =~ \"finalized_height\":(0|null)[,}] ]]; then
                ready=$((ready + 1))
            fi
        done
        [[ $ready -eq $OPERATORS ]] && break
        if ((SECONDS >= deadline)); then
            echo "devnet: not every operator is ready after ${READY_TIMEOUT}s:" >&2
            for ((i = 0; i < OPERATORS; i++)); do
                http_get "$(metrics_address "$i")" /health
                echo "  operator $i: $HTTP_CODE $HTTP_BODY" >&2
            done
            for ((i = 0; i < OPERATORS; i++)); do
                echo "----- last lines of $LOGS/operator-$i.log -----" >&2
                tail -n 15 "$LOGS/operator-$i.log" >&2
            done
            echo "the operators are still running: scripts/devnet.sh status, scripts/devnet.sh stop" >&2
            trap - INT TERM
            exit 1
        fi
        sleep 1
    done
    trap - INT TERM

    echo
    echo "devnet ready ($OPERATORS operators):"
    for ((i = 0; i < OPERATORS; i++)); do
        local address
        address="$(metrics_address "$i")"
        echo "  operator $i: p2p $(config_field "$i" listen)  http://$address/metrics  http://$address/health"
        echo "              log $LOGS/operator-$i.log"
    done
    echo "  configs, keys and data: $CLUSTER"
    echo "status: scripts/devnet.sh status   report: scripts/devnet.sh report   stop: scripts/devnet.sh stop"
}

# ---- status and report ----

cmd_status() {
    local indices=() i address body metrics unhealthy=0
    mapfile -t indices < <(operator_indices)
    [[ ${#indices[@]} -gt 0 ]] || die "no devnet in $DEVNET_DIR (scripts/devnet.sh start)"
    for i in "${indices[@]}"; do
        address="$(metrics_address "$i")"
        local pid
        pid="$(running_pid "$i")"
        http_get "$address" /health
        body="$HTTP_BODY"
        if [[ -z "$pid" ]]; then
            echo "operator $i: not running"
            unhealthy=1
            continue
        fi
        [[ "$HTTP_CODE" == 200 ]] || unhealthy=1
        echo "operator $i (pid $pid): health $HTTP_CODE $body"
        http_get "$address" /metrics
        metrics="$HTTP_BODY"
        [[ "$HTTP_CODE" == 200 ]] || { echo "  /metrics: $HTTP_CODE"; continue; }
        printf '  finalized height %s | duties succeeded %s (committee %s, proposer %s, aggregator %s), failed %s (of them missed %s) | chain accepted attestation %s, proposal %s, aggregate %s; conflicts %s\n' \
            "$(metric operator_executor_finalized_height <<<"$metrics")" \
            "$(metric operator_runner_duties_succeeded_total <<<"$metrics")" \
            "$(metric 'operator_runner_duties_succeeded_total{role="COMMITTEE"}' <<<"$metrics")" \
            "$(metric 'operator_runner_duties_succeeded_total{role="PROPOSER"}' <<<"$metrics")" \
            "$(metric 'operator_runner_duties_succeeded_total{role="AGGREGATOR"}' <<<"$metrics")" \
            "$(metric operator_runner_duties_failed_total <<<"$metrics")" \
            "$(metric operator_runner_duties_missed_total <<<"$metrics")" \
            "$(metric 'devnet_chain_accepted{kind="attestation"}' <<<"$metrics")" \
            "$(metric 'devnet_chain_accepted{kind="proposal"}' <<<"$metrics")" \
            "$(metric 'devnet_chain_accepted{kind="aggregate"}' <<<"$metrics")" \
            "$(metric devnet_chain_conflicts <<<"$metrics")"
    done
    return $unhealthy
}

cmd_report() {
    local indices=() i
    mapfile -t indices < <(operator_indices)
    [[ ${#indices[@]} -gt 0 ]] || die "no devnet in $DEVNET_DIR (scripts/devnet.sh start)"
    local ticks uptime now
    ticks="$(getconf CLK_TCK)"
    now="$(date +%s)"
    printf '%-3s %8s %8s %9s %9s %10s %10s %7s %8s %9s %9s\n' \
        op pid up_s height blocks/s succeeded failed missed success rss_MiB cpu_%
    for i in "${indices[@]}"; do
        local pid metrics
        pid="$(running_pid "$i")"
        if [[ -z "$pid" ]]; then
            printf '%-3s %8s\n' "$i" "stopped"
            continue
        fi
        http_get "$(metrics_address "$i")" /metrics
        metrics="$HTTP_BODY"
        # /proc/<pid>/stat after the command name: field 3 is state, 14/15 utime/stime, 22 start.
        local stat utime stime start rss_kib
        stat="$(sed 's/^.*) //' "/proc/$pid/stat")"
        utime="$(cut -d' ' -f12 <<<"$stat")"
        stime="$(cut -d' ' -f13 <<<"$stat")"
        start="$(cut -d' ' -f20 <<<"$stat")"
        rss_kib="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"
        uptime="$(cut -d' ' -f1 /proc/uptime)"
        local height succeeded failed missed genesis
        height="$(metric operator_executor_finalized_height <<<"$metrics")"
        succeeded="$(metric operator_runner_duties_succeeded_total <<<"$metrics")"
        failed="$(metric operator_runner_duties_failed_total <<<"$metrics")"
        missed="$(metric operator_runner_duties_missed_total <<<"$metrics")"
        genesis="$(genesis_time "$i")"
        awk -v op="$i" -v pid="$pid" -v ticks="$ticks" -v uptime="$uptime" -v start="$start" \
            -v utime="$utime" -v stime="$stime" -v rss="$rss_kib" -v height="$height" \
            -v ok="$succeeded" -v failed="$failed" -v missed="$missed" -v now="$now" \
            -v genesis="$genesis" 'BEGIN {
                up = uptime - start / ticks
                # Blocks are finalized from genesis on, whoever was running: the chain rate.
                since = now - genesis
                rate = since > 0 ? height / since : 0
                cpu = up > 0 ? 100 * (utime + stime) / ticks / up : 0
                done = ok + failed
                success = done > 0 ? sprintf("%.1f%%", 100 * ok / done) : "-"
                printf "%-3s %8s %8.0f %9d %9.3f %10d %10d %7d %8s %9.1f %9.1f\n",
                    op, pid, up, height, rate, ok, failed, missed, success, rss / 1024, cpu
            }'
    done
    echo "blocks/s: finalized height / seconds since genesis (the chain's rate, including blocks"
    echo "finalized before this process started); success: succeeded / (succeeded + failed), where"
    echo "failed includes missed (no block of the duty's slot finalized a decision in time);"
    echo "counters start at 0 with each process. cpu_%: (utime + stime) / process uptime, as % of"
    echo "one core; rss: VmRSS now."
}

case "$command" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
report) cmd_report ;;
help | -h | --help) usage ;;
*) usage; exit 2 ;;
esac
