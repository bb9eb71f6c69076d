#!/usr/bin/env python3
"""Interleaved A/B of two bench_worker builds on one core.

This machine's memory latency drifts by tens of percent over seconds (other tenants), so two
builds measured one after the other differ by more than most optimisations are worth. Here both
run at once, their workers pinned to the same core, and take turns every --turn-ms: each polls
only in its own turn and sleeps otherwise, so its packets per on-CPU second cover only its turns,
and both see the same machine. Prints each build's median per-interval rate and the median of
the ratios of intervals taken at the same time.

  python3 perf/ab_interleaved.py --a build-base/perf/bench_worker --b build/perf/bench_worker \\
      --scenario 1m --seconds 30
  # SYN-only against steady state, same build, same machine conditions:
  python3 perf/ab_interleaved.py --a build/perf/bench_worker --b build/perf/bench_worker \\
      --scenario 1m --scenario-b syn4m:syn --seconds 30

Scenarios are written as for bench_throughput.py (FLOWS[:syn][:table=N]) and use its pcaps.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench_throughput import MBUF_DATA_ROOM, Scenario, eal_common, existing_pcap, memory_mb  # perf/ is on sys.path


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="baseline bench_worker binary")
    ap.add_argument("--b", required=True, help="candidate bench_worker binary")
    ap.add_argument("--scenario", default="1m", help="FLOWS[:syn][:table=N], as bench_throughput.py")
    ap.add_argument("--scenario-b",
                    help="run B on another scenario (same binary for both: e.g. SYN-only against "
                         "steady state under the same machine conditions)")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--turn-ms", type=int, default=250)
    ap.add_argument("--out-dir", default="/tmp/tandem-perf", help="where gen_pcap's files are")
    ap.add_argument("--huge", default="/dev/hugepages",
                    help="hugetlbfs mount; 'none' for --no-huge (the 1m A/B needs ~1.8 GB of "
                         "hugepages, syn4m:syn ~4.8 GB)")
    ap.add_argument("--gen-pcap", help="perf/gen_pcap binary: generate a missing pcap")
    ap.add_argument("--config", default=os.path.join(here, "configs", "bench.yaml"))
    args = ap.parse_args()

    def scenario(spec):
        sc = Scenario(spec)
        pcap = existing_pcap(sc, args.out_dir, args.gen_pcap)
        mem, mbufs = memory_mb(sc.flows, sc.table)
        return pcap, sc.flows, sc.table, mbufs, mem

    turn = f"/dev/shm/tandem_ab_turn_{os.getpid()}"
    with open(turn, "wb") as f:
        f.write(b"a")
    interval_ms = 2 * args.turn_ms

    def start(binary, tid, key):
        pcap, flows, table, mbufs, mem = scenario(key)
        eal = eal_common(f"tandem_ab_{os.getpid()}_{tid}", mem,
                         f"net_pcap0,rx_pcap={pcap},infinite_rx=1",
                         huge=False if args.huge == "none" else args.huge)
        cmd = [binary] + eal + [
               "--",
               "--config", args.config, "--flow-table-size", str(table), "--mbufs", str(mbufs),
               "--data-room", str(MBUF_DATA_ROOM), "--warmup-packets", str(flows), "--seconds", str(args.seconds),
               "--interval-ms", str(interval_ms), "--turn-file", turn, "--turn-id", tid]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    procs = {"a": start(args.a, "a", args.scenario),
             "b": start(args.b, "b", args.scenario_b or args.scenario)}
    current = "a"
    try:
        while any(p.poll() is None for p in procs.values()):
            time.sleep(args.turn_ms / 1000)
            current = "b" if current == "a" else "a"
            with open(turn, "r+b") as f:
                f.write(current.encode())
    finally:
        os.unlink(turn)
    rates = {}
    for tid, p in procs.items():
        out = p.stdout.read()
        r = [float(l.split()[5]) for l in out.splitlines() if l.startswith("interval ")]
        res = [json.loads(l[7:]) for l in out.splitlines() if l.startswith("RESULT ")]
        if p.returncode != 0 or not res or len(r) < 4:
            sys.stderr.write(out[-3000:])
            sys.exit(f"bench_worker {tid} failed (exit {p.returncode})")
        rates[tid] = r[1:]  # the first interval may hold the end of the warm-up
    n = min(len(rates["a"]), len(rates["b"]))
    ratios = sorted(b / a for a, b in zip(rates["a"][:n], rates["b"][:n]) if a > 0)
    ma, mb = statistics.median(rates["a"]), statistics.median(rates["b"])
    label = args.scenario + (f" / B {args.scenario_b}" if args.scenario_b else "")
    print(f"{label}: A {ma:.2f} Mpps/on-CPU s, B {mb:.2f}; B/A median of paired intervals "
          f"{statistics.median(ratios):.3f} (quartiles {ratios[len(ratios) // 4]:.3f}..{ratios[3 * len(ratios) // 4]:.3f}, "
          f"{len(ratios)} intervals)")


if __name__ == "__main__":
    main()
