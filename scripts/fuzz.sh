#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/fuzz_targets/ for N seconds each (default 30), one after
# the other (the machine is shared: never in parallel). Installs cargo-fuzz if missing; needs the
# nightly toolchain. Crashes land in fuzz/artifacts/<target>/ and fail the script.
#
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 600        # 10 min per target
# A libFuzzer dictionary fuzz/dicts/<target>.dict, if present, is passed with -dict=.
# Env: FUZZ_MALLOC_MB (default 256): any single allocation above it is reported as a bug —
# every parser on fanline's input path must bound its memory.
set -euo pipefail

SECS="${1:-30}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=()
for f in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
done
[ "${#targets[@]}" -gt 0 ] || { echo "fuzz: no targets in fuzz/fuzz_targets/"; exit 1; }

failed=()
for t in "${targets[@]}"; do
    echo "fuzz: $t for ${SECS}s"
    mkdir -p "fuzz/corpus/$t"
    dict=()
    [ -f "fuzz/dicts/$t.dict" ] && dict=(-dict="$ROOT/fuzz/dicts/$t.dict")
    if ! cargo +nightly fuzz run "$t" -- "${dict[@]}" \
        -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb="${FUZZ_MALLOC_MB:-256}" \
        -print_final_stats=1; then
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]} (see fuzz/artifacts/)"
    exit 1
fi
echo "fuzz: all ${#targets[@]} target(s) ran ${SECS}s without findings"
