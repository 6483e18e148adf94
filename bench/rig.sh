#!/usr/bin/env bash
# cloakroom on the shared peer rig (../shared/peer-bench): nginx, HAProxy
# and cloakroom, each pinned to one core, interleaved rounds, CPU per
# request and which core was saturated. This is where docs/performance.md's
# comparison figures come from (bench/instructions.sh counts instructions
# per request for comparing builds of cloakroom alone).
#
#   bench/rig.sh [quick|full] [ROUNDS]
#
# The rig writes beside itself, so it is copied to a scratch directory
# first; its results JSON and the printed table are kept under
# bench/out/rig/. Environment:
#   RIG           the rig to copy [$ROOT/../shared/peer-bench]
#   BENCH_STORE   cloakroom's store: embedded (the default) or memory [embedded]
#   PEERS         peers besides cloakroom [nginx,haproxy]
#   SCENARIOS     h1,h2,conn,session,rate (the rig's ids) [h1,h2,conn,session]
#   CLOAKROOM_BIN [target/release/cloakroom, built if missing]
#   BENCH_ACCESS_LOG  off (the default: the rig runs every other peer
#                 without an access log) or on (cloakroom's own default, one
#                 line per request, SPEC §11)
# The rig installs its peers from Debian on first use (its setup.sh);
# SKIP_OHA=1 is set so it does not compile oha (the `rate` scenario then
# uses h2load --rps).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=${1:-full}
RIG=${RIG:-$ROOT/../shared/peer-bench}
[[ -f $RIG/run.sh ]] || { echo "rig: no peer rig at $RIG (set RIG=…)" >&2; exit 1; }
BIN=${CLOAKROOM_BIN:-$ROOT/target/release/cloakroom}
[[ -n ${CLOAKROOM_BIN:-} ]] || (cd "$ROOT" && cargo build --release --quiet)
SCRATCH=$(mktemp -d)
# The rig stops its peers itself; anything of it still running (a peer it
# lost track of) would hold the rig's ports for the next run.
trap 'pkill -f "$SCRATCH/" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
cp -r "$RIG" "$SCRATCH/rig"
rm -rf "$SCRATCH/rig/results"/* "$SCRATCH/rig/.run"
OUT=$ROOT/bench/out/rig
mkdir -p "$OUT"
STORE=${BENCH_STORE:-embedded}
case ${BENCH_ACCESS_LOG:-off} in
  off) CR_ENV="RUST_LOG=info,access=off" ;;
  on) CR_ENV="" ;;
  *) echo "rig: BENCH_ACCESS_LOG is on or off" >&2; exit 1 ;;
esac
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo "+dirty")
STAMP=$(date -u +%Y%m%dT%H%M%S)
LOG=$OUT/$STAMP-$MODE-$STORE-log${BENCH_ACCESS_LOG:-off}-$COMMIT.md
echo "rig: $MODE, store $STORE, access log ${BENCH_ACCESS_LOG:-off}, cloakroom $COMMIT ($BIN); table in $LOG" >&2
env SKIP_OHA=1 BENCH_STORE="$STORE" CLOAKROOM_BIN="$BIN" CLOAKROOM_ENV="$CR_ENV" \
  PEERS="${PEERS:-nginx,haproxy},cloakroom" SCENARIOS="${SCENARIOS:-h1,h2,conn,session}" \
  ${2:+ROUNDS=$2} "$SCRATCH/rig/run.sh" "$MODE" | tee "$LOG"
cp "$SCRATCH"/rig/results/*.json "$OUT/$STAMP-$MODE-$STORE-log${BENCH_ACCESS_LOG:-off}-$COMMIT.json" 2>/dev/null || true
