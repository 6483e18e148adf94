#!/usr/bin/env bash
# cloakroom vs nginx load benchmark: RETIRED for comparisons. The project's
# comparison figures come from the shared peer rig, which also runs HAProxy
# and names the best peer: bench/rig.sh (docs/performance.md, "Against the
# best peer"); this script's nginx-only tables there are superseded. It is
# kept because bench/instructions.sh uses the configs it writes under
# bench/out/ (`BENCH_DURATION=1 BENCH_ROUNDS=1 BENCH_SCENARIOS=h1 bench/run.sh`
# once), and for its conn-resumed scenario, which the rig does not have.
#
#   bench/run.sh            # build release, run every scenario, print table
#
# What it does, all on loopback:
#   * installs what it lacks from Debian: nginx, wrk, h2load (nghttp2-client);
#     builds cloakroom (release) and the small TLS client in bench/loadgen;
#   * starts one shared upstream: an nginx server block answering a fixed
#     ~100-byte body over plain HTTP;
#   * starts cloakroom (release build, RUST_LOG=warn so there is no access
#     log, TOKIO_WORKER_THREADS=1) and an nginx TLS-terminating reverse proxy
#     (worker_processes 1, access_log off, upstream keep-alive pool) with the
#     SAME certificate and key (the one cloakroom generates on first start);
#   * pins both proxies to one CPU (BENCH_PROXY_CPU, default 0) and the load
#     generator plus the upstream to another (BENCH_LOAD_CPU, default 1);
#   * per scenario, runs ROUNDS interleaved measurements (cloakroom, nginx,
#     cloakroom, nginx …), each on a freshly started proxy after a short
#     warm-up, reading the proxy's utime+stime from /proc before and after
#     the run and its peak RSS (VmHWM) at the end;
#   * prints a markdown table and writes it to bench/out/results.md (raw tool
#     output goes to bench/out/raw/). Everything it started is stopped on exit.
#
# Scenarios (BENCH_SCENARIOS, space-separated, default "h1 h1-session h2 conn-resumed conn-full"):
#   h1            HTTPS keep-alive HTTP/1.1: wrk -t1 -cC -dD --latency
#   h1-session    as h1, but cloakroom's requests carry a live session whose
#                 jar holds 10 upstream cookies; nginx does plain proxying
#   h1-session-app  (not in the default set) cloakroom as in h1-session; nginx's
#                 requests carry the app's 10 cookies themselves, as a browser
#                 does with no session proxy in front, so the upstream gets
#                 the same Cookie header from both proxies
#   h2            HTTP/2 over TLS (ALPN h2): h2load -t1 -cC -mM -D D (p99 from --log-file)
#   conn-resumed  a new TCP+TLS connection per request, TLS 1.3 resumption:
#                 bench/loadgen (rustls client) in `resume` mode
#   conn-full     a new TCP+TLS connection per request, full TLS 1.3
#                 handshake every time: bench/loadgen in `full` mode
#   Why a home-made client for the last two: wrk (-H "Connection: close")
#   and h2load both resume sessions silently, and `openssl s_time -new`
#   (OpenSSL 3 client) costs ~1 ms of client CPU per handshake, so the
#   generator core saturated at ~850 handshakes/s, far below either proxy.
#   bench/loadgen's latency is the whole cycle: connect, handshake, request,
#   response, close. wrk's and h2load's are per request on an open connection.
#
# Environment (defaults in brackets):
#   BENCH_DURATION [10]  seconds per measured run
#   BENCH_ROUNDS   [3]   measured runs per proxy per scenario
#   BENCH_WARMUP   [1]   seconds of unmeasured warm-up before each measured run
#   BENCH_CONNECTIONS [32]  concurrent connections;  BENCH_STREAMS [10] h2 streams per connection
#   BENCH_PROXY_CPU [0]  BENCH_LOAD_CPU [1]  CPUs for the proxies / the load generator
#   BENCH_UPSTREAM_CPU [= BENCH_LOAD_CPU]    CPU for the upstream nginx
#   BENCH_SCENARIOS ["h1 h2 conn-resumed conn-full"]
#   BENCH_ACCESS_LOG [0] 1: leave cloakroom's access log on (RUST_LOG=info,
#                        JSON lines to a file) to measure what it costs
#   BENCH_WAIT_QUIET [0] >0: before measuring, poll /proc/loadavg every 30 s for up
#                        to that many minutes until the 1-minute load is below
#                        BENCH_QUIET_LOAD [0.8] (other work on the machine skews
#                        everything); runs anyway when it never gets there
#   BENCH_TOKIO_WORKERS [1]  TOKIO_WORKER_THREADS for cloakroom; empty: unset
#                        (tokio then starts one worker per CPU it sees)
#   BENCH_STORE [memory] cloakroom's store.backend: memory; embedded (the
#                        durable store, its file under bench/out/cloakroom/data/);
#                        redis: sessions in a redis-server (no persistence) started
#                        here, pinned with the upstream; its CPU is not in
#                        cloakroom's CPU per request
#   BENCH_CLOAKROOM_ENV  extra NAME=VALUE words for cloakroom's environment, for
#                        experiments (e.g. LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2)
#   BENCH_BUILD [1]      0: skip `cargo build --release` of cloakroom and of
#                        bench/loadgen (built into bench/out/target when missing)
#   BENCH_INSTALL [1]    0: never call apt-get
#   CLOAKROOM_BIN        use this binary instead of target/release/cloakroom
# Defaults take about 4 scenarios × 3 rounds × 2 proxies × (10 s + 1 s
# warm-up + start/stop) ≈ 5 minutes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/out
RAW=$OUT/raw
DURATION=${BENCH_DURATION:-10}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNECTIONS:-32}
STREAMS=${BENCH_STREAMS:-10}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
UPSTREAM_CPU=${BENCH_UPSTREAM_CPU:-$LOAD_CPU}
SCENARIOS=${BENCH_SCENARIOS:-"h1 h1-session h2 conn-resumed conn-full"}
LOADGEN=$OUT/target/release/cloakroom-loadgen
ACCESS_LOG=${BENCH_ACCESS_LOG:-0}
STORE=${BENCH_STORE:-memory}
TOKIO_WORKERS=${BENCH_TOKIO_WORKERS-1}
BIN=${CLOAKROOM_BIN:-$ROOT/target/release/cloakroom}
RD_PORT=
CLK_TCK=$(getconf CLK_TCK)

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- install
install_tools() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx)
  command -v wrk >/dev/null || need+=(wrk)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  command -v taskset >/dev/null || need+=(util-linux)
  command -v curl >/dev/null || need+=(curl)
  if [[ $STORE == redis ]]; then
    command -v redis-server >/dev/null || need+=(redis-server)
    command -v redis-cli >/dev/null || need+=(redis-tools)
  fi
  ((${#need[@]} == 0)) && return 0
  [[ ${BENCH_INSTALL:-1} == 1 ]] || die "missing: ${need[*]} (BENCH_INSTALL=0)"
  log "installing ${need[*]}"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# ---------------------------------------------------------------- processes
PIDS=()        # everything we started, stopped by cleanup()
cleanup() {
  local pid i
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback TCP port at or above $1 (bounded search).
free_port() {
  local p=$1 i
  for ((i = 0; i < 200; i++, p++)); do
    if [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]]; then
      echo "$p"
      return 0
    fi
  done
  die "no free port near $1"
}

# Waits until $1 (a URL) answers, or fails after ~10 s.
wait_http() {
  local url=$1 pid=$2 i
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || die "process $pid for $url exited; see $OUT/logs"
    if curl -sk -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.1
  done
  die "$url did not answer"
}

stop_pid() {
  local pid=$1 i keep=()
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in "${PIDS[@]}"; do [[ $i == "$pid" ]] || keep+=("$i"); done
  PIDS=("${keep[@]}")
}

# The pid and its direct children (nginx master + workers).
proc_tree() {
  local pid=$1
  echo "$pid"
  cat "/proc/$pid/task/"*/children 2>/dev/null | tr ' ' '\n' | sed '/^$/d'
}

# utime+stime (clock ticks) summed over the process tree.
cpu_ticks() {
  local total=0 p rest
  for p in $(proc_tree "$1"); do
    rest=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    # fields after "pid (comm) ": state is 1st, utime 12th, stime 13th
    total=$((total + $(awk '{print $12 + $13}' <<<"$rest")))
  done
  echo "$total"
}

# Peak resident set (VmHWM, KiB) summed over the process tree.
peak_rss_kib() {
  local total=0 p v
  for p in $(proc_tree "$1"); do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# "busy total" jiffies of one CPU from /proc/stat (busy = all but idle+iowait).
cpu_busy() {
  awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit}' /proc/stat
}

# ---------------------------------------------------------------- configs
# The value of the bench app's cookie c<N> (40 + 4N bytes).
app_cookie_value() { printf 'v%0*d' $((40 + 4 * $1)) "$1"; }

# The Cookie header a browser holding all ten app cookies sends.
app_cookie_header() {
  local i out=""
  for i in 0 1 2 3 4 5 6 7 8 9; do out+="${out:+; }c$i=$(app_cookie_value "$i")"; done
  echo "$out"
}

write_upstream_conf() {
  local port=$1 dir=$OUT/nginx-upstream
  mkdir -p "$dir/logs" "$dir/tmp"
  # 100-byte body: 99 characters and a newline.
  local body
  body=$(printf 'hello from the bench upstream %069d' 0)
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  server {
    listen 127.0.0.1:$port backlog=4096;
    default_type text/plain;
    location / { return 200 "$body\n"; }
    # h1-session: a "login" that sets 10 cookies, 40-80 bytes each, which
    # cloakroom keeps in the session's jar and replays on every request.
    location = /login {
$(for i in 0 1 2 3 4 5 6 7 8 9; do printf '      add_header Set-Cookie "c%d=%s; Path=/" always;\n' "$i" "$(app_cookie_value "$i")"; done)
      return 200 "$body\n";
    }
  }
}
EOF
}

write_nginx_proxy_conf() {
  local port=$1 upstream_port=$2 cert=$3 key=$4 dir=$OUT/nginx-proxy
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  # cloakroom has no per-connection request cap; nginx's default (1000)
  # would make clients reconnect, so lift it for both HTTP/1.1 and HTTP/2.
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  upstream app {
    server 127.0.0.1:$upstream_port;
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$port ssl http2 backlog=4096;
    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    # what cloakroom does on every response and every forwarded request
    add_header Strict-Transport-Security "max-age=31536000" always;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$proxy_host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_set_header X-Forwarded-Host \$host;
    }
  }
}
EOF
}

