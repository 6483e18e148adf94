#!/usr/bin/env bash
# Other clients' latency under N slow-header (slowloris) connections
# (issue 17). Two cloakrooms from BINARY (default target/release/cloakroom)
# on free loopback ports with memory stores: the measured one pinned to
# CPU 0, a decoy on CPU 1 with the clients. h2load (HTTP/1.1, 4 keep-alive
# connections, 50 requests/s each) measures requests to /.cloakroom/session
# (answered by the proxy itself) for SECONDS: alone; while the N slow
# clients (bench/slowloris.py) attack the decoy, so the clients' core
# carries the same attacking work but the measured proxy does not; and
# while they attack the measured proxy. The decoy run is the fair baseline
# for the attack run: only where the slow connections land differs. Three
# rounds; p50/p99/p99.9 from h2load's per-request log, and the measured
# proxy's CPU share over the run.
#
#   bench/slowloris.sh [N] [SECONDS] [BINARY]     N 1000, SECONDS 15
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-1000}
SECS=${2:-15}
BIN=${3:-$ROOT/target/release/cloakroom}
DIR=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ulimit -n $((2 * N + 2000))
PIDS=()
ATTACK=
trap 'kill "${PIDS[@]}" $ATTACK 2>/dev/null; rm -rf "$DIR"' EXIT
start() { # NAME CPU -> sets PORT_OF_LAST
  local port; port=$(free_port)
  mkdir -p "$DIR/$1"
  cat >"$DIR/$1/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
admin_listen = ""
max_connections = $((N + 1000))
max_connections_per_client = $((N + 1000))
[store]
backend = "memory"
[[route]]
upstream = "http://127.0.0.1:1"
TOML
  (cd "$DIR/$1" && RUST_LOG=warn TOKIO_WORKER_THREADS=1 exec taskset -c "$2" "$BIN" --config proxy.toml >log 2>&1) &
  PIDS+=($!)
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null && break
    sleep 0.1
  done
  PORT_OF_LAST=$port
}
start measured 0; PORT=$PORT_OF_LAST
MPID=$(pgrep -n -f "^$BIN --config proxy.toml" 2>/dev/null)
start decoy 1; DECOY=$PORT_OF_LAST
cpu_ticks() { awk '{print $14 + $15}' "/proc/$MPID/stat"; }
measure() { # LABEL
  local t0 t1
  rm -f "$DIR/lat"
  t0=$(cpu_ticks)
  taskset -c 1 h2load --h1 -t1 -c4 --rps 50 -D "$SECS" --log-file="$DIR/lat" \
    "https://127.0.0.1:$PORT/.cloakroom/session" >"$DIR/h2load.out" 2>&1
  t1=$(cpu_ticks)
  python3 - "$DIR/lat" "$1" "$SECS" "$t0" "$t1" <<'PY'
import sys
path, label, secs, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
lat = sorted(int(l.split()[2]) / 1000 for l in open(path) if l.strip())
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
cpu = (t1 - t0) / 100 / secs * 100
print(f"{label:<22} {len(lat):>5} requests: p50 {q(.5):.2f} ms, p99 {q(.99):.2f} ms, p99.9 {q(.999):.2f} ms; measured proxy CPU {cpu:.1f} %", flush=True)
PY
}
attack() { # PORT
  taskset -c 1 python3 "$ROOT/bench/slowloris.py" "$1" "$N" & ATTACK=$!
  sleep $((N / 200 + 5))
}
stop_attack() { kill $ATTACK; wait $ATTACK 2>/dev/null || true; ATTACK=; sleep 3; }
echo "binary: $BIN (repository at $(git -C "$ROOT" rev-parse --short HEAD)), $N slow clients, ${SECS}s per measurement"
for round in 1 2 3; do
  measure "round $round alone"
  attack "$DECOY"; measure "round $round decoy attacked"; stop_attack
  attack "$PORT"; measure "round $round attacked"; stop_attack
done
