#!/usr/bin/env bash
# Installs what is missing, builds a Release tree in build/ and runs the main
# job. Safe to run again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"

gr_ensure_packages
gr_configure build -DCMAKE_BUILD_TYPE=Release \
  -DGREENREDUCE_BUILD_TESTS=ON -DGREENREDUCE_BUILD_BENCH=ON -DGREENREDUCE_BUILD_EXAMPLES=ON \
  "${GR_CUDA_ARGS[@]}"
gr_build build --target 01_hello
./build/examples/01_hello "$@"
