#!/usr/bin/env bash
# Installs what is missing, builds a Release tree in build/ (or
# $GREENREDUCE_BUILD_DIR) and runs the main job: the training demo (4 workers
# over TCP plus a parameter-server process, every mode, table + JSON + CSV +
# plot in BUILD/demo/). Safe to run again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"
build="${GREENREDUCE_BUILD_DIR:-build}"

gr_ensure_packages
# The demo needs no CUDA: skipping the CUDA toolchain probe saves minutes of configure.
gr_configure "$build" -DCMAKE_BUILD_TYPE=Release -DGREENREDUCE_WITH_CUDA=OFF \
  -DGREENREDUCE_BUILD_TESTS=ON -DGREENREDUCE_BUILD_BENCH=ON -DGREENREDUCE_BUILD_EXAMPLES=ON
gr_build "$build" --target train_demo
mkdir -p "$build/demo"
# The training demo: every mode side by side (examples/train/train_demo.cpp).
# Extra arguments go to train_demo (e.g. --modes sync,hybrid --epochs 5).
"./$build/examples/train/train_demo" --json "$build/demo/train_demo.json" \
  --csv "$build/demo/train_demo_ledger.csv" --plot "$build/demo/train_demo" "$@"
