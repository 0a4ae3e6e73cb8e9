#!/usr/bin/env bash
# The sanitizer pass: builds the tests with AddressSanitizer and
# UndefinedBehaviorSanitizer in build-asan/ and runs them. Any report fails
# the run. `scripts/sanitize.sh thread` builds build-tsan/ with ThreadSanitizer
# and runs the transport, collective and parameter-server tests under it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"

kind="${1:-address}"
# ThreadSanitizer covers the families that run threads and sockets against
# each other (transports, collectives, parameter server); the rest is
# single-threaded and gains nothing but build time.
targets=()
select=()
case "$kind" in
  address) dir=build-asan; san=address,undefined ;;
  thread)
    dir=build-tsan; san=thread
    targets=(--target transport_inproc_test transport_tcp_test transport_noauth_test collective_test
             collective_tcp_test ps_test ps_tcp_test)
    select=(--label-regex 'transport|collective|ps') ;;
  *) gr_log "unknown sanitizer '$kind' (expected address or thread)"; exit 2 ;;
esac
shift || true

gr_ensure_packages
gr_configure "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS=-O1 \
  -DGREENREDUCE_SANITIZE="$san" -DGREENREDUCE_BUILD_TESTS=ON \
  -DGREENREDUCE_BUILD_BENCH=OFF -DGREENREDUCE_BUILD_EXAMPLES=ON -DGREENREDUCE_WITH_CUDA=OFF
gr_build "$dir" "${targets[@]}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
cd "$dir"
# The package tests check installation, not memory safety: skip them here.
# The chaos test runs in scripts/test.sh (Release); here it would only be slow.
ctest --output-on-failure --parallel "$(nproc)" "${select[@]}" \
  --label-exclude 'package|nosan|chaos' "$@"
