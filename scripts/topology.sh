#!/usr/bin/env bash
# A test network for tandem in network namespaces: clients, tandemd and blue/green backends
# on one Linux bridge, L2 direct server return. Used by the end-to-end tests, the demo and
# docs/quickstart.md.
#
#   scripts/topology.sh up     [--prefix P] [--clients N]   build it (and start the backends)
#   scripts/topology.sh down   [--prefix P]                 remove everything (idempotent)
#   scripts/topology.sh lb-start [--prefix P] --config FILE [--socket PATH] [--tandemd BIN]
#                              [--mode auto|af_xdp|af_packet] [--probe-vip IP] [--log FILE]
#                              [-- extra tandemd options]
#                                                       start tandemd in the lb namespace;
#                                                       prints the PMD it ended up using
#   scripts/topology.sh lb-stop [--prefix P]                stop that tandemd
#   scripts/topology.sh info   [--prefix P]                 key=value description
#   scripts/topology.sh [--prefix P] exec ROLE CMD...       run CMD in P-ROLE (client, lb, blue1...)
#
# Layout (prefix "tnd"), all in 10.0.0.0/8 on one segment:
#   tnd-sw        bridge br0, one port per namespace below
#   tnd-client    eth0: 10.77.1.1 .. 10.77.1.N (N=50), route 198.51.100.0/24 on-link (ARP to tandemd)
#   tnd-lb        eth0: no address, ip_forward=0, MAC 02:00:00:00:00:fe; tandemd attaches here
#   tnd-blue1..3  eth0: 10.1.0.1..3,  MAC 02:00:00:00:01:01..03
#   tnd-green1..3 eth0: 10.2.0.1..3,  MAC 02:00:00:00:02:01..03
#   tnd-bluedns   eth0: 10.1.0.53,    MAC 02:00:00:00:01:35
#   tnd-greendns  eth0: 10.2.0.53,    MAC 02:00:00:00:02:35
# (the backend addresses and MACs are those of docs/examples/demo.yaml)
# Every backend holds the VIPs 198.51.100.10, .11 and .53 on lo (arp_ignore=1, arp_announce=2)
# and runs tests/e2e/identity_server.py: TCP 80 and 8080, UDP 53, stats on TCP 9999.
# Only addresses inside these namespaces are used; the host's network is not touched.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

VIPS=(198.51.100.10 198.51.100.11 198.51.100.53)
LB_MAC=02:00:00:00:00:fe
CLIENT_MAC=02:00:00:00:00:c1
# role pool address mac
BACKENDS=(
  "blue1 blue 10.1.0.1 02:00:00:00:01:01"
  "blue2 blue 10.1.0.2 02:00:00:00:01:02"
  "blue3 blue 10.1.0.3 02:00:00:00:01:03"
  "green1 green 10.2.0.1 02:00:00:00:02:01"
  "green2 green 10.2.0.2 02:00:00:00:02:02"
  "green3 green 10.2.0.3 02:00:00:00:02:03"
  "bluedns blue 10.1.0.53 02:00:00:00:01:35"
  "greendns green 10.2.0.53 02:00:00:00:02:35"
)

prefix=tnd
clients=50
# Global options may come before or after the command.
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=${2:-}; shift 2 ;;
    --clients) clients=${2:-}; shift 2 ;;
    *) break ;;
  esac
done
cmd=${1:-}
[ $# -gt 0 ] && shift

die() { echo "topology.sh: $*" >&2; exit 1; }
log() { echo "topology.sh: $*" >&2; }

usage() { sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

state_dir() { echo "/run/tandem-topology/$prefix"; }
ns() { echo "$prefix-$1"; }
nsx() { local n; n=$(ns "$1"); shift; ip netns exec "$n" "$@"; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (network namespaces)"
}

# Turns off the offloads that leave packets with partial checksums or oversized segments:
# af_packet/AF_XDP hand tandemd the raw frame, and tandemd forwards it untouched.
no_offloads() {
  local n=$1 dev=$2
  ip netns exec "$n" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null 2>&1 || true
  ip netns exec "$n" ethtool -K "$dev" tx-checksumming off rx-checksumming off >/dev/null 2>&1 || true
}

base_sysctls() {
  local n=$1
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null
  ip netns exec "$n" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 >/dev/null
  ip netns exec "$n" ip link set lo up
}

# Creates namespace ROLE with eth0 <-> p-ROLE (in the switch namespace, on br0).
add_node() {
  local role=$1 mac=$2 n port
  n=$(ns "$role")
  port="p-$role"
  ip netns add "$n"
  base_sysctls "$n"
  ip link add eth0 netns "$n" address "$mac" type veth peer name "$port" netns "$(ns sw)"
  ip -n "$(ns sw)" link set "$port" master br0
  no_offloads "$(ns sw)" "$port"
  no_offloads "$n" eth0
  ip -n "$(ns sw)" link set "$port" up
  ip -n "$n" link set eth0 up
}

our_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix}-(sw|client|lb|blue[0-9]*|green[0-9]*|bluedns|greendns)$" || true
}

