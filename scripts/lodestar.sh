#!/usr/bin/env bash
# Runs a real beacon node (Lodestar 1.5.1) on a fresh single-node dev chain, for the Beacon API
# end-to-end test (issue 14): minimal preset, capella from genesis, 16 interop validators of which
# Lodestar's own validator client runs only 0..5 (6 of 16: it cannot finalize alone; Cohort runs
# 6..15).
#
#   ./scripts/lodestar.sh COMMAND [ARGS...]
#       starts Lodestar, waits until its REST API answers, runs COMMAND with
#         COHORT_BEACON_URL    the REST API, e.g. http://127.0.0.1:41234
#         COHORT_LODESTAR_LOG  path of Lodestar's log (the test greps it for rejected submissions)
#         COHORT_LODESTAR_PID  Lodestar's process id
#         COHORT_SLOT_SECONDS  the slot length the chain runs with
#       set, stops Lodestar and exits with COMMAND's status. CI runs:
#       ./scripts/lodestar.sh cargo test -p cohort-tests --test lodestar -- --nocapture
#   ./scripts/lodestar.sh
#       starts Lodestar, prints the URL (also written to $WORK/beacon.env) and keeps it running
#       until Ctrl-C.
#   ./scripts/lodestar.sh --install
#       only installs (or checks the install), then exits.
#
# Environment:
#   COHORT_CACHE=DIR              install into DIR/cohort-lodestar (default ~/.cache)
#   COHORT_SLOT_SECONDS=S         seconds per slot (default 4)
#   COHORT_LODESTAR_REST_PORT=P   REST port (default: a free port chosen by the kernel)
#   COHORT_LODESTAR_STARTUP_SECS  how long to wait for the REST API (default 120)
#   COHORT_KEEP_LODESTAR=1        keep the run directory (data, genesis.ssz, log) afterwards
#
# Lodestar is installed once with npm into ${COHORT_CACHE:-$HOME/.cache}/cohort-lodestar (1.5
# to 3.5 minutes on 2 cores, ~300 MB). Every failure (npm, the patch, start-up, the REST API never
# answering) exits non-zero: CI must never skip the test silently because the node did not come
# up.
set -euo pipefail

VERSION="1.5.1"
CACHE="${COHORT_CACHE:-$HOME/.cache}/cohort-lodestar"
BIN="$CACHE/node_modules/.bin/lodestar"
SLOT_SECONDS="${COHORT_SLOT_SECONDS:-4}"
STARTUP_SECS="${COHORT_LODESTAR_STARTUP_SECS:-120}"
# The markers our two one-line patches leave in the patched files (see install() below).
PATCH_MARK="cohort dev-chain patch"
PATCHED_FILE="node_modules/@chainsafe/lodestar/lib/options/beaconNodeOptions/execution.js"
SYNC_PATCH_MARK="cohort single-node sync patch"
SYNC_PATCHED_FILE="node_modules/@lodestar/beacon-node/lib/sync/sync.js"

die() {
  echo "lodestar.sh: $*" >&2
  exit 1
}

