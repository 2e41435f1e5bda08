#!/usr/bin/env bash
# Runs real execution clients (EthereumJS 0.10.5), each on its own fresh post-merge single-node
# chain, for the Engine API tests of the remote engine and the mixed cluster test.
#
#   ./scripts/ethereumjs.sh COMMAND [ARGS...]
#       starts the client(s), runs COMMAND with the variables below set, stops every client and
#       exits with COMMAND's status. CI runs:
#       ./scripts/ethereumjs.sh cargo test -p cohort-engine --test remote_ethereumjs -- --nocapture
#       ./scripts/ethereumjs.sh cargo test -p cohort-evm --test ethereumjs -- --nocapture
#       COHORT_ETHEREUMJS_INSTANCES=2 ./scripts/ethereumjs.sh \
#           cargo test -p cohort-tests --test devnet a_mixed_cluster -- --nocapture
#       The chain's genesis is evm/genesis/devnet.json (override: COHORT_ETHEREUMJS_GENESIS).
#   ./scripts/ethereumjs.sh
#       starts the client(s), prints the URLs and jwt.hex paths (also written to
#       $WORK/engine.env), and keeps them running until Ctrl-C.
#
# COHORT_ETHEREUMJS_INSTANCES=N (default 1) starts N independent clients, each with its own work
# directory, Engine API port, p2p port, JWT secret and user JSON-RPC port (eth_*, for a test to
# send transactions to and read from that client). Exported for COMMAND:
#   COHORT_ENGINE_URL, COHORT_ENGINE_JWT      the first client's Engine API and jwt.hex path
#   COHORT_ENGINE_URLS, COHORT_ENGINE_JWTS    every client's, comma-separated, in order
#   COHORT_ETHEREUMJS_RPC_URLS                every client's user JSON-RPC, comma-separated
# COHORT_ENGINE_PORT fixes the first client's Engine API port; every other port is free one the
# kernel picks.
#
# The client is installed once with npm into ${COHORT_CACHE:-$HOME/.cache}/cohort-ethereumjs.
# Every failure (npm, start-up of any client, a port never answering) exits non-zero: CI must
# never skip a test silently because a client did not come up. Every client is stopped on exit.
set -euo pipefail

VERSION="0.10.5"
CACHE="${COHORT_CACHE:-$HOME/.cache}/cohort-ethereumjs"
BIN="$CACHE/node_modules/.bin/ethereumjs"
STARTUP_SECS="${COHORT_ETHEREUMJS_STARTUP_SECS:-120}"

die() {
  echo "ethereumjs.sh: $*" >&2
  exit 1
}

command -v node >/dev/null 2>&1 || die "node is required (Node.js 20 or newer)"
command -v npm >/dev/null 2>&1 || die "npm is required"

# Install once; a version mismatch (an older cache) reinstalls.
installed=""
if [ -f "$CACHE/node_modules/@ethereumjs/client/package.json" ]; then
  installed="$(node -p "require('$CACHE/node_modules/@ethereumjs/client/package.json').version" 2>/dev/null || true)"
fi
if [ "$installed" != "$VERSION" ] || [ ! -x "$BIN" ]; then
  echo "ethereumjs.sh: installing @ethereumjs/client@$VERSION into $CACHE" >&2
  mkdir -p "$CACHE"
  [ -f "$CACHE/package.json" ] || echo '{"name":"cohort-ethereumjs","private":true}' >"$CACHE/package.json"
  start=$(date +%s)
  (cd "$CACHE" && npm install --no-audit --no-fund --loglevel=error "@ethereumjs/client@$VERSION") >&2 \
    || die "npm install @ethereumjs/client@$VERSION failed"
  [ -x "$BIN" ] || die "npm install finished but $BIN is missing"
  echo "ethereumjs.sh: installed in $(($(date +%s) - start)) s" >&2
fi

INSTANCES="${COHORT_ETHEREUMJS_INSTANCES:-1}"
case "$INSTANCES" in
  [1-9]) ;;
  *) die "COHORT_ETHEREUMJS_INSTANCES must be a number from 1 to 9, got '$INSTANCES'" ;;
esac