write_cloakroom_conf() {
  local port=$1 upstream_port=$2 dir=$OUT/cloakroom
  mkdir -p "$dir"
  cat >"$dir/proxy.toml" <<EOF
# Written by bench/run.sh. certs/ is generated here on first start and
# reused by the nginx proxy.
[server]
listen = "127.0.0.1:$port"
admin_listen = ""

[tls]
cert = "certs/cert.pem"
key = "certs/key.pem"
self_signed_if_missing = true

[store]
$(if [[ $STORE == redis ]]; then
  printf 'backend = "redis"\nredis_url = "redis://127.0.0.1:%s/0"\nkey_prefix = "bench:"\n' "$RD_PORT"
else
  echo "backend = \"$STORE\""
fi)

[[route]]
path_prefix = "/"
upstream = "http://127.0.0.1:$upstream_port"
EOF
}

# ---------------------------------------------------------------- starting
UP_PID= CR_PID= NG_PID=
start_upstream() {
  write_upstream_conf "$UP_PORT"
  taskset -c "$UPSTREAM_CPU" nginx -p "$OUT/nginx-upstream" -e "$OUT/nginx-upstream/logs/error.log" \
    -c "$OUT/nginx-upstream/nginx.conf" >"$OUT/logs/upstream.out" 2>&1 &
  UP_PID=$!
  PIDS+=("$UP_PID")
  wait_http "http://127.0.0.1:$UP_PORT/" "$UP_PID"
}

