#!/bin/sh
# Prepares the machine for tandemd: hugepages, hugetlbfs, bpffs (AF_XDP), NIC ports bound to
# vfio-pci, the control socket directory. tandemd.service runs it as ExecStartPre; it is safe to
# run by hand and to run again (it only changes what is missing). Settings come from the
# environment (systemd: /etc/default/tandem, see tandem.default):
#
#   TANDEM_CONFIG         the configuration file; must exist        (default /etc/tandem/tandem.yaml)
#   TANDEM_HUGEPAGES      2 MB hugepages to have reserved; 0 = leave as is          (default 1024)
#   TANDEM_HUGEPAGES_1G   1 GB hugepages to have reserved; 0 = leave as is             (default 0)
#   TANDEM_PCI_DEVICES    PCI addresses to bind to TANDEM_DRIVER, e.g. "0000:3b:00.0 0000:3b:00.1";
#                         empty = none (AF_XDP / af_packet, or bound at boot by driverctl)
#   TANDEM_DRIVER         the DPDK-compatible kernel driver                   (default vfio-pci)
#   TANDEM_SOCKET_DIR     the control socket's directory  (default /run/tandem; systemd creates it
#                         through RuntimeDirectory=, this covers runs outside systemd)
#
# Exit status: 0 ready, 1 something tandemd needs is missing (the message says what).
set -eu

config=${TANDEM_CONFIG:-/etc/tandem/tandem.yaml}
pages_2m=${TANDEM_HUGEPAGES:-1024}
pages_1g=${TANDEM_HUGEPAGES_1G:-0}
pci=${TANDEM_PCI_DEVICES:-}
driver=${TANDEM_DRIVER:-vfio-pci}
socket_dir=${TANDEM_SOCKET_DIR:-/run/tandem}

say() { echo "tandem-prepare: $*"; }
fail() { echo "tandem-prepare: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root"
[ -r "$config" ] || fail "no configuration at $config (set TANDEM_CONFIG in /etc/default/tandem)"

# Hugepages. Reserving at run time can fall short on a fragmented machine: reserve them at boot
# (kernel command line, docs/deploy.md) and this step only checks.
reserve() {  # size_kb wanted
  dir=/sys/kernel/mm/hugepages/hugepages-$1kB
  [ "$2" -gt 0 ] || return 0
  [ -d "$dir" ] || fail "the kernel has no $1 kB hugepages"
  have=$(cat "$dir/nr_hugepages")
  if [ "$have" -lt "$2" ]; then
    echo "$2" >"$dir/nr_hugepages" 2>/dev/null || true
    have=$(cat "$dir/nr_hugepages")
  fi
  if [ "$have" -lt "$2" ]; then
    fail "only $have of $2 hugepages of $1 kB could be reserved; reserve them at boot (docs/deploy.md)"
  fi
  say "$have hugepages of $1 kB reserved"
}
reserve 2048 "$pages_2m"
reserve 1048576 "$pages_1g"

mount_if_missing() {  # dir fstype [options]; returns 1 if it cannot
  mountpoint -q "$1" 2>/dev/null && return 0
  mkdir -p "$1" 2>/dev/null || true
  mount -t "$2" ${3:+-o "$3"} nodev "$1" 2>/dev/null || return 1
  say "mounted $2 on $1"
}
if [ "$pages_2m" -gt 0 ] || [ "$pages_1g" -eq 0 ]; then
  mount_if_missing /dev/hugepages hugetlbfs || fail "cannot mount hugetlbfs on /dev/hugepages"
fi
if [ "$pages_1g" -gt 0 ]; then
  mount_if_missing /dev/hugepages1G hugetlbfs pagesize=1G || fail "cannot mount hugetlbfs (1G) on /dev/hugepages1G"
fi
# bpffs: libxdp pins its AF_XDP dispatcher there; without it AF_XDP still works (one program).
mount_if_missing /sys/fs/bpf bpf || say "no bpffs on /sys/fs/bpf (AF_XDP falls back to a single XDP program)"

# NIC ports for the PCI poll-mode drivers.
if [ -n "$pci" ]; then
  modprobe "$driver" 2>/dev/null || modprobe "$(echo "$driver" | tr - _)" || fail "cannot load $driver"
  devbind=$(command -v dpdk-devbind.py || command -v dpdk-devbind || true)
  for dev in $pci; do
    [ -e "/sys/bus/pci/devices/$dev" ] || fail "no PCI device $dev (see dpdk-devbind.py --status)"
    current=$(basename "$(readlink -f "/sys/bus/pci/devices/$dev/driver" 2>/dev/null)" 2>/dev/null || true)
    if [ "$current" = "$driver" ]; then
      say "$dev already uses $driver"
      continue
    fi
    if [ -n "$devbind" ]; then
      "$devbind" --bind="$driver" "$dev" || fail "dpdk-devbind could not bind $dev to $driver (is its interface up?)"
    else
      echo "$driver" >"/sys/bus/pci/devices/$dev/driver_override"
      [ -n "$current" ] && echo "$dev" >"/sys/bus/pci/devices/$dev/driver/unbind"
      echo "$dev" >/sys/bus/pci/drivers_probe
    fi
    say "$dev bound to $driver (was ${current:-unbound})"
  done
fi

mkdir -p "$socket_dir"
chmod 0750 "$socket_dir"
say "ready (config $config)"
