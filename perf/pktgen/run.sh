#!/usr/bin/env bash
# Runs one of tandem's Pktgen-DPDK profiles. Pktgen is not built or downloaded here: give its
# binary in $PKTGEN. Bare-metal layout: pktgen's TX port cabled (or switched) to tandem's port.
#
#   PKTGEN=/usr/local/bin/pktgen perf/pktgen/run.sh multiflow|synonly|cutover [--dry-run]
#
# Environment (defaults in brackets):
#   PKTGEN          pktgen binary (required unless --dry-run)
#   PKTGEN_EAL      EAL options [-l 0-2 -n 4]; add -a <PCI> for the NIC
#   PKTGEN_PORTMAP  pktgen -m core mapping [[1:2].0] (RX core 1, TX core 2, port 0)
#   DST_MAC         tandem port's MAC (destination of every frame) [pktgen default]
#   VIP, VIP_PORT   [198.51.100.10, 80]  (perf/configs/bench.yaml)
#   RATE            percent of line rate [100]; DURATION seconds [30]
#   SRC_IP_MIN/MAX, SPORT_MIN/MAX   client ranges [198.18.0.0-198.18.0.255, 1024-5119: 1M flows]
#   SYN_PCAP        pcap for synonly [generated: $TANDEM_BUILD/perf/gen_pcap --syn --flows 4M]
#   TANDEM_BUILD    tandem build directory, for gen_pcap [build]
#   TANDEMCTL       control command for cutover [tandemctl]; SERVICE [web]; SWITCH_EVERY [1] s
#   PKTGEN_QUIT=1   quit pktgen when the profile ends (default: stay at the prompt)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
profile=${1:-}
dry=0
[[ ${2:-} == --dry-run ]] && dry=1
case "$profile" in
  multiflow|synonly|cutover) ;;
  *) echo "usage: PKTGEN=/path/to/pktgen $0 multiflow|synonly|cutover [--dry-run]" >&2; exit 2 ;;
esac

eal=${PKTGEN_EAL:--l 0-2 -n 4}
portmap=${PKTGEN_PORTMAP:-[1:2].0}
extra=()
if [[ $profile == synonly ]]; then
  pcap=${SYN_PCAP:-/tmp/tandem-perf/tcp64_syn_4194304.pcap}
  if [[ ! -s $pcap ]]; then
    gen="${TANDEM_BUILD:-build}/perf/gen_pcap"
    if (( dry )); then
      echo "# would generate: $gen --out $pcap --flows 4194304 --syn --vip ${VIP:-198.51.100.10}"
    else
      mkdir -p "$(dirname "$pcap")"
      "$gen" --out "$pcap" --flows 4194304 --syn --vip "${VIP:-198.51.100.10}" \
        ${DST_MAC:+--dst-mac "$DST_MAC"}
    fi
  fi
  extra=(-s "${PKTGEN_TX_PORT:-0}:$pcap")
fi

export TANDEM_PKTGEN_DIR=$here
# -P promiscuous, -T themed console, -m core:port map, -f the Lua profile to run at start.
cmd=("${PKTGEN:-pktgen}" $eal -- -P -T -m "$portmap" "${extra[@]}" -f "$here/$profile.lua")
echo "TANDEM_PKTGEN_DIR=$here ${cmd[*]}"
(( dry )) && exit 0
if [[ -z ${PKTGEN:-} || ! -x ${PKTGEN} ]]; then
  echo "run.sh: set PKTGEN to the pktgen binary (it is not built or downloaded by tandem)" >&2
  exit 2
fi
exec "${cmd[@]}"
