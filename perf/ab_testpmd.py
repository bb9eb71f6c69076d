#!/usr/bin/env python3
"""tandem's worker against dpdk-testpmd, taking turns on one core.

bench_throughput.py runs testpmd and tandem one after the other, a few seconds each; on this VM
memory latency drifts by tens of percent over seconds, so a single repetition's ratio can be off
by a third (0.30 to 0.53 within one minute). Here both programs run at once on the same source
(net_pcap, infinite_rx, TX drop), their forwarding lcores on the same core, and take turns: the
one whose turn it is not is stopped (SIGSTOP, so it uses no CPU). At the end of each turn the
program's port counter is read over DPDK telemetry and its forwarding thread's on-CPU time from
/proc, so each turn gives packets per on-CPU second; the ratio is taken between adjacent turns,
which saw the same machine. Prints both medians and the median and quartiles of the ratios.

  python3 perf/ab_testpmd.py --bench-worker build/perf/bench_worker --scenario 1m --seconds 40

Scenarios are written as for bench_throughput.py and use its pcaps and pool sizing (testpmd gets
the pool of bench_throughput's baselines).
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

from bench_throughput import MBUF_DATA_ROOM, Scenario, eal_common, existing_pcap, memory_mb  # perf/ is on sys.path
from proc_stats import thread_cpu_ns

FORWARDING_THREAD = "rte-worker-1"  # EAL's name for lcore 1's thread, in both programs


class Telemetry:
    """DPDK telemetry (v2 socket) of one process: ethdev port 0's received packets."""

    def __init__(self, prefix, deadline):
        path = f"/var/run/dpdk/{prefix}/dpdk_telemetry.v2"
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no telemetry socket at {path}")
                time.sleep(0.2)
        self.sock.recv(16384)  # the greeting

    def rx_packets(self):
        self.sock.send(b"/ethdev/stats,0")
        return int(json.loads(self.sock.recv(65536))["/ethdev/stats"]["ipackets"])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench-worker", required=True, help="tandem's perf/bench_worker binary")
    ap.add_argument("--testpmd", default="dpdk-testpmd")
    ap.add_argument("--mode", default="5tswap", help="testpmd forward mode")
    ap.add_argument("--scenario", default="1m", help="FLOWS[:syn][:table=N], as bench_throughput.py")
    ap.add_argument("--seconds", type=float, default=40, help="turns, both programs together")
    ap.add_argument("--turn-ms", type=int, default=500)
    ap.add_argument("--out-dir", default="/tmp/tandem-perf")
    ap.add_argument("--huge", default="/dev/hugepages",
                    help="hugetlbfs mount, or 'none' for --no-huge (1m needs ~1.4 GB of hugepages)")
    ap.add_argument("--gen-pcap", help="perf/gen_pcap binary: generate a missing pcap")
    ap.add_argument("--config", default=os.path.join(here, "configs", "bench.yaml"))
    ap.add_argument("--tsc-hz", type=float, default=0, help="for cycles/packet (default: bench_worker's)")
    args = ap.parse_args()

    sc = Scenario(args.scenario)
    pcap = existing_pcap(sc, args.out_dir, args.gen_pcap)
    huge = False if args.huge == "none" else args.huge
    vdev = f"net_pcap0,rx_pcap={pcap},infinite_rx=1"
    prefixes = {"testpmd": f"tandem_abtp_{os.getpid()}_t", "tandem": f"tandem_abtp_{os.getpid()}_w"}

    def eal(name, mem):
        return eal_common(prefixes[name], mem, vdev, huge=huge)

    tp_mem, tp_mbufs = memory_mb(sc.flows, 0)
    bw_mem, bw_mbufs = memory_mb(sc.flows, sc.table)
    cmds = {
        "testpmd": [args.testpmd] + eal("testpmd", tp_mem) + [
            "--", f"--forward-mode={args.mode}", "--port-topology=loop", "--stats-period", "3600",
            f"--total-num-mbufs={tp_mbufs}", f"--mbuf-size={MBUF_DATA_ROOM}"],
        # Its own clock runs while it is stopped: give it time for every turn, then stop it.
        "tandem": [args.bench_worker] + eal("tandem", bw_mem) + [
            "--", "--config", args.config, "--flow-table-size", str(sc.table), "--mbufs", str(bw_mbufs),
            "--data-room", str(MBUF_DATA_ROOM), "--warmup-packets", str(sc.flows),
            "--seconds", str(3 * args.seconds + 120), "--interval-ms", "1000"],
    }
    procs = {}
    logs = {n: open(f"/tmp/{p}.log", "w+") for n, p in prefixes.items()}
    tsc_hz = args.tsc_hz
    try:
        for name, cmd in cmds.items():
            procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logs[name],
                                           stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        tele = {n: Telemetry(prefixes[n], deadline) for n in procs}
        # Warm-up: both forwarding (tandem's table holds every flow) before the first turn.
        while True:
            if any(p.poll() is not None for p in procs.values()):
                raise RuntimeError("a program exited during warm-up")
            logs["tandem"].seek(0)
            text = logs["tandem"].read()
            if "interval " in text and tele["testpmd"].rx_packets() > 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no traffic within 120 s")
            time.sleep(0.5)
        if not tsc_hz:
            for line in text.splitlines():
                if "tsc_hz" in line:
                    tsc_hz = json.loads(line.split(" ", 1)[1])["tsc_hz"]
        for p in procs.values():
            p.send_signal(signal.SIGSTOP)

        last = {}
        rates = {n: [] for n in procs}
        order = ["testpmd", "tandem"]
        turns = int(args.seconds * 1000 / args.turn_ms)
        for k in range(turns + 1):
            name = order[k % 2]
            p = procs[name]
            p.send_signal(signal.SIGCONT)
            time.sleep(args.turn_ms / 1000)
            reading = (tele[name].rx_packets(), thread_cpu_ns(p.pid, FORWARDING_THREAD))
            p.send_signal(signal.SIGSTOP)
            if reading[1] is None:
                raise RuntimeError(f"{name}: no thread {FORWARDING_THREAD}")
            if name in last:
                dp, dt = reading[0] - last[name][0], reading[1] - last[name][1]
                rates[name].append(dp / dt * 1e3 if dt > 0 else 0.0)  # Mpps per on-CPU second
            last[name] = reading
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for n, f in logs.items():
            f.close()
            os.unlink(f.name)

    # Turn k of tandem sits between turns k and k+1 of testpmd: pair it with both neighbours.
    tp, tw = rates["testpmd"], rates["tandem"]
    ratios = sorted(tw[i] / tp[j] for i in range(len(tw)) for j in (i, i + 1)
                    if j < len(tp) and tp[j] > 0)
    if len(ratios) < 4:
        sys.exit("too few turns")
    mt, mw = statistics.median(tp), statistics.median(tw)
    cyc = (lambda r: f" ({tsc_hz / (r * 1e6):.0f} cycles)") if tsc_hz else (lambda r: "")
    print(f"{sc.name}: testpmd {args.mode} {mt:.2f} Mpps/on-CPU s{cyc(mt)}, tandem {mw:.2f}{cyc(mw)}; "
          f"tandem / {args.mode} median of adjacent turns {statistics.median(ratios):.3f} "
          f"(quartiles {ratios[len(ratios) // 4]:.3f}..{ratios[3 * len(ratios) // 4]:.3f}, "
          f"{len(tw)} turns each)")


if __name__ == "__main__":
    main()
