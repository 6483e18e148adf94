#!/usr/bin/env bash
# The whole test suite. Installs what it needs that a fresh machine lacks
# (a Python venv with Flask under target/), then runs formatting, lints,
# the dependency policy check and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/venv
if ! "$venv/bin/python" -c "import flask, flask_sock" 2>/dev/null; then
  echo "== installing Flask and flask-sock into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check flask flask-sock
fi
export CLOAKROOM_TEST_PYTHON="$PWD/$venv/bin/python"

# tests/browser.rs drives Debian's Chromium with playwright-core (never a
# downloaded browser).
if [ ! -x /usr/bin/chromium ]; then
  echo "== installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
if [ ! -d tests/browser/node_modules ]; then
  echo "== installing playwright-core into tests/browser"
  npm ci --prefix tests/browser --no-audit --no-fund
fi

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
