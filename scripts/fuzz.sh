#!/usr/bin/env bash
# Runs each fuzz target under fuzz/ with cargo-fuzz (libFuzzer) on the
# installed nightly toolchain for SECONDS (default 300) each, then
# minimises its corpus, and prints one line per target: executions,
# coverage, corpus size and crashes. A crash leaves its input under
# fuzz/artifacts/<target>/ (tests/fuzz_corpus.rs replays it on stable) and
# makes the script exit 1.
#
#   scripts/fuzz.sh            # every target, 300 s each
#   scripts/fuzz.sh 60 jar     # one target, 60 s
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cookie_codec set_cookie jar upstream_h1 config path_route h1_framing)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
failed=0
report=()
for t in "${targets[@]}"; do
  log=$(mktemp)
  mkdir -p "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  if cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    outcome=clean
  elif [ "$(find "artifacts/$t" -type f | wc -l)" -gt "$before" ]; then
    outcome="CRASH (fuzz/artifacts/$t/)"
    failed=1
  else
    outcome="FAILED to run (log below)"
    failed=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  cargo +nightly fuzz cmin "$t" >/dev/null 2>&1 || true
  files=$(find "corpus/$t" -type f | wc -l)
  report+=("$t: ${secs}s, $execs executions, cov $cov, corpus $files files, $outcome")
  [ "$outcome" = clean ] || tail -40 "$log"
  rm -f "$log"
done
printf '%s\n' "${report[@]}"
exit $failed
