#!/usr/bin/env bash
# Installs what is missing, builds a Release tree in build/ and runs the main
# job: the training demo (4 ranks over TCP, every mode, table + JSON + CSV +
# plot in build/demo/). Safe to run again.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$GR_ROOT"

gr_ensure_packages
gr_configure build -DCMAKE_BUILD_TYPE=Release \
  -DGREENREDUCE_BUILD_TESTS=ON -DGREENREDUCE_BUILD_BENCH=ON -DGREENREDUCE_BUILD_EXAMPLES=ON
gr_build build --target train_demo
mkdir -p build/demo
# The training demo: every mode side by side (examples/train/train_demo.cpp).
# Extra arguments go to train_demo (e.g. --modes sync,hybrid --epochs 5).
./build/examples/train/train_demo --json build/demo/train_demo.json \
  --csv build/demo/train_demo_ledger.csv --plot build/demo/train_demo "$@"