command -v node >/dev/null 2>&1 || die "node is required (Node.js 20)"
command -v npm >/dev/null 2>&1 || die "npm is required"
[[ "$SLOT_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "COHORT_SLOT_SECONDS must be a positive integer, not '$SLOT_SECONDS'"

installed_version() {
  node -p "require('$CACHE/node_modules/@chainsafe/lodestar/package.json').version" 2>/dev/null || true
}

install() {
  echo "lodestar.sh: installing @chainsafe/lodestar@$VERSION into $CACHE (1.5 to 3.5 min)" >&2
  local start
  start=$(date +%s)
  # From scratch only: npm does not replace nested copies already installed when an override is
  # added, so a half-installed tree would keep the wrong versions.
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  # The overrides make 1.5.1 install and start on Node 20 from the registry reachable here:
  # - every @lodestar/* pinned to exactly 1.5.1: the caret ranges of @chainsafe/lodestar@1.5.1
  #   (^1.5.1) would resolve some of them to 1.4x/1.5x and mix incompatible versions;
  # - mortice 3.0.1: newer releases use Promise.withResolvers (Node 22) and crash at start;
  # - @multiformats/multiaddr 11.6.1 and @multiformats/mafmt 11.1.2: libp2p 0.42 needs the 11.x
  #   line, or start fails with "no valid addresses were provided for transports".
  cat >"$CACHE/package.json" <<JSON
{
  "name": "cohort-lodestar",
  "version": "1.0.0",
  "private": true,
  "dependencies": { "@chainsafe/lodestar": "$VERSION" },
  "overrides": {
    "@lodestar/api": "$VERSION", "@lodestar/beacon-node": "$VERSION", "@lodestar/config": "$VERSION",
    "@lodestar/db": "$VERSION", "@lodestar/fork-choice": "$VERSION", "@lodestar/light-client": "$VERSION",
    "@lodestar/params": "$VERSION", "@lodestar/reqresp": "$VERSION", "@lodestar/state-transition": "$VERSION",
    "@lodestar/types": "$VERSION", "@lodestar/utils": "$VERSION", "@lodestar/validator": "$VERSION",
    "mortice": "3.0.1",
    "@multiformats/multiaddr": "11.6.1",
    "@multiformats/mafmt": "11.1.2"
  }
}
JSON
  # Native modules (leveldb, bls bindings, ...) compile with node-gyp against the system Node
  # headers. npm 11 can exit 1 without a message when a package is missing from the registry:
  # keep the full log and show its tail.
  if ! (cd "$CACHE" && npm install --no-audit --no-fund --foreground-scripts >"$CACHE/install.log" 2>&1); then
    tail -n 40 "$CACHE/install.log" >&2
    die "npm install @chainsafe/lodestar@$VERSION failed (full log: $CACHE/install.log)"
  fi
  # The one-line patch: the hidden --execution.engineMock is built with an empty genesis block
  # hash, so the mock answers SYNCING to every forkchoiceUpdated and every post-merge proposal
  # fails. Give it the dev chain's genesis EL block hash (0x0b..0b, what `lodestar dev` puts in
  # the genesis state's latest execution payload header) and, when MOCK_CAPELLA_TS is set, the
  # capella fork timestamp so that it builds capella payloads (with withdrawals).
  local f="$CACHE/$PATCHED_FILE"
  [ -f "$f" ] || die "the file to patch is missing: $f"
  grep -q 'genesisBlockHash: "",' "$f" || die "the line to patch (genesisBlockHash: \"\",) is not in $f"
  sed -i 's|genesisBlockHash: "",|genesisBlockHash: "0x" + "0b".repeat(32), capellaForkTimestamp: process.env.MOCK_CAPELLA_TS !== undefined ? Number(process.env.MOCK_CAPELLA_TS) : undefined, // '"$PATCH_MARK"'|' "$f"
  # The second one-line patch (ours, not in the shared notes): a node with no peers counts itself
  # synced only while its head is at most SLOTS_PER_EPOCH (8) slots behind the clock; past that
  # it is "Stalled", answers 503 "Node is syncing - waiting for peers" to every duty request, and
  # with no peer to sync from it never recovers. With 10 of the 16 proposers absent until Cohort
  # runs (and in the Lodestar-alone control) a run of 8 empty slots is likely within minutes
  # ((10/16)^8 = 2.3% per slot), which killed the dev chain. When sync.isSingleNode is set (the
  # `dev` command's default) the tolerance becomes unbounded; nothing else changes.
  local g="$CACHE/$SYNC_PATCHED_FILE"
  [ -f "$g" ] || die "the file to patch is missing: $g"
  grep -q 'this.slotImportTolerance = SLOTS_PER_EPOCH;' "$g" || die "the line to patch (slotImportTolerance) is not in $g"
  sed -i 's|this.slotImportTolerance = SLOTS_PER_EPOCH;|this.slotImportTolerance = opts.isSingleNode ? Number.MAX_SAFE_INTEGER : SLOTS_PER_EPOCH; // '"$SYNC_PATCH_MARK"'|' "$g"
  echo "lodestar.sh: installed in $(($(date +%s) - start)) s" >&2
}

# Install once; a wrong version or a missing patch (an older or broken cache) reinstalls.
if [ "$(installed_version)" != "$VERSION" ] || [ ! -x "$BIN" ] ||
  ! grep -q "$PATCH_MARK" "$CACHE/$PATCHED_FILE" 2>/dev/null ||
  ! grep -q "$SYNC_PATCH_MARK" "$CACHE/$SYNC_PATCHED_FILE" 2>/dev/null; then
  install
fi
# Verify what is installed: the package version, the patch, and that the CLI itself runs and
# says the version (a broken native module or a wrong multiaddr shows up here, not at start).
[ "$(installed_version)" = "$VERSION" ] || die "installed @chainsafe/lodestar is '$(installed_version)', expected $VERSION (delete $CACHE)"
grep -q "$PATCH_MARK" "$CACHE/$PATCHED_FILE" || die "the engine-mock patch is missing from $CACHE/$PATCHED_FILE (delete $CACHE)"
grep -q "$SYNC_PATCH_MARK" "$CACHE/$SYNC_PATCHED_FILE" || die "the single-node sync patch is missing from $CACHE/$SYNC_PATCHED_FILE (delete $CACHE)"
cli_version="$("$BIN" --version 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -n 1 || true)"
[ "$cli_version" = "v$VERSION" ] || die "'$BIN --version' says '${cli_version:-nothing}', expected v$VERSION (delete $CACHE)"

if [ "${1:-}" = "--install" ]; then
  echo "lodestar.sh: Lodestar $VERSION installed in $CACHE" >&2
  exit 0
fi

# A free loopback port, chosen by the kernel (two concurrent runs must not collide).
free_port() {
  node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
REST_PORT="${COHORT_LODESTAR_REST_PORT:-$(free_port)}"
P2P_PORT="$(free_port)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cohort-lodestar.XXXXXX")"
LOG="$WORK/lodestar.log"
NODE_PID=""
stop_node() {
  [ -n "$NODE_PID" ] || return 0
  if kill -0 "$NODE_PID" 2>/dev/null; then
    # The first SIGTERM logs "Stopping gracefully" and can hang for 40 s or more; a second
    # SIGTERM forces the exit. The chain is thrown away anyway: 5 s, then the second one, then
    # SIGKILL if even that did not work.
    kill -TERM "$NODE_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$NODE_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -TERM "$NODE_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$NODE_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$NODE_PID" 2>/dev/null || true
  fi
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=""
}
cleanup() {
  stop_node
  if [ "${COHORT_KEEP_LODESTAR:-}" = "1" ]; then
    echo "lodestar.sh: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Started from inside $WORK: `lodestar dev` writes genesis.ssz into its working directory.
# - --preset minimal: 8 slots an epoch, a sync committee of 32 (filled from the 16 validators);
# - --params.<KEY> sets chain config keys: capella (and altair, bellatrix) from epoch 0;
# - --genesisValidators 16 --startValidators 0..5: 16 interop validators in the genesis state,
#   only 0..5 run by Lodestar's own validator client (6/16 < 2/3: no finality without Cohort);
#   --beaconNodes points that validator client at this node's REST port (its default is
#   127.0.0.1:9596, which may be another run's node, or nothing);
# - no --genesisTime: genesis is start + ~5 s, and --reset wipes the dev DB;
# - --execution.engineMock (hidden) with MOCK_CAPELLA_TS=0: the patched mock builds capella
#   payloads from timestamp 0;
# - REST on loopback with every namespace; p2p on loopback, no discovery: nothing else listens.
(cd "$WORK" && MOCK_CAPELLA_TS=0 exec "$BIN" dev --preset minimal \
  --genesisValidators 16 --startValidators 0..5 --reset --dataDir "$WORK/data" \
  --beaconNodes "http://127.0.0.1:$REST_PORT" \
  --params.SECONDS_PER_SLOT "$SLOT_SECONDS" \
  --params.ALTAIR_FORK_EPOCH 0 --params.BELLATRIX_FORK_EPOCH 0 --params.CAPELLA_FORK_EPOCH 0 \
  --execution.engineMock \
  --rest.address 127.0.0.1 --rest.port "$REST_PORT" --rest.namespace '*' \
  --listenAddress 127.0.0.1 --port "$P2P_PORT" --discv5=false \
  >"$LOG" 2>&1) &
NODE_PID=$!
launched=$(date +%s)

URL="http://127.0.0.1:$REST_PORT"
# Up means the REST API answers /eth/v1/node/version with HTTP 200 and a Lodestar version.
deadline=$((launched + STARTUP_SECS))
until version="$(node -e "
  require('http').get('$URL/eth/v1/node/version',res=>{let b='';res.on('data',d=>b+=d);res.on('end',()=>{
    try{console.log(res.statusCode===200?JSON.parse(b).data.version:'down')}catch(e){console.log('down')}})})
  .on('error',()=>console.log('down'));
")" && [ "$version" != "down" ]; do
  if ! kill -0 "$NODE_PID" 2>/dev/null; then
    tail -n 60 "$LOG" >&2
    die "Lodestar exited during start-up (log tail above; if the install in $CACHE is broken, delete that folder)"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 60 "$LOG" >&2
    die "the REST API $URL did not answer within ${STARTUP_SECS}s (log tail above)"
  fi
  sleep 0.5
done
case "$version" in
  Lodestar/v$VERSION*) ;;
  *) die "$URL answers as '$version', expected Lodestar/v$VERSION (another server on the port?)" ;;
esac

export COHORT_BEACON_URL="$URL"
export COHORT_LODESTAR_LOG="$LOG"
export COHORT_LODESTAR_PID="$NODE_PID"
export COHORT_SLOT_SECONDS="$SLOT_SECONDS"
printf 'COHORT_BEACON_URL=%s\nCOHORT_LODESTAR_LOG=%s\nCOHORT_LODESTAR_PID=%s\nCOHORT_SLOT_SECONDS=%s\n' \
  "$URL" "$LOG" "$NODE_PID" "$SLOT_SECONDS" >"$WORK/beacon.env"
echo "lodestar.sh: $version REST API at $URL after $(($(date +%s) - launched)) s (slots of ${SLOT_SECONDS} s, log $LOG)" >&2

if [ "$#" -eq 0 ]; then
  echo "lodestar.sh: environment in $WORK/beacon.env; Ctrl-C stops the node" >&2
  wait "$NODE_PID" || die "Lodestar exited (log: $LOG)"
  exit 0
fi

status=0
"$@" || status=$?
if [ "$status" -ne 0 ]; then
  echo "lodestar.sh: '$*' failed ($status); Lodestar log tail:" >&2
  tail -n 30 "$LOG" >&2 || true
fi
exit "$status"
