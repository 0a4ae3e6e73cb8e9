#!/usr/bin/env bash
# Installs what is missing, builds everything in build/ (Release) and runs every
# test with ctest. Exits non-zero on any failure. Safe to run again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"

gr_ensure_packages
gr_configure build -DCMAKE_BUILD_TYPE=Release \
  -DGREENREDUCE_BUILD_TESTS=ON -DGREENREDUCE_BUILD_BENCH=ON -DGREENREDUCE_BUILD_EXAMPLES=ON \
  "${GR_CUDA_ARGS[@]}"
gr_build build
cd build
ctest --output-on-failure --parallel "$(nproc)" "$@"
