#!/usr/bin/env bash
# Runs a real execution client (EthereumJS 0.10.5) on a fresh post-merge single-node chain, for
# the Engine API tests of the remote engine.
#
#   ./scripts/ethereumjs.sh COMMAND [ARGS...]
#       starts the client, runs COMMAND with COHORT_ENGINE_URL and COHORT_ENGINE_JWT set, stops
#       the client and exits with COMMAND's status. CI runs:
#       ./scripts/ethereumjs.sh cargo test -p cohort-engine --test remote_ethereumjs -- --nocapture
#       ./scripts/ethereumjs.sh cargo test -p cohort-evm --test ethereumjs -- --nocapture
#       The chain's genesis is evm/genesis/devnet.json (override: COHORT_ETHEREUMJS_GENESIS).
#   ./scripts/ethereumjs.sh
#       starts the client, prints the URL and the jwt.hex path (also written to
#       $WORK/engine.env), and keeps it running until Ctrl-C.
#
# The client is installed once with npm into ${COHORT_CACHE:-$HOME/.cache}/cohort-ethereumjs.
# Every failure (npm, start-up, the port never answering) exits non-zero: CI must never skip the
# test silently because the client did not come up.
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

# A free loopback port, chosen by the kernel (two concurrent runs must not collide).
free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
ENGINE_PORT="${COHORT_ENGINE_PORT:-$(free_port)}"
P2P_PORT="$(free_port)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cohort-ethereumjs.XXXXXX")"
CLIENT_PID=""
cleanup() {
  if [ -n "$CLIENT_PID" ] && kill -0 "$CLIENT_PID" 2>/dev/null; then
    # A clean shutdown can hang (it waits for a peer that never comes), and the chain is
    # thrown away anyway: give it 2 s, then kill it.
    kill "$CLIENT_PID" 2>/dev/null || true
    for _ in $(seq 1 20); do
      kill -0 "$CLIENT_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$CLIENT_PID" 2>/dev/null || true
    wait "$CLIENT_PID" 2>/dev/null || true
  fi
  if [ "${COHORT_KEEP_ETHEREUMJS:-}" = "1" ]; then
    echo "ethereumjs.sh: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A fresh random JWT secret per run, in the standard jwt.hex form (64 hex characters).
# Mode 0600: the node refuses a secret other users can read.
(umask 077 && node -e "console.log(require('crypto').randomBytes(32).toString('hex'))" >"$WORK/jwt.hex")

# Post-merge from block 0: every fork up to Cancun active at genesis, terminal total
# difficulty 0, so the client is driven by the Engine API alone. The file is the one the
# embedded executor (cohort-evm) starts from, so both compute the same genesis block.
GENESIS="${COHORT_ETHEREUMJS_GENESIS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/evm/genesis/devnet.json}"
[ -f "$GENESIS" ] || die "genesis file $GENESIS is missing"
cp "$GENESIS" "$WORK/genesis.json"

# Started from inside $WORK: the client writes log-rotation files (and, given `--logFile false`,
# a file literally named after "false") into its working directory, never into the checkout.
(cd "$WORK" && exec "$BIN" \
  --gethGenesis "$WORK/genesis.json" \
  --dataDir "$WORK/data" \
  --rpcEngine \
  --rpcEngineAddr 127.0.0.1 \
  --rpcEnginePort "$ENGINE_PORT" \
  --jwtSecret "$WORK/jwt.hex" \
  --port "$P2P_PORT" \
  --discDns false \
  --discV4 false \
  --maxPeers 0 \
  --isSingleNode \
  --logLevel warn \
  --logFile "$WORK/ethereumjs.log" \
  --logRotate false \
  >"$WORK/client.log" 2>&1) &
CLIENT_PID=$!

URL="http://127.0.0.1:$ENGINE_PORT"
# Up means the engine port answers HTTP at all: without a JWT it must say 401.
deadline=$(($(date +%s) + STARTUP_SECS))
until code="$(node -e "
  const r=require('http').request('$URL',{method:'POST',headers:{'content-type':'application/json'}},res=>{console.log(res.statusCode);process.exit(0)});
  r.on('error',()=>{console.log('down');process.exit(0)});
  r.end(JSON.stringify({jsonrpc:'2.0',id:1,method:'eth_chainId',params:[]}));
")" && [ "$code" != "down" ]; do
  if ! kill -0 "$CLIENT_PID" 2>/dev/null; then
    cat "$WORK/client.log" >&2
    die "the EthereumJS client exited during start-up (log above; if the install in $CACHE is broken, delete that folder)"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 50 "$WORK/client.log" "$WORK/ethereumjs.log" >&2 2>/dev/null || true
    die "the engine port $URL did not answer within ${STARTUP_SECS}s (log tail above)"
  fi
  sleep 0.5
done
# Anything but 401 means another server holds the port, or the client runs without JWT auth.
[ "$code" = "401" ] || die "unauthenticated probe of $URL got HTTP $code, expected 401 (another server on the port?)"

export COHORT_ENGINE_URL="$URL"
export COHORT_ENGINE_JWT="$WORK/jwt.hex"
printf 'COHORT_ENGINE_URL=%s\nCOHORT_ENGINE_JWT=%s\n' "$COHORT_ENGINE_URL" "$COHORT_ENGINE_JWT" >"$WORK/engine.env"
echo "ethereumjs.sh: EthereumJS $VERSION engine API at $COHORT_ENGINE_URL, jwt $COHORT_ENGINE_JWT" >&2

if [ "$#" -eq 0 ]; then
  echo "ethereumjs.sh: environment in $WORK/engine.env; Ctrl-C stops the client" >&2
  wait "$CLIENT_PID" || die "the EthereumJS client exited (log: $WORK/client.log)"
  exit 0
fi

status=0
"$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "ethereumjs.sh: '$*' failed ($status); client log tail:" >&2
  tail -n 30 "$WORK/client.log" "$WORK/ethereumjs.log" >&2 2>/dev/null || true
fi
exit "$status"