start_cloakroom() {
  local level=warn out=/dev/null
  if [[ $ACCESS_LOG == 1 ]]; then level=info out=$OUT/logs/cloakroom-access.jsonl; fi
  local workers=()
  [[ -n $TOKIO_WORKERS ]] && workers=(TOKIO_WORKER_THREADS="$TOKIO_WORKERS")
  local extra=()
  [[ -n ${BENCH_CLOAKROOM_ENV:-} ]] && read -ra extra <<<"$BENCH_CLOAKROOM_ENV"
  env -u TOKIO_WORKER_THREADS "${workers[@]}" "${extra[@]}" RUST_LOG=$level CLOAKROOM_LOG_FORMAT=json \
    taskset -c "$PROXY_CPU" "$BIN" --config "$OUT/cloakroom/proxy.toml" >>"$out" 2>>"$OUT/logs/cloakroom.err" &
  CR_PID=$!
  PIDS+=("$CR_PID")
  wait_http "https://127.0.0.1:$CR_PORT/" "$CR_PID"
}

start_nginx_proxy() {
  taskset -c "$PROXY_CPU" nginx -p "$OUT/nginx-proxy" -e "$OUT/nginx-proxy/logs/error.log" \
    -c "$OUT/nginx-proxy/nginx.conf" >"$OUT/logs/nginx-proxy.out" 2>&1 &
  NG_PID=$!
  PIDS+=("$NG_PID")
  wait_http "https://127.0.0.1:$NG_PORT/" "$NG_PID"
}

