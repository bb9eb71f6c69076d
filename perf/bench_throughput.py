#!/usr/bin/env python3
"""Single-core throughput of tandem's worker against dpdk-testpmd on the same source.

For each scenario (a pcap of 64-byte TCP frames and a flow-table size) and each repetition, runs
back to back, in one command:
  testpmd io, testpmd 5tswap   -- dpdk-testpmd on net_pcap (rx_pcap=F,infinite_rx=1, TX drop)
  tandem pcap                  -- perf/bench_worker: tandemd's worker loop on the same vdev
  tandem replay  (optional)    -- perf/bench_worker --mode replay: process_burst() on preloaded
                                  mbufs, no PMD (tandem's own per-packet cost)
and prints medians over the repetitions: Mpps (wall clock), Mpps per on-CPU second of the
forwarding thread (robust when other work shares the core), cycles/packet, and the ratios of the
worker to each baseline. All programs use lcore 0 (main) and lcore 1 (forwarding), --no-huge, the
same mbuf size and the same pool sizing. See docs/performance.md.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import threading
import sys
import time

from proc_stats import thread_cpu_ns  # perf/ is the script's directory, so on sys.path

FRAME_BYTES = 60
MBUF_DATA_ROOM = 256  # 128 headroom + 128 data: enough for 64-byte frames
SIZES = {"k": 1 << 10, "m": 1 << 20}


def parse_count(text):
    t = text.strip().lower()
    if t[-1] in SIZES:
        return int(float(t[:-1]) * SIZES[t[-1]])
    return int(t)


def human(n):
    if n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n % (1 << 10) == 0:
        return f"{n >> 10}K"
    return str(n)


class Scenario:
    """name:FLOWS[:syn][:table=N] e.g. 1m:table=2m, syn4m:syn:table=1m"""

    def __init__(self, spec):
        parts = spec.split(":")
        self.syn = "syn" in parts[1:]
        self.flows = parse_count(parts[0].replace("syn", "") or "0")
        self.table = None
        for p in parts[1:]:
            if p.startswith("table="):
                self.table = parse_count(p[6:])
        if self.table is None:
            # The daemon default (1,310,720 slots: 1 M flows at 80 % load), or every flow at
            # 80 % load when there are more. SYN-only keeps the default: the table fills up.
            self.table = 1310720
            if not self.syn:
                self.table = max(self.table, (self.flows * 5 // 4 + 15) // 16 * 16)
        self.name = ("syn-" if self.syn else "") + human(self.flows) + " flows, table " + human(self.table)

    def pcap(self, out_dir):
        return os.path.join(out_dir, f"tcp64_{'syn' if self.syn else 'ack'}_{self.flows}.pcap")


def ensure_pcap(gen_pcap, path, sc):
    if os.path.exists(path) and os.path.getsize(path) == 24 + sc.flows * (16 + FRAME_BYTES):
        return
    cmd = [gen_pcap, "--out", path, "--flows", str(sc.flows)] + (["--syn"] if sc.syn else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def existing_pcap(sc, out_dir, gen_pcap=None):
    """The scenario's pcap in out_dir, generated first when gen_pcap is given; exits if missing."""
    pcap = sc.pcap(out_dir)
    if gen_pcap:
        os.makedirs(out_dir, exist_ok=True)
        ensure_pcap(gen_pcap, pcap, sc)
    if not os.path.exists(pcap):
        sys.exit(f"{pcap} missing: run perf/bench_throughput.py once (it generates the pcaps)"
                 " or pass --gen-pcap")
    return pcap


HUGE = False  # --huge: EAL memory from hugetlbfs (2 MiB pages) instead of --no-huge


def eal_common(prefix, mem_mb, vdev, lcores=("-l", "0-1"), huge=None):
    """EAL arguments for one program of a run; huge: a hugetlbfs mount, or False for --no-huge
    (default: this script's --huge)."""
    huge = HUGE if huge is None else huge
    mem = ["--huge-dir", huge, "--huge-unlink"] if huge else ["--no-huge"]
    return list(lcores) + mem + ["-m", str(mem_mb), "--no-pci", "--file-prefix", prefix,
            "--log-level", "lib.eal:error", "--log-level", "pmd.net.pcap:error", "--vdev", vdev]


