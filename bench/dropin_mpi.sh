#!/usr/bin/env bash
# The drop-in benchmark: an unmodified MPI_Allreduce program
# (examples/dropin/allreduce_mpi.c) on NP ranks, plain Open MPI against the
# same binary with libgreenreduce_mpi.so preloaded (GREENREDUCE_CODEC),
# interleaved in one script so both see the same machine. Prints the median
# over RUNS runs of each run's median time per call, with the spread (min and
# max of those medians), the wire bytes per call and rank that the interposer
# counted, and the machine's load before and after.
#
#   bench/dropin_mpi.sh [BUILD_DIR] [NP] [COUNT] [CALLS] [RUNS] [CODEC]
#   defaults:            build      4    16777216 (64 MiB of floats) 5  3  int8
# BTLS="self,tcp self,vader" picks Open MPI's transports (loopback TCP, shared memory);
# GR_ENV="GREENREDUCE_SEGMENT_BYTES=4MiB ..." adds variables to the interposer's runs.
set -euo pipefail
build="${1:-build}" np="${2:-4}" count="${3:-16777216}" calls="${4:-5}" runs="${5:-3}"
codec="${6:-int8}"
btls="${BTLS:-self,tcp self,vader}"
exe="$build/examples/dropin/allreduce_mpi"
lib="$(cd "$build/src" && pwd)/libgreenreduce_mpi.so"
[ -x "$exe" ] && [ -f "$lib" ] || { echo "build $exe and $lib first" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
spread() { sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%s..%s", lo, hi}'; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "np=$np count=$count ($((count * 4 / 1048576)) MiB of floats) calls/run=$calls runs=$runs codec=$codec ${GR_ENV:-}"
echo
printf '| %-10s | %-12s | %-22s | %-26s | %-14s |\n' "MPI btl" "allreduce" "median s/call (spread)" "wire bytes sent/rank/call" "max abs error"
printf '|%s|%s|%s|%s|%s|\n' "------------" "--------------" "------------------------" "----------------------------" "----------------"
for btl in $btls; do
  run=(mpirun -np "$np" --oversubscribe --bind-to none --mca btl "$btl")
  [ "$btl" = "${btl#*tcp}" ] || run+=(--mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
  : > "$tmp/plain"; : > "$tmp/gr"
  for ((r = 0; r < runs; ++r)); do
    "${run[@]}" "$exe" "$count" "$calls" > "$tmp/out" 2>&1
    grep -o 'median [0-9.]*' "$tmp/out" | cut -d' ' -f2 >> "$tmp/plain"
    perr="$(grep -o 'error| [0-9.e+-]*' "$tmp/out" | cut -d' ' -f2)"
    extra=()
    for v in ${GR_ENV:-}; do extra+=(-x "$v"); done
    "${run[@]}" -x LD_PRELOAD="$lib" -x GREENREDUCE_CODEC="$codec" -x GREENREDUCE_REPORT=1 "${extra[@]}" \
      "$exe" "$count" "$calls" > "$tmp/out" 2>&1
    grep -o 'median [0-9.]*' "$tmp/out" | cut -d' ' -f2 >> "$tmp/gr"
    gerr="$(grep -o 'error| [0-9.e+-]*' "$tmp/out" | cut -d' ' -f2)"
    line="$(grep 'report of rank 0 .*raw_bytes=' "$tmp/out")"
    sent="$(sed 's/.*bytes_sent=\([0-9]*\).*/\1/' <<< "$line")"
    raw="$(sed 's/.*raw_bytes=\([0-9]*\).*/\1/' <<< "$line")"
  done
  printf '| %-10s | %-12s | %-22s | %-26s | %-14s |\n' "$btl" "plain MPI" \
    "$(median < "$tmp/plain") ($(spread < "$tmp/plain"))" \
    "$((raw / calls)) (ring lower bound)" "$perr"
  printf '| %-10s | %-12s | %-22s | %-26s | %-14s |\n' "$btl" "greenreduce" \
    "$(median < "$tmp/gr") ($(spread < "$tmp/gr"))" \
    "$((sent / calls)) (counted)" "$gerr"
done
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "plain MPI's wire bytes are not observable from outside Open MPI: the figure is"
echo "2(p-1)/p x 4 x COUNT, what any uncompressed bandwidth-optimal allreduce sends per rank."