# Free loopback ports, chosen by the kernel (two concurrent runs must not collide), all distinct
# within this run: one node process asks for them all at once, holding each until it has all.
free_ports() {
  node -e "
    const net=require('net'); const want=$1; const servers=[]; const ports=[];
    const next=()=>{ if(ports.length===want){ console.log(ports.join(' ')); servers.forEach(s=>s.close()); return; }
      const s=net.createServer(); servers.push(s);
      s.listen(0,'127.0.0.1',()=>{ ports.push(s.address().port); next(); }); };
    next();"
}
# Per client: Engine API, p2p and user JSON-RPC ports.
read -r -a PORTS <<<"$(free_ports $((3 * INSTANCES)))"
[ "${#PORTS[@]}" -eq $((3 * INSTANCES)) ] || die "could not find $((3 * INSTANCES)) free ports"
if [ -n "${COHORT_ENGINE_PORT:-}" ]; then
  PORTS[0]="$COHORT_ENGINE_PORT"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cohort-ethereumjs.XXXXXX")"
# Index i (0-based) is client i+1: its directory, its process, its ports.
DIRS=()
PIDS=()
ENGINE_URLS=()
RPC_URLS=()
JWTS=()
cleanup() {
  # A clean shutdown can hang (it waits for a peer that never comes), and the chains are
  # thrown away anyway: give every client 2 s together, then kill the rest.
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 20); do
    local alive=0
    for pid in "${PIDS[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    [ "$alive" -eq 1 ] || break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${COHORT_KEEP_ETHEREUMJS:-}" = "1" ]; then
    echo "ethereumjs.sh: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Post-merge from block 0: every fork up to Cancun active at genesis, terminal total
# difficulty 0, so the client is driven by the Engine API alone. The file is the one the
# embedded executor (cohort-evm) starts from, so both compute the same genesis block.
GENESIS="${COHORT_ETHEREUMJS_GENESIS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/evm/genesis/devnet.json}"
[ -f "$GENESIS" ] || die "genesis file $GENESIS is missing"

# The last lines of client i's logs, on stderr.
log_tail() {
  tail -n "$2" "${DIRS[$1]}/client.log" "${DIRS[$1]}/ethereumjs.log" >&2 2>/dev/null || true
}

for ((i = 0; i < INSTANCES; i++)); do
  if [ "$INSTANCES" -eq 1 ]; then
    dir="$WORK"
  else
    dir="$WORK/client-$((i + 1))"
    mkdir -p "$dir"
  fi
  engine_port="${PORTS[$((3 * i))]}"
  p2p_port="${PORTS[$((3 * i + 1))]}"
  rpc_port="${PORTS[$((3 * i + 2))]}"
  # A fresh random JWT secret per client and run, in the standard jwt.hex form (64 hex
  # characters). Mode 0600: the node refuses a secret other users can read.
  (umask 077 && node -e "console.log(require('crypto').randomBytes(32).toString('hex'))" >"$dir/jwt.hex")
  cp "$GENESIS" "$dir/genesis.json"
  # Started from inside its directory: the client writes log-rotation files (and, given
  # `--logFile false`, a file literally named after "false") into its working directory, never
  # into the checkout. No peers: each client's chain comes from its Engine API alone.
  (cd "$dir" && exec "$BIN" \
    --gethGenesis "$dir/genesis.json" \
    --dataDir "$dir/data" \
    --rpcEngine \
    --rpcEngineAddr 127.0.0.1 \
    --rpcEnginePort "$engine_port" \
    --jwtSecret "$dir/jwt.hex" \
    --rpc \
    --rpcAddr 127.0.0.1 \
    --rpcPort "$rpc_port" \
    --port "$p2p_port" \
    --discDns false \
    --discV4 false \
    --maxPeers 0 \
    --isSingleNode \
    --logLevel warn \
    --logFile "$dir/ethereumjs.log" \
    --logRotate false \
    >"$dir/client.log" 2>&1) &
  PIDS+=("$!")
  DIRS+=("$dir")
  ENGINE_URLS+=("http://127.0.0.1:$engine_port")
  RPC_URLS+=("http://127.0.0.1:$rpc_port")
  JWTS+=("$dir/jwt.hex")
done

