#!/usr/bin/env bash
# bench/netns.sh up N RATE | down [N] | status
#
# N ranks as N hosts on one switched, shaped LAN, on one machine (root):
#   - network namespaces gr0..gr{N-1}, one per rank, each with lo and eth0;
#   - a bridge br0 inside its own namespace "grbr" (the switch), so nothing is
#     added to the root namespace: no route, address or interface there;
#   - a veth pair per rank: eth0 in grI <-> portI in grbr, enslaved to br0;
#   - addresses 10.77.0.(I+1)/24, only inside the namespaces;
#   - each host's egress (eth0 in grI) shaped with tc tbf at RATE, so each
#     link is RATE in each direction, like a host NIC on a switch port.
# tbf choices: burst = 4 ms of traffic at RATE, at least 64 KiB (one GSO/TSO
# super-packet of veth must fit, or tbf drops it); latency 20 ms bounds the
# queue (about RATE * 20 ms of data) like a shallow switch buffer. Without
# shaping, veth moves data at memory speed and every result is CPU-bound.
#
# Idempotent: `up` creates what is missing and re-applies addresses and
# shaping (so `up 4 100mbit` after `up 4 1gbit` just reshapes); `down`
# removes every gr* namespace this script made. Needs iproute2 and root.
set -euo pipefail

die() { echo "netns.sh: $*" >&2; exit 1; }
usage() { echo "usage: $0 up N RATE (e.g. up 4 1gbit) | down | status" >&2; exit 2; }

# RATE in tc syntax -> bytes per second (bit, kbit, mbit, gbit, tbit; bps = bytes).
rate_bytes() {
  local r="${1,,}" n u
  [[ "$r" =~ ^([0-9]+)([a-z]*)$ ]] || die "RATE '$1' is not a number with a tc unit (e.g. 1gbit)"
  n="${BASH_REMATCH[1]}"; u="${BASH_REMATCH[2]}"
  case "$u" in
    bit|"") echo $(( n / 8 )) ;;
    kbit) echo $(( n * 1000 / 8 )) ;;
    mbit) echo $(( n * 1000000 / 8 )) ;;
    gbit) echo $(( n * 1000000000 / 8 )) ;;
    tbit) echo $(( n * 1000000000000 / 8 )) ;;
    bps) echo "$n" ;;
    kbps) echo $(( n * 1000 )) ;;
    mbps) echo $(( n * 1000000 )) ;;
    gbps) echo $(( n * 1000000000 )) ;;
    *) die "RATE '$1': unknown unit '$u' (use bit, kbit, mbit, gbit or tbit)" ;;
  esac
}

ns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

up() {
  local n="$1" rate="$2" bps burst i ns
  [[ "$n" =~ ^[0-9]+$ ]] && (( n >= 1 && n <= 250 )) || die "N must be 1..250, got '$n'"
  bps=$(rate_bytes "$rate")
  (( bps > 0 )) || die "RATE '$rate' is zero"
  burst=$(( bps / 250 )); (( burst < 65536 )) && burst=65536

  ns_exists grbr || ip netns add grbr
  ip -n grbr link show br0 >/dev/null 2>&1 || ip -n grbr link add br0 type bridge
  ip -n grbr link set lo up
  ip -n grbr link set br0 up
  for (( i = 0; i < n; i++ )); do
    ns="gr$i"
    ns_exists "$ns" || ip netns add "$ns"
    if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
      ip -n grbr link del "port$i" 2>/dev/null || true
      ip link add "grv$i" netns "$ns" type veth peer name "port$i" netns grbr
      ip -n "$ns" link set "grv$i" name eth0
    fi
    ip -n grbr link set "port$i" master br0
    ip -n grbr link set "port$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr replace "10.77.0.$(( i + 1 ))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip netns exec "$ns" tc qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 20ms
  done
  echo "up: $n hosts gr0..gr$(( n - 1 )) at 10.77.0.1..10.77.0.$n on bridge br0 (netns grbr)," \
       "egress $rate each (tbf burst $burst B, latency 20ms)"
  echo "run rank I inside its host, e.g. with rank 0 serving the store on 10.77.0.1:"
  for (( i = 0; i < n && i < 2; i++ )); do
    echo "  ip netns exec gr$i env RANK=$i WORLD_SIZE=$n MASTER_ADDR=10.77.0.1 MASTER_PORT=29500 ./build/bench/greenreduce_bench_gloo --bytes 64M &"
  done
  (( n > 2 )) && echo "  ... up to gr$(( n - 1 ))"
  echo "tear down with: $0 down"
}

down() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^gr([0-9]+|br)$' || true); do
    ip netns del "$ns"
  done
  echo "down: removed the gr* namespaces"
}

status() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E '^gr[0-9]+$' | sort -V || true); do
    printf '%s: %s  %s\n' "$ns" \
      "$(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')" \
      "$(ip netns exec "$ns" tc qdisc show dev eth0 2>/dev/null | head -n1)"
  done
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
command -v ip >/dev/null && command -v tc >/dev/null || die "needs iproute2 (ip, tc)"
case "${1:-}" in
  up) [ $# -eq 3 ] || usage; up "$2" "$3" ;;
  down) down ;;
  status) status ;;
  *) usage ;;
esac
