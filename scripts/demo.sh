#!/usr/bin/env bash
# tandem in two minutes: a blue/green release with real TCP clients, narrated.
#
#   sudo scripts/demo.sh
#
# Builds if needed (scripts/setup.sh), builds a network in namespaces (scripts/topology.sh:
# 50 client addresses, tandemd on its own veth, 3 blue + 3 green backends that answer with their
# identity), starts tandemd with a blue and a green pool, starts steady client traffic and walks
# through a release: status, preview, canary 10 %, switch, drain, rollback. The clients print
# one line per second (open connections per colour, where new connections land, resets, the
# longest gap between replies). Everything is removed at the end, also on Ctrl-C or failure.
#
# Environment: TANDEM_BUILD_DIR (default build), TANDEM_DEMO_PMD (auto|af_xdp|af_packet),
# TANDEM_DEMO_PAUSE (seconds to watch each step, default 6).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${TANDEM_BUILD_DIR:-$here/build}
pmd=${TANDEM_DEMO_PMD:-auto}
pause=${TANDEM_DEMO_PAUSE:-6}
prefix=demo
topo=$here/scripts/topology.sh
work=""
traffic_pid=""

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root (it builds network namespaces): sudo $0" >&2
  exit 1
fi

bold="" plain=""
if [ -t 1 ]; then bold=$(tput bold 2>/dev/null || true); plain=$(tput sgr0 2>/dev/null || true); fi
step() { echo; echo "${bold}==> $*${plain}"; }
say() { echo "    $*"; }
# Commands run in the background and are waited for, so that Ctrl-C/TERM reach the trap at once.
run() { echo "${bold}\$ $*${plain}"; "$@" & wait $!; }
pause_for() { sleep "$1" & wait $!; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$traffic_pid" ]; then kill "$traffic_pid" 2>/dev/null || true; wait "$traffic_pid" 2>/dev/null || true; fi
  "$topo" down --prefix "$prefix" >/dev/null 2>&1 || true
  [ -n "$work" ] && rm -rf "$work"
  if [ $rc -eq 0 ]; then
    echo; echo "${bold}Done.${plain} Everything the demo started is stopped and its namespaces are gone."
  else
    echo; echo "demo.sh: stopped (exit $rc); everything it started is removed." >&2
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ------------------------------------------------------------------------------------
tandemd=$build_dir/tandemd
tandemctl_bin=$build_dir/control/tandemctl
if [ ! -x "$tandemd" ] || [ ! -x "$tandemctl_bin" ]; then
  step "Building (scripts/setup.sh: packages, hugepages, meson + ninja)"
  TANDEM_BUILD_DIR=$build_dir "$here/scripts/setup.sh"
else
  ninja -C "$build_dir" tandemd control/tandemctl >/dev/null & wait $!
fi

work=$(mktemp -d /tmp/tandem-demo.XXXXXX)
sock=$work/tandemd.sock
export TANDEM_SOCKET=$sock
tandemctl() { "$tandemctl_bin" "$@"; }

# Live per-colour counts as tandemd sees them.
cat >"$work/counts.py" <<'EOF'
import json, sys
s = json.load(sys.stdin)["services"][0]
d = s["drain"]
parts = []
for c in ("blue", "green"):
    role = "active" if s["active"] == c else ("draining" if d and d["colour"] == c else "idle")
    parts.append(f"{c} ({role}) {s['colours'][c]['live_flows']} live flows")
canary = s["canary"]
extra = f"; canary {canary['percent']:g}% -> {canary['to']}" if canary["percent"] else ""
print("    tandemd: " + ", ".join(parts) + extra)
EOF
counts() { "$tandemctl_bin" --json status web | python3 "$work/counts.py"; }

watch_for() {  # seconds: let the client lines scroll, with tandemd's view every 3 s
  local left=$1
  while [ "$left" -gt 0 ]; do
    local n=$(( left < 3 ? left : 3 ))
    pause_for "$n"
    left=$(( left - n ))
    counts
  done
}

cat >"$work/demo.yaml" <<'EOF'
# The demo's configuration: docs/examples/demo.yaml plus a preview listener and short timeouts
# so that a drain finishes while you watch. Field reference: docs/config.md.
dataplane:
  flow_table_size: 65536
  timeouts: {tcp_syn: 10s, tcp_established: 300s, tcp_closing: 2s, udp: 30s}
services:
  - name: web
    vip: 198.51.100.10
    protocol: tcp
    port: 80
    forwarding: l2
    maglev_size: 1009
    active: blue
    preview: {port: 8080}        # 198.51.100.10:8080 always reaches the idle colour
    drain: {timeout: 60s, on_timeout: keep}
    pools:
      blue:
        - {address: 10.1.0.1, mac: "02:00:00:00:01:01"}
        - {address: 10.1.0.2, mac: "02:00:00:00:01:02"}
        - {address: 10.1.0.3, mac: "02:00:00:00:01:03"}
      green:
        - {address: 10.2.0.1, mac: "02:00:00:00:02:01"}
        - {address: 10.2.0.2, mac: "02:00:00:00:02:02"}
        - {address: 10.2.0.3, mac: "02:00:00:00:02:03"}
  - name: dns
    vip: 198.51.100.53
    protocol: udp
    port: 53
    forwarding: l2
    maglev_size: 1009
    active: blue
    pools:
      blue:
        - {address: 10.1.0.53, mac: "02:00:00:00:01:35"}
      green:
        - {address: 10.2.0.53, mac: "02:00:00:00:02:35"}
EOF

# --- the network -------------------------------------------------------------------------------
step "1. The network: 50 client addresses, tandemd, 3 blue and 3 green backends (network namespaces)"
"$topo" up --prefix "$prefix"
say "clients   ${prefix}-client   10.77.1.1-50, the VIPs 198.51.100.0/24 are on-link (ARP goes to tandemd)"
say "tandemd   ${prefix}-lb       eth0, no address; forwarding l2: it rewrites the destination MAC"
say "backends  ${prefix}-blue1..3 10.1.0.1-3, ${prefix}-green1..3 10.2.0.1-3; VIPs on lo, replies go"
say "          straight back to the clients (direct server return)"

step "2. Start tandemd (2 lcores: control + one worker, no hugepages needed for the demo)"
mode=$("$topo" lb-start --prefix "$prefix" --config "$work/demo.yaml" --socket "$sock" \
  --tandemd "$tandemd" --mode "$pmd" --log "$work/tandemd.log")
say "tandemd attached to the veth with ${bold}${mode}${plain} (AF_XDP when the kernel allows it, else af_packet)"
say "log: $work/tandemd.log, control socket: $sock"
run tandemctl status web

step "3. Steady client traffic: 60 long-lived connections (each lives 4-12 s, a message every 10 ms) + 20 new connections/s"
"$topo" exec --prefix "$prefix" client python3 "$here/tests/e2e/client_driver.py" \
  steady --connections 60 --lifetime 4-12 --new-per-second 20 &
traffic_pid=$!
say "(tandemd's live flows also count connections closed in the last 2 s: dataplane.timeouts.tcp_closing)"
watch_for "$pause"

step "4. Preview: the idle colour (green) answers on 198.51.100.10:8080 before any user sees it"
run "$topo" exec --prefix "$prefix" client python3 "$here/tests/e2e/client_driver.py" --port 8080 probe --count 6

step "5. Canary: 10 % of clients (chosen by address) send their new connections to green"
run tandemctl canary web --to green --percent 10
watch_for "$pause"

step "6. Switch: every new connection goes to green; established ones stay on blue until they end"
run tandemctl switch web --to green
watch_for 3
say "blue drains as its connections end (no resets: the drain policy is 'keep' for 60 s):"
echo "${bold}\$ tandemctl wait-drained web blue --timeout 40s${plain}"
tandemctl wait-drained web blue --timeout 40s >"$work/drain.out" & wait $!
tail -n 3 "$work/drain.out"
counts
run tandemctl status web

step "7. Rollback: back to blue in one command; green's connections finish where they are"
run tandemctl rollback web
watch_for 3
echo "${bold}\$ tandemctl wait-drained web green --timeout 40s${plain}"
tandemctl wait-drained web green --timeout 40s >"$work/drain.out" & wait $!
tail -n 3 "$work/drain.out"
counts

step "8. What happened (tandemctl history)"
run tandemctl history
kill -TERM "$traffic_pid" 2>/dev/null || true
wait "$traffic_pid" 2>/dev/null || true
traffic_pid=""
