#!/usr/bin/env bash
# Records the real answers of Lodestar 1.5.1 to the Beacon API calls Cohort's client makes, as
# fixtures for the client's unit tests (beacon/tests/fixtures/lodestar-1.5.1/).
#
#   ./scripts/lodestar.sh ./scripts/capture-lodestar-fixtures.sh [OUT_DIR]
#
# It needs the chain ./scripts/lodestar.sh starts (COHORT_BEACON_URL set; 16 interop validators,
# Lodestar's validator client running 0..5). It waits until the chain is a few epochs old, then
# saves every response body byte for byte as NAME.json (NAME.ssz / NAME.sse for the other
# encodings) and one line per request in MANIFEST.tsv: name, method, path (with the query),
# request body, HTTP status, content type. The RANDAO reveal for block production is signed with
# the proposer's interop key by Lodestar's own BLS and SSZ libraries (installed next to it), and
# the aggregate_attestation root is the SSZ root of the data of an attestation the head block
# includes (Lodestar's own validators made it; the pool keeps it a few slots).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/beacon/tests/fixtures/lodestar-1.5.1}"
URL="${COHORT_BEACON_URL:?run under ./scripts/lodestar.sh (COHORT_BEACON_URL is not set)}"
CACHE="${COHORT_CACHE:-$HOME/.cache}/cohort-lodestar"
# Cohort's validators in the issue's chain, as decimal strings.
COHORT_INDICES='["6","7","8","9","10","11","12","13","14","15"]'