# ---------------------------------------------------------------- load
# run_load SCENARIO PORT SECONDS OUTFILE: runs the generator on LOAD_CPU.
run_load() {
  local scenario=$1 port=$2 secs=$3 out=$4 url="https://127.0.0.1:$2/bench"
  case $scenario in
    h1)
      taskset -c "$LOAD_CPU" timeout $((secs + 30)) wrk -t1 -c"$CONNS" -d"${secs}s" --latency "$url" >"$out" 2>&1 ;;
    h1-session | h1-session-app)
      # cloakroom: every request carries a live session whose jar holds the
      # upstream's 10 cookies (verify, lookup, jar merge, identity strip).
      # nginx: the same load as plain proxying, the bar to meet; in
      # h1-session-app with the app's cookies sent by the client instead.
      local cookie=()
      if [[ $port != "$CR_PORT" && $scenario == h1-session-app ]]; then
        cookie=(-H "Cookie: $(app_cookie_header)")
      elif [[ $port == "$CR_PORT" ]]; then
        local value
        value=$(curl -sk -D - -o /dev/null --max-time 5 "https://127.0.0.1:$port/login" |
          awk -F'[=;]' 'tolower($0) ~ /^set-cookie: __host-cloakroom=/ {print $2; exit}')
        [[ -n $value ]] || die "h1-session: cloakroom issued no session cookie"
        cookie=(-H "Cookie: __Host-cloakroom=$value")
      fi
      taskset -c "$LOAD_CPU" timeout $((secs + 30)) wrk -t1 -c"$CONNS" -d"${secs}s" --latency "${cookie[@]}" "$url" >"$out" 2>&1 ;;
    h2)
      taskset -c "$LOAD_CPU" timeout $((secs + 30)) \
        h2load -t1 -c"$CONNS" -m"$STREAMS" -D "$secs" --log-file="$out.log" "$url" >"$out" 2>&1 ;;
    conn-resumed | conn-full)
      local mode=resume
      [[ $scenario == conn-full ]] && mode=full
      taskset -c "$LOAD_CPU" timeout $((secs + 30)) \
        "$LOADGEN" "127.0.0.1:$port" /bench "$CONNS" "$secs" "$mode" >"$out" 2>&1 ;;
    *) die "unknown scenario $scenario" ;;
  esac
}

# wrk latency value ("850.00us", "1.23ms", "2.00s") in ms
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

# parse SCENARIO OUTFILE -> "requests errors p99_ms"
parse_load() {
  local scenario=$1 out=$2 req err p99
  case $scenario in
    h1 | h1-session | h1-session-app)
      req=$(awk '/requests in/ {print $1; exit}' "$out")
      err=$(awk '/Socket errors:/ {gsub(",", ""); e += $4 + $6 + $8 + $10} /Non-2xx/ {e += $NF} END {print e + 0}' "$out")
      p99=$(to_ms "$(awk '$1 == "99%" {print $2; exit}' "$out")")
      ;;
    conn-resumed | conn-full)
      req=$(awk '$1 == "requests" {print $2}' "$out")
      err=$(awk '$1 == "errors" {print $2}' "$out")
      p99=$(awk '$1 == "p99_ms" {print $2}' "$out")
      ;;
    h2)
      # requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
      req=$(awk '/^requests:/ {print $8; exit}' "$out")
      err=$(awk '/^requests:/ {print $10 + $12 + $14; exit}' "$out")
      # --log-file: send time (us), status, duration (us); count only 2xx
      p99=$(awk -F'\t' '$2 >= 200 && $2 < 300 {print $3}' "$out.log" | sort -n |
        awk '{a[NR] = $1} END {if (NR == 0) {print "nan"; exit} i = int(NR * 0.99 + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.3f", a[i] / 1000}')
      rm -f "$out.log"
      ;;
  esac
  [[ -n $req ]] || die "could not parse $out"
  echo "${req:-0} ${err:-0} ${p99:-nan}"
}