# One JSON-RPC POST without credentials: prints the HTTP status and body, or "down".
probe() {
  node -e "
    const r=require('http').request('$1',{method:'POST',headers:{'content-type':'application/json'}},res=>{
      let body='';res.on('data',d=>body+=d);res.on('end',()=>{console.log(res.statusCode+' '+body);process.exit(0)});});
    r.on('error',()=>{console.log('down');process.exit(0)});
    r.setTimeout(5000,()=>{console.log('down');process.exit(0)});
    r.end(JSON.stringify({jsonrpc:'2.0',id:1,method:'eth_chainId',params:[]}));
  "
}

# Waits until client i's URL answers, printing the answer ("STATUS BODY").
wait_up() {
  local i="$1" url="$2" what="$3" deadline answer
  deadline=$(($(date +%s) + STARTUP_SECS))
  until answer="$(probe "$url")" && [ "$answer" != "down" ]; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      cat "${DIRS[$i]}/client.log" >&2
      die "EthereumJS client $((i + 1)) exited during start-up (log above; if the install in $CACHE is broken, delete that folder)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log_tail "$i" 50
      die "client $((i + 1))'s $what $url did not answer within ${STARTUP_SECS}s (log tail above)"
    fi
    sleep 0.5
  done
  echo "$answer"
}

for ((i = 0; i < INSTANCES; i++)); do
  # Up means the engine port answers HTTP at all: without a JWT it must say 401. Anything
  # else means another server holds the port, or the client runs without JWT auth.
  answer="$(wait_up "$i" "${ENGINE_URLS[$i]}" "engine port")"
  [ "${answer%% *}" = "401" ] \
    || die "unauthenticated probe of client $((i + 1))'s engine port ${ENGINE_URLS[$i]} got '$answer', expected HTTP 401 (another server on the port?)"
  # The user JSON-RPC answers without credentials, with the devnet's chain id (1337).
  answer="$(wait_up "$i" "${RPC_URLS[$i]}" "JSON-RPC port")"
  case "$answer" in
    200*'"result":"0x539"'*) ;;
    *) die "eth_chainId on client $((i + 1))'s JSON-RPC ${RPC_URLS[$i]} answered '$answer', expected chain 0x539 (another server on the port?)" ;;
  esac
done

join() {
  local IFS=,
  echo "$*"
}
export COHORT_ENGINE_URL="${ENGINE_URLS[0]}"
export COHORT_ENGINE_JWT="${JWTS[0]}"
COHORT_ENGINE_URLS="$(join "${ENGINE_URLS[@]}")"
COHORT_ENGINE_JWTS="$(join "${JWTS[@]}")"
COHORT_ETHEREUMJS_RPC_URLS="$(join "${RPC_URLS[@]}")"
export COHORT_ENGINE_URLS COHORT_ENGINE_JWTS COHORT_ETHEREUMJS_RPC_URLS
printf 'COHORT_ENGINE_URL=%s\nCOHORT_ENGINE_JWT=%s\nCOHORT_ENGINE_URLS=%s\nCOHORT_ENGINE_JWTS=%s\nCOHORT_ETHEREUMJS_RPC_URLS=%s\n' \
  "$COHORT_ENGINE_URL" "$COHORT_ENGINE_JWT" "$COHORT_ENGINE_URLS" "$COHORT_ENGINE_JWTS" \
  "$COHORT_ETHEREUMJS_RPC_URLS" >"$WORK/engine.env"
for ((i = 0; i < INSTANCES; i++)); do
  echo "ethereumjs.sh: EthereumJS $VERSION client $((i + 1)): engine API at ${ENGINE_URLS[$i]}, jwt ${JWTS[$i]}, JSON-RPC at ${RPC_URLS[$i]}" >&2
done

if [ "$#" -eq 0 ]; then
  echo "ethereumjs.sh: environment in $WORK/engine.env; Ctrl-C stops the client(s)" >&2
  # The first client to exit ends the wait: every client is needed.
  wait -n "${PIDS[@]}" || true
  die "an EthereumJS client exited (logs under $WORK)"
fi

status=0
"$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "ethereumjs.sh: '$*' failed ($status)" >&2
  for ((i = 0; i < INSTANCES; i++)); do
    echo "ethereumjs.sh: client $((i + 1))'s log tail:" >&2
    log_tail "$i" 30
  done
fi
exit "$status"
