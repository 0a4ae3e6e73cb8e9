#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (AddressSanitizer +
# UndefinedBehaviorSanitizer) in build-fuzz/ and runs each one for an equal
# share of SECONDS (default 60), starting from its checked-in seed corpus
# (fuzz/corpus/<target>, copied: the checked-in files are not changed).
# Any crash, sanitizer report or untyped exception fails the run; the input
# that caused it is left in build-fuzz/artifacts/. Prints executions per target.
#
#   scripts/fuzz.sh          # 60 s in all (CI)
#   scripts/fuzz.sh 3600     # an hour in all
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"

total="${1:-60}"
dir="${GREENREDUCE_FUZZ_BUILD:-build-fuzz}"
targets=(fuzz_frame fuzz_codec fuzz_store fuzz_ps_request)

gr_ensure_packages
CXX=clang++ gr_configure "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DGREENREDUCE_BUILD_FUZZ=ON -DGREENREDUCE_BUILD_TESTS=OFF -DGREENREDUCE_BUILD_BENCH=OFF \
  -DGREENREDUCE_BUILD_EXAMPLES=OFF -DGREENREDUCE_WITH_CUDA=OFF -DGREENREDUCE_INSTALL=OFF
gr_build "$dir" --target "${targets[@]}"

share=$(( total / ${#targets[@]} ))
[ "$share" -ge 1 ] || share=1
mkdir -p "$dir/artifacts"
status=0
for t in "${targets[@]}"; do
  work="$dir/corpus/$t"
  mkdir -p "$work"
  cp -n fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
  log="$dir/$t.log"
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$dir/fuzz/$t" -max_total_time="$share" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/$t-" "$work" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo "?")
  if [ "$rc" -eq 0 ]; then
    gr_log "$t: $runs executions in ${share} s, coverage $cov edges, corpus $(ls "$work" | wc -l) inputs, no crash"
  else
    gr_log "$t: FAILED after $runs executions (exit $rc); see $log and $dir/artifacts/"
    tail -40 "$log" >&2
    status=1
  fi
done
exit "$status"
