#!/usr/bin/env bash
# Installs everything tandem's build and tests need on Debian 12, reserves hugepages, builds.
# Idempotent: safe to run again. The only place in the project that installs packages.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${TANDEM_BUILD_DIR:-$here/build}

packages=(
  build-essential pkg-config meson ninja-build python3 python3-pyelftools
  dpdk dpdk-dev libdpdk-dev libpcap-dev libnuma-dev
  libbpf-dev libxdp-dev clang llvm
  libboost-program-options-dev libspdlog-dev libfmt-dev libyaml-cpp-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  iproute2 procps util-linux kmod ethtool tcpdump socat psmisc
  prometheus valgrind lua5.4
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs packages and reserves hugepages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# 2 MB hugepages for tandemd and the throughput benchmark (perf/bench_throughput.py --huge needs
# ~2 GB for 1 M flows); the tests use --no-huge and do not need them. Best effort.
want_pages=${TANDEM_HUGEPAGES:-1200}
hp=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ -w "$hp" ] && [ "$(cat "$hp")" -lt "$want_pages" ]; then
  echo "$want_pages" > "$hp" || true
fi
if ! mountpoint -q /dev/hugepages 2>/dev/null; then
  mkdir -p /dev/hugepages
  mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true
fi
# bpffs for AF_XDP (libxdp pins its programs there).
if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi

if [ ! -f "$build_dir/build.ninja" ]; then
  meson setup "$build_dir" "$here"
fi
ninja -C "$build_dir"
echo "setup.sh: built in $build_dir"