# ---------------------------------------------------------------- main
install_tools
mkdir -p "$OUT" "$RAW" "$OUT/logs"
rm -f "$RAW"/*
: >"$OUT/logs/cloakroom.err"
rm -f "$OUT/logs/cloakroom-access.jsonl"

if [[ ${BENCH_BUILD:-1} == 1 && -z ${CLOAKROOM_BIN:-} ]]; then
  log "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x $BIN ]] || die "no cloakroom binary at $BIN"
if [[ $SCENARIOS == *conn-* && ( ${BENCH_BUILD:-1} == 1 || ! -x $LOADGEN ) ]]; then
  log "building bench/loadgen"
  CARGO_TARGET_DIR=$OUT/target cargo build --release --quiet --manifest-path "$ROOT/bench/loadgen/Cargo.toml"
fi
(($(nproc) >= 2)) || log "warning: fewer than 2 CPUs; pinning puts everything on one core"

if ((${BENCH_WAIT_QUIET:-0} > 0)); then
  for ((i = 0; i < BENCH_WAIT_QUIET * 2; i++)); do
    awk -v q="${BENCH_QUIET_LOAD:-0.8}" '{exit !($1 < q)}' /proc/loadavg && break
    log "waiting for a quiet machine: load $(cut -d' ' -f1-3 /proc/loadavg)"
    sleep 30
  done
fi
UP_PORT=$(free_port "${BENCH_PORT_BASE:-18080}")
CR_PORT=$(free_port $((UP_PORT + 1)))
NG_PORT=$(free_port $((CR_PORT + 1)))
if [[ $STORE == redis ]]; then
  RD_PORT=$(free_port $((NG_PORT + 1)))
  taskset -c "$UPSTREAM_CPU" redis-server --port "$RD_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    >"$OUT/logs/redis.out" 2>&1 &
  PIDS+=("$!")
  for ((i = 0; i < 100; i++)); do
    [[ $(redis-cli -p "$RD_PORT" ping 2>/dev/null) == PONG ]] && break
    sleep 0.05
  done
  [[ $(redis-cli -p "$RD_PORT" ping 2>/dev/null) == PONG ]] || die "redis-server did not start"
  log "redis-server on $RD_PORT, CPU $UPSTREAM_CPU"
fi
[[ $STORE == memory || $STORE == embedded || $STORE == redis ]] || die "BENCH_STORE is memory, embedded or redis"
write_cloakroom_conf "$CR_PORT" "$UP_PORT"
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $START_LOAD"
log "ports: upstream $UP_PORT, cloakroom $CR_PORT, nginx $NG_PORT; CPUs: proxies $PROXY_CPU, load $LOAD_CPU, upstream $UPSTREAM_CPU"

start_upstream
# First start generates cloakroom's certificate; nginx reuses it.
start_cloakroom
write_nginx_proxy_conf "$NG_PORT" "$UP_PORT" "$OUT/cloakroom/certs/cert.pem" "$OUT/cloakroom/certs/key.pem"
stop_pid "$CR_PID"

# per-proxy accumulation: SUM[scenario,proxy,field]
declare -A SUM
for scenario in $SCENARIOS; do
  log "scenario $scenario"
  for ((round = 1; round <= ROUNDS; round++)); do
    for proxy in cloakroom nginx; do
      # A fresh process every round: the same cloakroom binary, restarted,
      # has shown run-to-run spreads of ±15% in CPU per request (h2), so
      # the median must be over processes, not over runs of one process.
      if [[ $proxy == cloakroom ]]; then
        start_cloakroom
        pid=$CR_PID port=$CR_PORT
        CR_THREADS=$(awk '/^Threads:/ {print $2}' "/proc/$CR_PID/status")
      else
        start_nginx_proxy
        pid=$NG_PID port=$NG_PORT
      fi
      run_load "$scenario" "$port" "$WARMUP" "$RAW/$scenario-$proxy-r$round-warmup.txt"
      out=$RAW/$scenario-$proxy-r$round.txt
      read -r lb0 lt0 <<<"$(cpu_busy "$LOAD_CPU")"
      read -r pb0 pt0 <<<"$(cpu_busy "$PROXY_CPU")"
      t0=$(cpu_ticks "$pid")
      w0=$(date +%s.%N)
      run_load "$scenario" "$port" "$DURATION" "$out"
      w1=$(date +%s.%N)
      t1=$(cpu_ticks "$pid")
      read -r lb1 lt1 <<<"$(cpu_busy "$LOAD_CPU")"
      read -r pb1 pt1 <<<"$(cpu_busy "$PROXY_CPU")"
      lbusy=$(awk -v b=$((lb1 - lb0)) -v t=$((lt1 - lt0)) 'BEGIN {printf "%.2f", (t > 0 ? b / t : 0)}')
      # busy time on the proxy's CPU that was not the proxy: other work on
      # the machine that stole from the measured proxy (should be ~0)
      other=$(awk -v b=$((pb1 - pb0)) -v t=$((pt1 - pt0)) -v p=$((t1 - t0)) 'BEGIN {printf "%.2f", (t > 0 ? (b - p) / t : 0)}')
      res=$(parse_load "$scenario" "$out")
      read -r req err p99 <<<"$res"
      secs=$(awk -v a="$w0" -v b="$w1" 'BEGIN {printf "%.3f", b - a}')
      ticks=$((t1 - t0))
      log "$scenario r$round $proxy: $req requests, $err errors, p99 ${p99} ms, $ticks CPU ticks in ${secs}s, load CPU busy $lbusy, other work on proxy CPU $other"
      printf '%s %s %d %s %s %s %s %s %s %s\n' "$scenario" "$proxy" "$round" "$req" "$err" "$p99" "$ticks" "$secs" "$lbusy" "$other" >>"$RAW/runs.tsv"
      echo "$scenario $proxy $(peak_rss_kib "$pid") ${CR_THREADS:-}" >>"$RAW/rss.tsv"
      stop_pid "$pid"
    done
  done
done
END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at end: $END_LOAD"

# ---------------------------------------------------------------- report
{
  echo "### cloakroom vs nginx ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "$ROUNDS rounds × ${DURATION}s per proxy and scenario, interleaved; $CONNS connections" \
    "(h2: × $STREAMS streams); proxies pinned to CPU $PROXY_CPU, load generator to CPU $LOAD_CPU, upstream to CPU $UPSTREAM_CPU;" \
    "cloakroom with store.backend = $STORE$([[ $STORE == redis ]] && echo " (redis-server on CPU $UPSTREAM_CPU)"), TOKIO_WORKER_THREADS=${TOKIO_WORKERS:-(unset)}${BENCH_CLOAKROOM_ENV:+, $BENCH_CLOAKROOM_ENV} and RUST_LOG=$([[ $ACCESS_LOG == 1 ]] && echo 'info (access log on)' || echo 'warn (no access log)');" \
    "load average at start $START_LOAD, at end $END_LOAD."
  echo
  echo "| scenario | proxy | req/s (median) | req/s per round | p99 ms (median) | CPU µs/req (median) | req/s per proxy core-second | proxy CPU use | load CPU use | other work on proxy CPU (max) | peak RSS MiB | errors | req/s cloakroom/nginx | CPU/req cloakroom/nginx | req/s ratio, paired | CPU/req ratio, paired |"
  echo "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -v clk="$CLK_TCK" -v dur="$DURATION" '
    function median(s,   n, a, i, j, t) {
      n = split(s, a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      if (n % 2) return a[(n + 1) / 2]
      return (a[n / 2] + a[n / 2 + 1]) / 2
    }
    FNR == NR && FILENAME ~ /rss.tsv$/ { if ($3 > rss[$1, $2]) rss[$1, $2] = $3; next }
    {
      k = $1 SUBSEP $2
      if (!(k in seen)) { seen[k] = 1; order[++n] = k }
      rps = $4 / $8
      round_r[$1, $2, $3] = rps; round_c[$1, $2, $3] = ($4 > 0 ? $7 / $4 : 0)
      if ($3 > rounds) rounds = $3
      rpsl[k] = rpsl[k] " " sprintf("%.0f", rps)
      rpss[k] = rpss[k] " " rps
      p99[k] = p99[k] " " $6
      cpu[k] = cpu[k] " " ($4 > 0 ? $7 / clk * 1e6 / $4 : 0)
      use[k] = use[k] " " ($7 / clk / $8)
      luse[k] = luse[k] " " $9
      if (!(k in oth) || $10 > oth[k]) oth[k] = $10
      errs[k] += $5
    }
    END {
      for (i = 1; i <= n; i++) {
        split(order[i], kk, SUBSEP); sc = kk[1]; px = kk[2]
        r = median(rpss[order[i]]); c = median(cpu[order[i]])
        med_r[sc, px] = r; med_c[sc, px] = c
      }
      for (i = 1; i <= n; i++) {
        split(order[i], kk, SUBSEP); sc = kk[1]; px = kk[2]; k = order[i]
        ratio_r = ratio_c = paired_r = paired_c = ""
        if (px == "cloakroom" && med_r[sc, "nginx"] > 0) ratio_r = sprintf("%.2f", med_r[sc, px] / med_r[sc, "nginx"])
        if (px == "cloakroom" && med_c[sc, "nginx"] > 0) ratio_c = sprintf("%.2f", med_c[sc, px] / med_c[sc, "nginx"])
        # Paired: the cloakroom run of each round against the nginx run right
        # after it, then the median of those ratios (drifts of the machine
        # between rounds cancel out).
        if (px == "cloakroom") {
          pr = pc = ""
          for (j = 1; j <= rounds; j++) {
            if (round_r[sc, "nginx", j] > 0 && round_c[sc, "nginx", j] > 0) {
              pr = pr " " round_r[sc, px, j] / round_r[sc, "nginx", j]
              pc = pc " " round_c[sc, px, j] / round_c[sc, "nginx", j]
            }
          }
          if (pr != "") { paired_r = sprintf("%.2f", median(pr)); paired_c = sprintf("%.2f", median(pc)) }
        }
        pm = median(p99[k]); ps = (pm == "nan" || pm == "") ? "n/a" : sprintf("%.2f", pm)
        printf "| %s | %s | %.0f | %s | %s | %.1f | %.0f | %.0f%% | %.0f%% | %.0f%% | %.1f | %d | %s | %s | %s | %s |\n", sc, px, med_r[sc, px], substr(rpsl[k], 2),
          ps, med_c[sc, px], (med_c[sc, px] > 0 ? 1e6 / med_c[sc, px] : 0), median(use[k]) * 100, median(luse[k]) * 100, oth[k] * 100, rss[sc, px] / 1024, errs[k], ratio_r, ratio_c, paired_r, paired_c
      }
    }' "$RAW/rss.tsv" "$RAW/runs.tsv"
  echo
  echo "CPU µs/req = proxy utime+stime during the run ÷ requests completed (nginx: master + worker);" \
    "req/s per proxy core-second = 10⁶ ÷ that, what one fully busy core would serve at the measured cost." \
    "Proxy CPU use = that CPU time ÷ wall time (100% = the pinned core saturated)." \
    "Other work on proxy CPU = busy time of CPU $PROXY_CPU not spent by the proxy, worst round (other jobs on the machine; should be ~0%)." \
    "Load CPU use = busy share of CPU $LOAD_CPU (the load generator's CPU$([[ $UPSTREAM_CPU == "$LOAD_CPU" ]] && echo ', shared with the upstream'); 100% = the generator side is the bottleneck)." \
    "Peak RSS = VmHWM at the end of a run, largest of the rounds (nginx: master + worker)." \
    "The ratio columns divide the two medians; the paired ones take each round's cloakroom run over the nginx run right after it and report the median of those per-round ratios, which cancels drifts of the machine between rounds." \
    "cloakroom ran $(awk '$2 == "cloakroom" {print $4; exit}' "$RAW/rss.tsv") threads. Raw output: bench/out/raw/."
} | tee "$OUT/results.md"
