#!/usr/bin/env bash
# Runs everything fanline checks, on a fresh machine too (the README's test command):
# format, lints, unit + integration tests (real sockets, real Kafka mock cluster), Autobahn
# RFC 6455 conformance against the echo route, the API documents (OpenAPI/AsyncAPI validators)
# and alert rules (promtool), the Python and JavaScript clients' tests (a venv under target/,
# packages from PyPI/npm, against the real binary; headless Chromium), bounded fuzzing, the systemd unit check and
# the benchmark harness at small scale. Ends with one line: "N passed, N failed".
#
#   scripts/test.sh            # everything
#   QUICK=1 scripts/test.sh    # fmt, clippy, cargo tests only
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Tests run in parallel and hold many sockets each: use the whole open-files allowance (a CI
# runner's soft limit may be 1024 while the hard one is far higher).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "open files: soft $(ulimit -Sn), hard $(ulimit -Hn)"
passed=0
failed=0
failures=()
failed_tests=()

step() { # step NAME CMD...: run a gate, count it
    local name=$1; shift
    echo "=== $name: $*"
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}

cargo_tests() { # cargo_tests BACKEND: the whole cargo suite on that I/O backend
    local log=target/cargo-test-$1.log
    FANLINE_SERVER_IO_BACKEND=$1 cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local p f
    p=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
    f=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
    echo "cargo test: $p passed, $f failed"
    # Named again at the very end (CI shows the tail of the log).
    failed_tests+=($(grep -E '^test .* \.\.\. FAILED$' "$log" | awk -v l="$log" '{print l ":" $2}'))
    passed=$((passed + p - 1)) # the step itself counts one
    failed=$((failed + f))
    return "$rc"
}

step fmt cargo fmt --all --check
step clippy cargo clippy --release --workspace --all-targets -- -D warnings
step build cargo build --release --workspace --all-targets
# Every test and the conformance suite on both I/O backends (a configuration built in code
# follows FANLINE_SERVER_IO_BACKEND too, see config::IoBackend).
step cargo-test cargo_tests epoll
step cargo-test-uring cargo_tests uring
if [ -z "${QUICK:-}" ]; then
    step autobahn env FANLINE_BIN=target/release/fanline FANLINE_SERVER_IO_BACKEND=epoll bash scripts/autobahn.sh
    step autobahn-uring env FANLINE_BIN=target/release/fanline FANLINE_SERVER_IO_BACKEND=uring bash scripts/autobahn.sh
    # docs/openapi.yaml (OpenAPI 3.1), docs/openapi.json generated from it, docs/asyncapi.yaml.
    step api-docs bash scripts/api-docs.sh
    # Alert rules, Prometheus config and dashboard queries (promtool, from Debian's prometheus).
    step monitoring bash scripts/check-monitoring.sh
    step python-client env FANLINE_BIN=target/release/fanline bash clients/python/test.sh
    # The JS client: npm ci, dist/ == fresh build, unit, integration (real binary) and
    # headless-Chromium tests (Debian's chromium; screenshots in target/jsclient-artifacts/).
    step js-client env FANLINE_BIN=target/release/fanline bash clients/js/test.sh
    [ -x scripts/fuzz.sh ] && step fuzz bash scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
    [ -x scripts/verify-unit.sh ] && step systemd-unit bash scripts/verify-unit.sh
    [ -x perf/compare.sh ] && step bench-harness bash perf/compare.sh --small
fi
if [ ${#failures[@]} -gt 0 ]; then
    echo "failed gates: ${failures[*]}"
    for lt in "${failed_tests[@]}"; do # why each failed (CI shows the tail of the log)
        echo "--- $lt:"
        awk -v t="---- ${lt#*:} stdout ----" '$0 == t {on = 1; n = 0; next}
            on && /^---- / {exit} on && n++ < 25' "${lt%%:*}"
    done
    [ ${#failed_tests[@]} -gt 0 ] && echo "failed tests: ${failed_tests[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
