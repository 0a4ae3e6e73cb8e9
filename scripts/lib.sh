# Shared by scripts/demo.sh, scripts/test.sh and scripts/sanitize.sh: install
# what the project needs from Debian's archive, then configure and build.
# Sourced, not run.

GR_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Every Debian package the project needs, build and run. One list, one place.
GR_PACKAGES=(
  cmake ninja-build g++ make pkg-config
  libboost-dev libxsimd-dev xtl-dev catch2 libbenchmark-dev
  zlib1g-dev libeigen3-dev dataset-fashion-mnist
  iproute2 libgloo-dev gnuplot-nox
  libopenmpi-dev openmpi-bin
)

# CUDA, when nvcc is found (it is not a Debian package of GR_PACKAGES: the
# toolkit and NCCL come from NVIDIA): compile for one architecture only, to
# keep build time down where the code is built but not run (no GPU). Override
# with GREENREDUCE_CUDA_ARCHITECTURES="80;90" for a machine that runs it.
GR_CUDA_ARGS=(-DCMAKE_CUDA_ARCHITECTURES="${GREENREDUCE_CUDA_ARCHITECTURES:-90}")

gr_log() { printf '[greenreduce] %s\n' "$*" >&2; }

# Installs the packages of GR_PACKAGES that are missing (as root), or prints the
# exact command to run and fails (as anyone else).
gr_ensure_packages() {
  local missing=() p
  for p in "${GR_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    gr_log "missing Debian packages; install them with:"
    printf 'sudo apt-get install -y --no-install-recommends %s\n' "${missing[*]}" >&2
    exit 1
  fi
  gr_log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# gr_configure BUILD_DIR [cmake args...]: configures once, reconfigures only
# when the arguments change, so a second run is quick.
gr_configure() {
  local dir="$1"; shift
  local args_file="$dir/.greenreduce-configure-args"
  local want="$*"
  if [ -f "$dir/CMakeCache.txt" ] && [ -f "$args_file" ] && [ "$(cat "$args_file")" = "$want" ]; then
    return 0
  fi
  cmake -S "$GR_ROOT" -B "$dir" -G Ninja "$@" >/dev/null
  printf '%s' "$want" > "$args_file"
}

gr_build() {
  local dir="$1"; shift
  cmake --build "$dir" --parallel "$(nproc)" "$@"
}
