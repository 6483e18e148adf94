#!/usr/bin/env bash
# Other clients' latency under N slow-header (slowloris) connections
# (issue 17): starts BINARY (default target/release/cloakroom) on a free
# loopback port, pinned to CPU 0, with a memory store; the clients run on
# CPU 1. It measures keep-alive requests to /.cloakroom/session (answered
# by the proxy itself) for SECONDS alone, then again once N slow clients
# hold connections open, three times each, interleaved.
#
#   bench/slowloris.sh [N] [SECONDS] [BINARY]     N 1000, SECONDS 20
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-1000}
SECS=${2:-20}
BIN=${3:-$ROOT/target/release/cloakroom}
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$DIR/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_listen = ""
max_connections = $((N + 1000))
max_connections_per_client = $((N + 1000))
[store]
backend = "memory"
[[route]]
upstream = "http://127.0.0.1:1"
TOML
ulimit -n $((N + 2000))
RUST_LOG=warn TOKIO_WORKER_THREADS=1 taskset -c 0 "$BIN" --config "$DIR/proxy.toml" >"$DIR/log" 2>&1 &
PID=$!
ATTACK=
trap 'kill $PID $ATTACK 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),1)" 2>/dev/null && break
  sleep 0.1
done
PY="taskset -c 1 python3 $ROOT/bench/slowloris.py"
echo "binary: $BIN ($(git -C "$ROOT" rev-parse --short HEAD)), $N slow clients, ${SECS}s per measurement"
for round in 1 2 3; do
  printf 'round %s alone:         ' "$round"; $PY measure "$PORT" "$SECS"
  $PY attack "$PORT" "$N" & ATTACK=$!
  sleep $((N / 200 + 3))
  open=$(ls /proc/$PID/fd | wc -l)
  printf 'round %s under attack:  ' "$round"; $PY measure "$PORT" "$SECS" | tr -d '\n'
  echo " ($open fds open in the proxy)"
  kill $ATTACK; wait $ATTACK 2>/dev/null || true; ATTACK=
  sleep 2
done
