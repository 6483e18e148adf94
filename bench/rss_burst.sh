#!/usr/bin/env bash
# RSS of a cloakroom process idle, with N idle keep-alive TLS connections
# open, and after they close, over three rounds (issue 17, "memory that
# comes back"). Starts BINARY (default target/release/cloakroom) on a free
# loopback port with a memory store and a self-signed certificate in a
# scratch directory; each connection makes one request to
# /.cloakroom/session (no upstream involved) and then stays idle.
#
#   bench/rss_burst.sh [N] [BINARY]      N defaults to 9000
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-9000}
BIN=${2:-$ROOT/target/release/cloakroom}
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$DIR/proxy.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_listen = ""
max_connections = $((N + 1000))
max_connections_per_client = $((N + 1000))
client_idle_timeout = "300s"
[store]
backend = "memory"
[[route]]
upstream = "http://127.0.0.1:1"
TOML
ulimit -n $((N + 2000))
"$BIN" --config "$DIR/proxy.toml" >"$DIR/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),1)" 2>/dev/null && break
  sleep 0.1
done
echo "binary: $BIN (repository at $(git -C "$ROOT" rev-parse --short HEAD)), $N connections"
python3 "$ROOT/bench/rss_burst.py" "$N" "$PID" "$PORT"