# True while PID runs. A zombie counts as gone: our background processes outlive this script,
# and where PID 1 does not reap orphans (some containers) they stay zombies after exiting.
alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$f"
}

do_down() {
  require_root
  local d n pid
  d=$(state_dir)
  stop_pidfile "$d/tandemd.pid"
  if [ -d "$d" ]; then
    for f in "$d"/*.pid; do [ -e "$f" ] && stop_pidfile "$f"; done
  fi
  # Anything else still running inside our namespaces was started by us (tests, demo).
  for n in $(our_namespaces); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  for n in $(our_namespaces); do
    for _ in $(seq 1 20); do [ -z "$(ip netns pids "$n" 2>/dev/null)" ] && break; sleep 0.1; done
    for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$n" 2>/dev/null || true
  done
  rm -rf "$d"
  rm -rf "/var/run/dpdk/$prefix-tandemd"
}

do_up() {
  require_root
  command -v ip >/dev/null || die "needs iproute2"
  command -v python3 >/dev/null || die "needs python3"
  if [ "$clients" -lt 1 ] || [ "$clients" -gt 250 ]; then die "--clients must be 1..250"; fi
  if [ -n "$(our_namespaces)" ]; then
    log "removing the previous '$prefix' topology"
    do_down
  fi
  # On any failure below (or Ctrl-C), leave nothing behind.
  up_done=0
  trap 'if [ "$up_done" = 0 ]; then log "setup failed, removing everything"; do_down; fi' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local d
  d=$(state_dir)
  mkdir -p "$d"

  ip netns add "$(ns sw)"
  base_sysctls "$(ns sw)"
  ip -n "$(ns sw)" link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
  ip -n "$(ns sw)" link set br0 up

  # Client: many source addresses on one interface (drain resets to clients go to the last
  # source MAC tandemd saw, so every client must sit behind one MAC, like behind a router).
  add_node client "$CLIENT_MAC"
  local i
  for i in $(seq 1 "$clients"); do
    ip -n "$(ns client)" addr add "10.77.1.$i/8" dev eth0
  done
  ip -n "$(ns client)" route add 198.51.100.0/24 dev eth0   # on-link: ARP for the VIPs
  nsx client sysctl -qw net.ipv4.ip_local_port_range="20000 60999"

  # Load balancer: no address, no forwarding; tandemd owns the interface.
  add_node lb "$LB_MAC"
  nsx lb sysctl -qw net.ipv4.ip_forward=0
  nsx lb sysctl -qw net.ipv4.conf.all.arp_ignore=8 >/dev/null 2>&1 || true

  local spec role pool addr mac vip
  for spec in "${BACKENDS[@]}"; do
    read -r role pool addr mac <<<"$spec"
    add_node "$role" "$mac"
    ip -n "$(ns "$role")" addr add "$addr/8" dev eth0
    for vip in "${VIPS[@]}"; do ip -n "$(ns "$role")" addr add "$vip/32" dev lo; done
    # Do not answer ARP for the VIPs (they are on lo) and never use them as ARP source.
    nsx "$role" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
      net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
  done

  # The backends' servers.
  for spec in "${BACKENDS[@]}"; do
    read -r role pool addr mac <<<"$spec"
    rm -f "$d/$role.ready"
    local vipargs=()
    for vip in "${VIPS[@]}"; do vipargs+=(--vip "$vip"); done
    ip netns exec "$(ns "$role")" python3 "$here/tests/e2e/identity_server.py" \
      --pool "$pool" --address "$addr" "${vipargs[@]}" --ready-file "$d/$role.ready" \
      >"$d/$role.log" 2>&1 </dev/null &
    echo $! >"$d/$role.pid"
  done
  for spec in "${BACKENDS[@]}"; do
    read -r role _ <<<"$spec"
    for _ in $(seq 1 100); do [ -s "$d/$role.ready" ] && break; sleep 0.05; done
    [ -s "$d/$role.ready" ] || { cat "$d/$role.log" >&2; die "backend $role did not start"; }
  done
  up_done=1
  trap - EXIT INT TERM
  log "up: prefix $prefix, $clients client addresses 10.77.1.1-$clients in $(ns client), tandemd goes in $(ns lb) (eth0), backends: ${#BACKENDS[@]}"
}

do_info() {
  echo "prefix=$prefix"
  echo "client_ns=$(ns client)"
  echo "lb_ns=$(ns lb)"
  echo "lb_iface=eth0"
  echo "lb_mac=$LB_MAC"
  echo "client_mac=$CLIENT_MAC"
  echo "client_addresses=10.77.1.1-10.77.1.$clients"
  echo "vips=${VIPS[*]}"
  local spec role pool addr mac
  for spec in "${BACKENDS[@]}"; do
    read -r role pool addr mac <<<"$spec"
    echo "backend=$role $pool $addr $mac $(ns "$role")"
  done
  echo "state_dir=$(state_dir)"
}

# Waits until tandemd answers ARP for VIP on behalf of the client namespace.
arp_probe() {
  local vip=$1 i
  ip -n "$(ns client)" neigh flush dev eth0 >/dev/null 2>&1 || true
  for i in $(seq 1 20); do
    # Any datagram makes the kernel resolve the VIP; tandemd drops it (no listener on port 9).
    nsx client python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'probe', ('$vip', 9))" 2>/dev/null || true
    sleep 0.1
    if ip -n "$(ns client)" neigh show "$vip" dev eth0 2>/dev/null | grep -qi "lladdr $LB_MAC"; then
      return 0
    fi
  done
  return 1
}

do_lb_start() {
  require_root
  local config="" socket="" bin="${TANDEMD:-}" mode=auto probe_vip=198.51.100.10 logf="" extra=()
  while [ $# -gt 0 ]; do
    case $1 in
      --config) config=$2; shift 2 ;;
      --socket) socket=$2; shift 2 ;;
      --tandemd) bin=$2; shift 2 ;;
      --mode) mode=$2; shift 2 ;;
      --probe-vip) probe_vip=$2; shift 2 ;;
      --log) logf=$2; shift 2 ;;
      --prefix) prefix=$2; shift 2 ;;
      --) shift; extra=("$@"); break ;;
      *) die "lb-start: unknown option $1" ;;
    esac
  done
  [ -n "$config" ] || die "lb-start: --config FILE is required"
  config=$(cd "$(dirname "$config")" && pwd)/$(basename "$config")
  [ -n "$bin" ] || bin=$here/build/tandemd
  [ -x "$bin" ] || die "lb-start: no tandemd at $bin (build it, or pass --tandemd)"
  our_namespaces | grep -qx "$(ns lb)" || die "lb-start: no topology '$prefix' (run up first)"
  local d
  d=$(state_dir)
  mkdir -p "$d"
  [ -n "$socket" ] || socket=$d/tandemd.sock
  [ -n "$logf" ] || logf=$d/tandemd.log
  stop_pidfile "$d/tandemd.pid"
  # bpffs for AF_XDP: libxdp/libbpf look for it at /sys/fs/bpf. `ip netns exec` gives the
  # process its own /sys, so it is mounted again inside (that mount dies with the process).
  if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true; fi

  local modes=()
  case $mode in
    auto) modes=(af_xdp af_packet) ;;
    af_xdp|af_packet) modes=("$mode") ;;
    *) die "lb-start: --mode must be auto, af_xdp or af_packet" ;;
  esac
  local m vdev pid ok
  for m in "${modes[@]}"; do
    if [ "$m" = af_xdp ]; then
      vdev="net_af_xdp0,iface=eth0,start_queue=0,queue_count=1"
    else
      vdev="net_af_packet0,iface=eth0,qpairs=1"
    fi
    rm -f "$socket"
    : >"$logf"
    ip netns exec "$(ns lb)" sh -c '
      mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
      exec "$@"' tandemd "$bin" -l 0-1 --no-huge -m 512 --no-pci \
      --file-prefix "$prefix-tandemd" --log-level=pmd.net.af_xdp:info --vdev "$vdev" \
      -- --config "$config" --socket "$socket" "${extra[@]}" >>"$logf" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$d/tandemd.pid"
    ok=0
    for _ in $(seq 1 150); do
      alive "$pid" || break
      if [ -S "$socket" ]; then ok=1; break; fi
      sleep 0.1
    done
    if [ $ok = 1 ] && arp_probe "$probe_vip"; then
      echo "$m" >"$d/tandemd.mode"
      log "tandemd (pid $pid) runs in $(ns lb) with $m ($vdev), socket $socket, log $logf"
      echo "$m"
      return 0
    fi
    log "tandemd with $m did not come up (see below); $([ "$m" = af_xdp ] && [ ${#modes[@]} -gt 1 ] && echo 'falling back to af_packet')"
    tail -n 15 "$logf" >&2 || true
    stop_pidfile "$d/tandemd.pid"
  done
  die "lb-start: tandemd did not start"
}

# For exec, everything after ROLE is the command, untouched.
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --) args+=("$@"); break ;;
    *)
      if [ "$cmd" = exec ]; then args+=("$@"); break; fi
      args+=("$1"); shift ;;
  esac
done
[[ $prefix =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "--prefix must be 1-8 lower-case letters/digits, starting with a letter"

case $cmd in
  up) do_up ;;
  down) do_down; log "down: nothing of '$prefix' left" ;;
  info) do_info ;;
  lb-start) do_lb_start "${args[@]}" ;;
  lb-stop) require_root; stop_pidfile "$(state_dir)/tandemd.pid" ;;
  exec)
    [ ${#args[@]} -ge 2 ] || die "exec ROLE CMD..."
    role=${args[0]}
    exec ip netns exec "$(ns "$role")" "${args[@]:1}" ;;
  -h|--help|help|"") usage ;;
  *) die "unknown command '$cmd' (up, down, lb-start, lb-stop, info, exec)" ;;
esac
