#!/usr/bin/env bash
# User-space instructions per request of a cloakroom binary, counted by
# valgrind's callgrind: the same binary and load give the same count within
# about 1%, whatever else the machine is doing, where CPU time on this VM
# drifts by ±15% between runs. Use it to compare builds; use bench/run.sh
# for the comparison with nginx.
#
#   bench/instructions.sh [SCENARIO] [SECONDS] [BINARY]
#     SCENARIO  h1 (default), h1s (a 10-cookie session on every request), h2
#     SECONDS   length of the measured load [6]
#     BINARY    [target/release/cloakroom]
#
# Needs the configs bench/run.sh writes under bench/out/ (run it once, e.g.
# `BENCH_DURATION=1 BENCH_ROUNDS=1 BENCH_SCENARIOS=h1 bench/run.sh`), and
# valgrind, wrk and h2load (installed with `apt-get install valgrind wrk
# nghttp2-client` if missing).
#
# Method: cloakroom starts under callgrind with instrumentation off; after a
# warm-up load, instrumentation goes on and two loads run, of 2 s and of
# SECONDS, each followed by a dump. Both loads open the same 32 connections
# (32 TLS handshakes), so the difference of the two dumps divided by the
# difference of their request counts is the cost of one keep-alive request,
# handshakes excluded. Under valgrind the CPU features it does not emulate
# (SHA-NI, AVX-512) are not used: SHA-256 and AES count more instructions
# here than they cost on the real CPU.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/out
SC=${1:-h1}
SECS=${2:-6}
BIN=${3:-$ROOT/target/release/cloakroom}
WORK=$OUT/callgrind
die() { printf 'instructions: %s\n' "$*" >&2; exit 1; }

[[ -f $OUT/cloakroom/proxy.toml && -f $OUT/nginx-upstream/nginx.conf ]] ||
  die "no bench configs under $OUT: run bench/run.sh once first"
for tool in valgrind callgrind_control wrk h2load nginx; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -x $BIN ]] || die "$BIN is not an executable (cargo build --release)"
PORT=$(awk -F'[:"]' '/^listen/ {print $3}' "$OUT/cloakroom/proxy.toml")
UP_PORT=$(awk '/listen 127.0.0.1:/ {split($2, a, ":"); print a[2] + 0; exit}' "$OUT/nginx-upstream/nginx.conf")
URL=https://127.0.0.1:$PORT/bench
mkdir -p "$WORK"
rm -f "$WORK"/cg.out*

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

taskset -c 1 nginx -p "$OUT/nginx-upstream" -e "$OUT/nginx-upstream/logs/error.log" \
  -c "$OUT/nginx-upstream/nginx.conf" >/dev/null 2>&1 &
PIDS+=($!)
(
  cd "$OUT/cloakroom"
  exec env RUST_LOG=warn TOKIO_WORKER_THREADS=1 taskset -c 0 valgrind --tool=callgrind \
    --instr-atstart=no --callgrind-out-file="$WORK/cg.out" "$BIN" --config proxy.toml
) >/dev/null 2>"$WORK/valgrind.err" &
CR=$!
PIDS+=("$CR")
for ((i = 0; i < 150; i++)); do
  curl -sk -o /dev/null --max-time 1 "$URL" && break
  kill -0 "$CR" 2>/dev/null || die "cloakroom exited; see $WORK/valgrind.err"
  sleep 0.2
done
curl -sk -o /dev/null --max-time 1 "http://127.0.0.1:$UP_PORT/" || die "the upstream did not start"

HEADERS=()
if [[ $SC == h1s ]]; then
  value=$(curl -sk -D - -o /dev/null --max-time 5 "https://127.0.0.1:$PORT/login" |
    awk -F'[=;]' 'tolower($0) ~ /^set-cookie: __host-cloakroom=/ {print $2; exit}')
  [[ -n $value ]] || die "no session cookie from /login"
  HEADERS=(-H "Cookie: __Host-cloakroom=$value")
fi

# load SECONDS -> prints the requests completed
load() {
  case $SC in
    h2)
      taskset -c 1 h2load -t1 -c32 -m10 -D "$1" "$URL" >"$WORK/load.out" 2>&1
      awk '/^requests:/ {print $8; exit}' "$WORK/load.out" ;;
    h1 | h1s)
      taskset -c 1 wrk -t1 -c32 -d"${1}s" "${HEADERS[@]}" "$URL" >"$WORK/load.out"
      awk '/requests in/ {print $1; exit}' "$WORK/load.out" ;;
    *) die "unknown scenario $SC (h1, h1s, h2)" ;;
  esac
}

load 2 >/dev/null
callgrind_control -i on "$CR" >/dev/null 2>&1
n1=$(load 2)
callgrind_control -d "$CR" >/dev/null 2>&1
n2=$(load "$SECS")
callgrind_control -d "$CR" >/dev/null 2>&1
callgrind_control -i off "$CR" >/dev/null 2>&1
ir1=$(awk '/^summary:/ {s += $2} END {print s + 0}' "$WORK/cg.out.1")
ir2=$(awk '/^summary:/ {s += $2} END {print s + 0}' "$WORK/cg.out.2")
((n2 > n1)) || die "the second load completed no more requests than the first ($n1, $n2)"
echo "$SC $(basename "$BIN"): $(((ir2 - ir1) / (n2 - n1))) instructions per request ($n1 and $n2 requests; profile: callgrind_annotate $WORK/cg.out.2)"