die() {
  echo "capture-lodestar-fixtures.sh: $*" >&2
  exit 1
}
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v jq >/dev/null 2>&1 || die "jq is required"
[ -d "$CACHE/node_modules/@lodestar/state-transition" ] || die "Lodestar is not installed in $CACHE (run ./scripts/lodestar.sh --install)"

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.ssz "$OUT"/*.sse "$OUT"/*.txt "$OUT"/MANIFEST.tsv
printf 'name\tmethod\tpath\trequest_body\tstatus\tcontent_type\n' >"$OUT/MANIFEST.tsv"

# capture NAME EXT METHOD PATH [BODY] [ACCEPT]: saves the body to NAME.EXT, logs the request,
# prints the status.
capture() {
  local name="$1" ext="$2" method="$3" path="$4" body="${5:-}" accept="${6:-application/json}"
  local meta
  local args=(-sS --max-time 30 -X "$method" -H "Accept: $accept" -o "$OUT/$name.$ext" -w '%{http_code}\t%{content_type}')
  if [ -n "$body" ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$body")
  fi
  meta="$(curl "${args[@]}" "$URL$path")" || die "$method $path: curl failed"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$method" "$path" "${body:--}" "$meta" >>"$OUT/MANIFEST.tsv"
  echo "${meta%%$'\t'*}"
}

# capture_ok: the same, and the status must be 200.
capture_ok() {
  local status
  status="$(capture "$@")"
  [ "$status" = "200" ] || die "$3 $4 answered $status: $(head -c 400 "$OUT/$1.$2")"
}

get() { curl -sSf "$URL$1"; }
get_post() { curl -sSf -H 'Content-Type: application/json' --data-binary "$2" "$URL$1"; }

# Lodestar's own libraries, from its install (ESM: imported from a module in the install dir).
lodestar_js() {
  local code="$1"
  shift
  # The SSZ types follow the preset chosen at import: the dev chain runs minimal.
  (cd "$CACHE" && LODESTAR_PRESET=minimal node --input-type=module -e "$code" "$@")
}

spec="$(get /eth/v1/config/spec)"
SLOTS_PER_EPOCH="$(jq -r .data.SLOTS_PER_EPOCH <<<"$spec")"
SECONDS_PER_SLOT="$(jq -r .data.SECONDS_PER_SLOT <<<"$spec")"
GENESIS_TIME="$(get /eth/v1/beacon/genesis | jq -r .data.genesis_time)"
current_slot() { echo $((($(date +%s) - GENESIS_TIME) / SECONDS_PER_SLOT)); }
head_slot() { get /eth/v1/beacon/headers/head | jq -r .data.header.message.slot; }
# Sleeps until FRACTION (in 1/100) of slot S has passed.
sleep_until_in_slot() {
  local slot="$1" percent="$2"
  local target_ms=$(((GENESIS_TIME + slot * SECONDS_PER_SLOT) * 1000 + SECONDS_PER_SLOT * percent * 10))
  local now_ms
  now_ms="$(date +%s%3N)"
  if [ "$target_ms" -gt "$now_ms" ]; then
    sleep "$(awk "BEGIN{print ($target_ms - $now_ms) / 1000}")"
  fi
}

# A chain a few epochs old: attestations and sync aggregates in blocks, duties for epoch >= 2.
want=$((2 * SLOTS_PER_EPOCH + 2))
echo "capture-lodestar-fixtures.sh: waiting for head slot $want (slots of ${SECONDS_PER_SLOT} s)" >&2
deadline=$(($(date +%s) + (want + 10) * SECONDS_PER_SLOT + 60))
until [ "$(head_slot 2>/dev/null || echo 0)" -ge "$want" ]; do
  [ "$(date +%s)" -lt "$deadline" ] || die "the head never reached slot $want"
  sleep 1
done

# ---- node, config, chain ----
capture_ok node_version json GET /eth/v1/node/version
capture_ok node_syncing json GET /eth/v1/node/syncing
capture_ok beacon_genesis json GET /eth/v1/beacon/genesis
capture_ok config_spec json GET /eth/v1/config/spec
capture_ok config_fork_schedule json GET /eth/v1/config/fork_schedule
capture_ok config_deposit_contract json GET /eth/v1/config/deposit_contract
capture_ok state_fork json GET /eth/v1/beacon/states/head/fork
capture_ok state_finality_checkpoints json GET /eth/v1/beacon/states/head/finality_checkpoints
capture_ok state_validators_6_7 json GET '/eth/v1/beacon/states/head/validators?id=6&id=7'
pubkey6="$(jq -r '.data[0].validator.pubkey' "$OUT/state_validators_6_7.json")"
capture_ok state_validators_by_pubkey json GET "/eth/v1/beacon/states/head/validators?id=$pubkey6&id=15"
capture_ok state_sync_committees json GET /eth/v1/beacon/states/head/sync_committees
# 1.5.1 bug: "index" is the slot's position in the epoch and "slot" the committee index.
capture_ok state_committees json GET /eth/v1/beacon/states/head/committees

# ---- a real block and its header (same root) ----
capture_ok header_head json GET /eth/v1/beacon/headers/head
root="$(jq -r .data.root "$OUT/header_head.json")"
capture_ok block_v2_by_root json GET "/eth/v2/beacon/blocks/$root"
# 1.5.1 answers JSON even to Accept: application/octet-stream, so the SSZ bytes and roots of this
# block come from Lodestar's SSZ library (fork from the response's "version").
lodestar_js "
import {ssz} from '@lodestar/types';
import fs from 'node:fs';
const [file, out] = process.argv.slice(1);
const response = JSON.parse(fs.readFileSync(file, 'utf8'));
const types = ssz[response.version];
const signed = types.SignedBeaconBlock.fromJson(response.data);
fs.writeFileSync(out + '.ssz', types.SignedBeaconBlock.serialize(signed));
const hex = (b) => '0x' + Buffer.from(b).toString('hex');
fs.writeFileSync(out + '_roots.json', JSON.stringify({
  version: response.version,
  block_root: hex(types.BeaconBlock.hashTreeRoot(signed.message)),
  body_root: hex(types.BeaconBlockBody.hashTreeRoot(signed.message.body)),
  execution_payload_root: signed.message.body.executionPayload ? hex(types.ExecutionPayload.hashTreeRoot(signed.message.body.executionPayload)) : null,
  signed_block_ssz_length: types.SignedBeaconBlock.serialize(signed).length,
}, null, 1) + '\\n');
" "$OUT/block_v2_by_root.json" "$OUT/block_v2_by_root"
[ "$(jq -r .body_root "$OUT/block_v2_by_root_roots.json")" = "$(jq -r .data.header.message.body_root "$OUT/header_head.json")" ] \
  || die "Lodestar's SSZ library disagrees with its own header on the body root"
[ "$(jq -r .block_root "$OUT/block_v2_by_root_roots.json")" = "$root" ] || die "the block root of the SSZ bytes is not the header's root"
capture_ok block_v2_head json GET /eth/v2/beacon/blocks/head
capture_ok block_root_head json GET /eth/v1/beacon/blocks/head/root

# ---- duties (current epoch; next epoch too, to show Lodestar's next-epoch proposer quirk) ----
slot="$(current_slot)"
epoch=$((slot / SLOTS_PER_EPOCH))
sleep_until_in_slot "$slot" 10
capture_ok duties_attester_current json POST "/eth/v1/validator/duties/attester/$epoch" "$COHORT_INDICES"
capture_ok duties_attester_next json POST "/eth/v1/validator/duties/attester/$((epoch + 1))" "$COHORT_INDICES"
capture_ok duties_proposer_current json GET "/eth/v1/validator/duties/proposer/$epoch"
capture_ok duties_proposer_next json GET "/eth/v1/validator/duties/proposer/$((epoch + 1))"
capture_ok duties_sync_current json POST "/eth/v1/validator/duties/sync/$epoch" "$COHORT_INDICES"

# ---- attestation data, aggregate ----
# The next slot at which one of Lodestar's validators (0..5) attests: after half of that slot its
# attestation is in the pool, with the data attestation_data returns then (same head), so the
# SSZ root of that data finds the aggregate.
slot="$(current_slot)"
epoch=$((slot / SLOTS_PER_EPOCH))
duty="$( (get_post "/eth/v1/validator/duties/attester/$epoch" '["0","1","2","3","4","5"]'
  get_post "/eth/v1/validator/duties/attester/$((epoch + 1))" '["0","1","2","3","4","5"]') |
  jq -sc --argjson after "$slot" '[.[].data[] | select((.slot | tonumber) > $after)] | sort_by(.slot | tonumber) | first')"
[ "$duty" != "null" ] || die "no attester duty of validators 0..5 after slot $slot"
att_slot="$(jq -r .slot <<<"$duty")"
att_committee="$(jq -r .committee_index <<<"$duty")"
sleep_until_in_slot "$att_slot" 55
capture_ok attestation_data json GET "/eth/v1/validator/attestation_data?slot=$att_slot&committee_index=$att_committee"
att_root="$(lodestar_js "
import {ssz} from '@lodestar/types';
const data = ssz.phase0.AttestationData.fromJson(JSON.parse(process.argv[1]));
console.log('0x' + Buffer.from(ssz.phase0.AttestationData.hashTreeRoot(data)).toString('hex'));
" "$(jq -c .data "$OUT/attestation_data.json")")"
printf '{"attestation_data_root":"%s","attester_duty_of_lodestar_validator":%s}\n' "$att_root" "$duty" >"$OUT/attestation_data_root.json"
capture_ok aggregate_attestation json GET "/eth/v1/validator/aggregate_attestation?attestation_data_root=$att_root&slot=$att_slot"
# That attestation (Lodestar's validator's own, in the pool already), submitted again at once:
# what a second operator of a distributed validator gets when the first already submitted it.
capture error_pool_attestations_duplicate json POST /eth/v1/beacon/pool/attestations "$(jq -c '[.data]' "$OUT/aggregate_attestation.json")" >/dev/null

# ---- sync committee contribution ----
# Validator 0 (Lodestar's) is in the sync committee: its subcommittee has a message for the head
# block root after a third of the slot.
slot="$(current_slot)"
sleep_until_in_slot "$slot" 60
head_root="$(get /eth/v1/beacon/headers/head | jq -r .data.root)"
head_now="$(head_slot)"
position="$(jq -r '.data.validators | index("0")' "$OUT/state_sync_committees.json")"
[ "$position" != "null" ] || die "validator 0 is not in the sync committee"
subnets="$(jq -r .data.SYNC_COMMITTEE_SUBNET_COUNT <<<"$spec")"
size="$(jq -r .data.SYNC_COMMITTEE_SIZE <<<"$spec")"
subcommittee=$((position / (size / subnets)))
capture_ok sync_committee_contribution json GET "/eth/v1/validator/sync_committee_contribution?slot=$head_now&subcommittee_index=$subcommittee&beacon_block_root=$head_root"

# ---- block production (the proposer's real RANDAO reveal) ----
# 1.5.1 refuses a slot in the future, and a slot Lodestar's own validators (0..5) propose at may
# already have its block: the next slot of the current or next epoch (refetched in its own epoch:
# next-epoch proposer duties are wrong in 1.5.1) whose proposer is one of 6..15, requested just
# after it starts.
proposer=""
for _ in 1 2 3; do
  now="$(current_slot)"
  epoch=$((now / SLOTS_PER_EPOCH))
  pick="$(get "/eth/v1/validator/duties/proposer/$epoch" | jq -c --argjson after "$now" \
    '[.data[] | select((.slot | tonumber) > $after and (.validator_index | tonumber) >= 6)] | first')"
  if [ "$pick" != "null" ]; then
    slot="$(jq -r .slot <<<"$pick")"
    proposer="$(jq -r .validator_index <<<"$pick")"
    break
  fi
  sleep_until_in_slot $(((epoch + 1) * SLOTS_PER_EPOCH)) 5
done
[ -n "$proposer" ] || die "no slot with a proposer in 6..15 found in three epochs"
fork_version="$(get /eth/v1/beacon/states/head/fork | jq -r .data.current_version)"
gvr="$(get /eth/v1/beacon/genesis | jq -r .data.genesis_validators_root)"
randao="$(lodestar_js "
import {ssz} from '@lodestar/types';
import {interopSecretKey, computeDomain, computeSigningRoot} from '@lodestar/state-transition';
import {DOMAIN_RANDAO} from '@lodestar/params';
const [index, epoch, fork, gvr] = process.argv.slice(1);
const hex = (h) => Buffer.from(h.slice(2), 'hex');
const domain = computeDomain(DOMAIN_RANDAO, hex(fork), hex(gvr));
const root = computeSigningRoot(ssz.Epoch, Number(epoch), domain);
console.log('0x' + Buffer.from(interopSecretKey(Number(index)).sign(root).toBytes()).toString('hex'));
" "$proposer" "$epoch" "$fork_version" "$gvr")"
printf '{"slot":"%s","epoch":"%s","proposer_index":"%s","fork_version":"%s","genesis_validators_root":"%s","randao_reveal":"%s"}\n' \
  "$slot" "$epoch" "$proposer" "$fork_version" "$gvr" "$randao" >"$OUT/produce_block_v2_request.json"
graffiti="0x$(printf 'cohort fixture' | od -An -tx1 | tr -d ' \n')$(printf '0%.0s' $(seq 1 36))"
sleep_until_in_slot "$slot" 5
capture_ok produce_block_v2 json GET "/eth/v2/validator/blocks/$slot?randao_reveal=$randao&graffiti=$graffiti"

# ---- events (raw SSE: a few head and block events) ----
# Six slots of the stream (only 6 of 16 proposers run before Cohort does: slots are often empty);
# curl's --max-time ends it (exit 28 is the expected timeout).
sse_seconds=$((6 * SECONDS_PER_SLOT + 1))
curl -sSN -H 'Accept: text/event-stream' --max-time "$sse_seconds" \
  "$URL/eth/v1/events?topics=head&topics=block" >"$OUT/events_head_block.sse" || [ $? -eq 28 ] || die "the event stream failed"
grep -q '^event: head' "$OUT/events_head_block.sse" || die "no head event in ${sse_seconds} s"
printf '%s\t%s\t%s\t%s\t%s\t%s\n' events_head_block GET '/eth/v1/events?topics=head&topics=block' - 200 text/event-stream >>"$OUT/MANIFEST.tsv"
# Comma-joined topics: the spec's form in newer releases. Recorded as 1.5.1 answers it (a
# stream that stays silent: 1.5.1 logs an uncaught "Unknown topic head,block"), for two slots.
comma_meta="$(curl -sSN -H 'Accept: text/event-stream' --max-time "$((2 * SECONDS_PER_SLOT))" -o "$OUT/events_comma_topics.sse" \
  -w '%{http_code}\t%{content_type}' "$URL/eth/v1/events?topics=head,block")" || [ $? -eq 28 ] || die "the comma-topics event stream failed"
printf '%s\t%s\t%s\t%s\t%s\n' events_comma_topics GET '/eth/v1/events?topics=head,block' - "$comma_meta" >>"$OUT/MANIFEST.tsv"

# ---- failures: the bodies and statuses Lodestar really sends ----
capture error_unknown_endpoint json GET /eth/v1/no/such/endpoint >/dev/null
capture error_v3_produce_block json GET "/eth/v3/validator/blocks/$slot?randao_reveal=$randao" >/dev/null
capture error_v2_publish_block json POST /eth/v2/beacon/blocks '{}' >/dev/null
capture error_attestation_data_no_params json GET /eth/v1/validator/attestation_data >/dev/null
capture error_validators_bad_id json GET '/eth/v1/beacon/states/head/validators?id=notanid' >/dev/null
capture error_validators_comma_ids json GET '/eth/v1/beacon/states/head/validators?id=6,7' >/dev/null
capture error_unknown_state json GET /eth/v1/beacon/states/0x0000000000000000000000000000000000000000000000000000000000000001/fork >/dev/null
capture error_attester_duties_far_epoch json POST "/eth/v1/validator/duties/attester/$((epoch + 10))" "$COHORT_INDICES" >/dev/null
capture error_aggregate_unknown_root json GET "/eth/v1/validator/aggregate_attestation?attestation_data_root=0x$(printf '11%.0s' $(seq 1 32))&slot=$att_slot" >/dev/null
capture error_pool_attestations_bad_body json POST /eth/v1/beacon/pool/attestations '[{"aggregation_bits":"0x03"}]' >/dev/null
# The block produced above, signed with the point at infinity: BLOCK_ERROR_INVALID_SIGNATURE.
infinity="0xc0$(printf '00%.0s' $(seq 1 95))"
capture error_publish_block_bad_signature json POST /eth/v1/beacon/blocks "$(jq -c --arg sig "$infinity" '{message: .data, signature: $sig}' "$OUT/produce_block_v2.json")" >/dev/null

echo "capture-lodestar-fixtures.sh: $(($(wc -l <"$OUT/MANIFEST.tsv") - 1)) captures in $OUT" >&2