def memory_mb(packets, table):
    mbufs = packets + 32768
    per_mbuf = MBUF_DATA_ROOM + 128 + 64  # data room, struct rte_mbuf, mempool header
    table_bytes = table * 48  # 32-byte entries + 16 bytes of IPv6 client per slot
    return (mbufs * per_mbuf + table_bytes) // (1 << 20) + 384, mbufs


def run_testpmd(args, sc, mode, rep):
    pcap = sc.pcap(args.out_dir)
    mem, mbufs = memory_mb(sc.flows, 0)
    prefix = f"tandem_perf_tp_{os.getpid()}_{rep}"
    cmd = (["stdbuf", "-oL", args.testpmd]
           + eal_common(prefix, mem, f"net_pcap0,rx_pcap={pcap},infinite_rx=1")
           + ["--", f"--forward-mode={mode}", "--port-topology=loop", "--stats-period", "1",
              f"--total-num-mbufs={mbufs}", f"--mbuf-size={MBUF_DATA_ROOM}"])
    if args.verbose:
        print("  $", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []  # (time, rx_packets, cpu_ns)
    pps = []
    rx_packets = None
    log = []
    # A blocking readline, with a timer to stop testpmd if it never gets going: select() on the
    # pipe said "nothing to read" while lines sat in Python's own buffer, so a sample's CPU time
    # could be read up to a second after testpmd printed its packet count (on-CPU rates off by
    # up to 2x in either direction).
    watchdog = threading.Timer(args.seconds + 3 + 60, proc.kill)  # + warm-up (pcap load) allowance
    watchdog.start()
    try:
        for line in proc.stdout:
            log.append(line)
            m = re.search(r"RX-packets:\s+(\d+)", line)
            if m:
                rx_packets = int(m.group(1))
                continue
            m = re.search(r"Rx-pps:\s+(\d+)", line)
            if m and rx_packets is not None:
                # Skip the first two periods: start-up and the pcap load.
                samples.append((time.monotonic(), rx_packets, thread_cpu_ns(proc.pid, "rte-worker-1")))
                pps.append(int(m.group(1)))
                if len(pps) >= max(args.seconds, 2) + 2:
                    break
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if len(pps) < 3:
        sys.stderr.write("".join(log[-30:]))
        raise RuntimeError(f"testpmd {mode}: no throughput samples")
    wall = [p / 1e6 for p in pps[2:]]
    # On-CPU rate over the whole measured window (first to last sample): the samples are taken
    # when testpmd's lines arrive, so per-interval figures would carry the pipe's jitter.
    cpu_rates, cycles = [], []
    a, b = samples[2], samples[-1]
    if a[2] is not None and b[2] is not None and b[2] > a[2] and b[1] > a[1]:
        cpu_s = (b[2] - a[2]) / 1e9
        cpu_rates.append((b[1] - a[1]) / cpu_s / 1e6)
        cycles.append(cpu_s * args.tsc_hz / (b[1] - a[1]))
    return {"mpps_wall": statistics.median(wall),
            "mpps_cpu": statistics.median(cpu_rates) if cpu_rates else 0.0,
            "cycles_per_packet": statistics.median(cycles) if cycles else 0.0}


def run_bench(args, sc, mode, rep, binary=None, extra=(), workers=1):
    pcap = sc.pcap(args.out_dir)
    mem, mbufs = memory_mb(sc.flows * workers, sc.table * workers)
    prefix = f"tandem_perf_bw_{os.getpid()}_{rep}"
    lcores = ("-l", "0-1")
    if workers == 2:
        # Two queues (each replays the pcap), a worker on each core; the main lcore, which only
        # samples counters, shares core 0. Every other interval one worker pauses (each in
        # turn), so one worker and two are compared in adjacent intervals: the machine drifts
        # between runs by more than the scaling figure can show.
        vdev = f"net_pcap0,rx_pcap={pcap},rx_pcap={pcap},infinite_rx=1"
        own = ["--mbufs", str(mbufs), "--workers", "2", "--scaling-turns"]
        lcores = ("--lcores", "0@0,1@0,2@1")
    elif mode == "pcap":
        vdev = f"net_pcap0,rx_pcap={pcap},infinite_rx=1"
        own = ["--mbufs", str(mbufs)]
    else:
        vdev = "net_null0"
        own = ["--mode", "replay", "--replay-pcap", pcap]
    # Warm-up: one full pass, so the table holds the steady state before measuring.
    cmd = ([binary or args.bench_worker] + eal_common(prefix, mem, vdev, lcores)
           + ["--", "--config", args.config, "--flow-table-size", str(sc.table),
              "--data-room", str(MBUF_DATA_ROOM), "--seconds", str(args.seconds),
              "--interval-ms", str(args.interval_ms), "--warmup-packets", str(sc.flows * workers),
              "--min-forwarded", "0.99"] + own + args.bench_args.split() + list(extra))
    if args.verbose:
        print("  $", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=args.seconds + 240)
    res = None
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[7:])
    if p.returncode != 0 or res is None:
        sys.stderr.write(p.stdout[-4000:])
        raise RuntimeError(f"bench_worker {mode} failed (exit {p.returncode})")
    args.tsc_hz = res["tsc_hz"]
    return res


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(here), "build"),
                    help="meson build directory with perf/gen_pcap and perf/bench_worker")
    ap.add_argument("--config", default=os.path.join(here, "configs", "bench.yaml"))
    ap.add_argument("--scenarios", default="64k,1m,4m,syn4m:syn",
                    help="comma-separated FLOWS[:syn][:table=N] (e.g. 1m:table=1m)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5, help="measured seconds per run")
    ap.add_argument("--interval-ms", type=int, default=500)
    ap.add_argument("--baselines", default="io,5tswap", help="testpmd forward modes ('' = none)")
    ap.add_argument("--replay", action="store_true", help="also run bench_worker --mode replay")
    ap.add_argument("--out-dir", default="/tmp/tandem-perf", help="where pcaps are cached")
    ap.add_argument("--testpmd", default="dpdk-testpmd")
    ap.add_argument("--bench-args", default="", help="extra bench_worker options, e.g. '--scan-budget 16'")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=BUILD[:ARGS]",
                    help="also run BUILD/perf/bench_worker (pcap mode) in every rep as tandem-NAME, "
                         "with extra bench_worker ARGS (e.g. a patched tree, or a different option)")
    ap.add_argument("--scaling", action="store_true",
                    help="also run 2 workers on 2 queues (one per core) and report the ratio to one")
    ap.add_argument("--huge", metavar="DIR", default="",
                    help="use hugepages from this hugetlbfs mount (e.g. /dev/hugepages) for every "
                         "program instead of --no-huge; reserve enough first (vm.nr_hugepages)")
    ap.add_argument("--json", help="write all results to this file")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    global HUGE
    HUGE = args.huge or False
    args.gen_pcap = os.path.join(args.build, "perf", "gen_pcap")
    args.bench_worker = os.path.join(args.build, "perf", "bench_worker")
    args.tsc_hz = 0
    os.makedirs(args.out_dir, exist_ok=True)
    baselines = [b for b in args.baselines.split(",") if b]
    compares = []
    for c in args.compare:
        name, rest = c.split("=", 1)
        build, _, extra = rest.partition(":")
        compares.append(("tandem-" + name, os.path.join(build or args.build, "perf", "bench_worker"), extra.split()))
    runs = (baselines + ["tandem"] + (["tandem-replay"] if args.replay else [])
            + (["tandem-2workers"] if args.scaling else []) + [c[0] for c in compares])

    all_results = {}
    for spec in args.scenarios.split(","):
        sc = Scenario(spec)
        ensure_pcap(args.gen_pcap, sc.pcap(args.out_dir), sc)
        print(f"== {sc.name} ({args.reps} reps x {args.seconds}s, medians)", flush=True)
        per = {r: [] for r in runs}
        ratios = {b: [] for b in baselines}
        for rep in range(args.reps):
            # The tandem run first: it also supplies the TSC rate the testpmd numbers use.
            res = run_bench(args, sc, "pcap", rep)
            per["tandem"].append(res)
            if args.replay:
                per["tandem-replay"].append(run_bench(args, sc, "replay", rep))
            if args.scaling:
                per["tandem-2workers"].append(run_bench(args, sc, "pcap", rep, workers=2))
            for name, binary, extra in compares:
                per[name].append(run_bench(args, sc, "pcap", rep, binary, extra))
            for b in baselines:
                tp = run_testpmd(args, sc, b, rep)
                per[b].append(tp)
                # Ratio within the repetition (same minute, same load), on-CPU rates
                # (wall-clock rates if the thread's CPU time could not be read).
                if tp["mpps_cpu"] > 0 and res["mpps_cpu"] > 0:
                    ratios[b].append(res["mpps_cpu"] / tp["mpps_cpu"])
                elif tp["mpps_wall"] > 0:
                    ratios[b].append(res["mpps_wall"] / tp["mpps_wall"])
            line = " | ".join(f"{r} {per[r][-1]['mpps_wall']:.2f}/{per[r][-1]['mpps_cpu']:.2f}" for r in runs)
            print(f"  rep {rep + 1}: Mpps wall/on-CPU: {line}", flush=True)
        summary = {}
        for r in runs:
            summary[r] = {k: statistics.median(x[k] for x in per[r])
                          for k in ("mpps_wall", "mpps_cpu", "cycles_per_packet")}
        t = per["tandem"][-1]
        for r in runs:
            s = summary[r]
            print(f"  {r:16s} {s['mpps_wall']:7.2f} Mpps wall  {s['mpps_cpu']:7.2f} Mpps on-CPU  "
                  f"{s['cycles_per_packet']:7.1f} cycles/packet")
        if args.scaling:
            turns = [r["scaling"] for r in per["tandem-2workers"] if "scaling" in r]
            if not turns:
                raise RuntimeError("bench_worker --scaling-turns reported no pair of intervals "
                                   "(give it more --seconds)")
            print(f"  2 workers / 1 worker: {statistics.median(t['ratio'] for t in turns):.3f} (median over "
                  f"reps of the median of adjacent intervals; per rep "
                  + ", ".join(f"{t['ratio']:.2f} [{t['q1']:.2f}..{t['q3']:.2f}]" for t in turns)
                  + f"; one worker {statistics.median(t['one_mpps_cpu'] for t in turns):.2f}, two "
                  f"{statistics.median(t['two_mpps_cpu'] for t in turns):.2f} Mpps per on-CPU second, "
                  f"the sum of each worker's)")
        for name, _, _ in compares:
            cr = [b["mpps_cpu"] / a["mpps_cpu"] for a, b in zip(per["tandem"], per[name]) if a["mpps_cpu"]]
            print(f"  {name} / tandem: {statistics.median(cr):.3f} (median of per-rep on-CPU ratios)")
        for b in baselines:
            print(f"  tandem / testpmd {b}: {statistics.median(ratios[b]):.2f} (median of per-rep on-CPU ratios)")
        print(f"  table: {t['flows_in_table']} flows in {t['table_capacity']} slots "
              f"({t['table_bytes'] / (1 << 20):.0f} MiB), new flows {t['new_flows']}, evictions "
              f"{t['evictions']}, failed inserts {t['failed_inserts']}, forwarded {t['forwarded']:.4f}, "
              f"drops {t['drops']}", flush=True)
        all_results[sc.name] = {"runs": per, "summary": summary,
                                "ratios": {b: statistics.median(ratios[b]) for b in baselines}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_results, f, indent=1)
    print("bench_throughput: ok")


if __name__ == "__main__":
    main()
