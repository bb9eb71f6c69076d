#!/usr/bin/env python3
"""Cross-process benchmarks: perf/tandem_gen <-> tandemd over net_memif.

  throughput  tandem_gen plays TCP connections as fast as its window allows (or at --rate) and
              reports sent/received Mpps, loss and backend changes.
  cutover     N long-lived established connections at full rate plus a stream of short
              connections; `tandemctl switch` / `rollback` alternate every --switch-every-ms.
              Reports packets lost, established-connection packets that changed backend (must be
              0), and per command the time from starting tandemctl to the first new connection
              seen on the new colour.

tandemd runs `-l 0-1` (control thread on lcore 0, the worker on lcore 1) as the memif server;
tandem_gen runs `-l 0` as the client, so the generator and the worker each own one core (the
control thread sleeps in poll()). Both use --no-huge and their own --file-prefix; the memif
socket is a file in /tmp (socket-abstract=no). Repeats --reps times and prints medians; the
worker's on-CPU time is read from /proc so the rate per on-CPU second is given too.
See docs/performance.md.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

from proc_stats import thread_cpu_ns  # perf/ is the script's directory, so on sys.path


def wait_for_socket(path, proc, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def run_once(args, rep):
    tag = f"{os.getpid()}_{rep}"
    memif = f"/tmp/tandem-perf-{tag}.memif"
    sock = f"/tmp/tandem-perf-{tag}.sock"
    for p in (memif, sock):
        if os.path.exists(p):
            os.unlink(p)
    memif_args = f"socket={memif},socket-abstract=no,rsize={args.ring_log2}"
    tandemd = [args.tandemd, "-l", "0-1", "--no-huge", "-m", str(args.tandemd_mem), "--no-pci",
               "--file-prefix", f"tandem_perf_d_{tag}", "--log-level", "lib.eal:error",
               "--vdev", f"net_memif0,role=server,{memif_args}",
               "--", "--config", args.config, "--socket", sock,
               "--flow-table-size", str(args.flow_table_size), "--log-level", "warn"]
    if args.verbose:
        print("  $", " ".join(tandemd), flush=True)
    d = subprocess.Popen(tandemd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        if not wait_for_socket(sock, d):
            out = d.communicate(timeout=5)[0] if d.poll() is not None else ""
            raise RuntimeError("tandemd did not start:\n" + out)
        ctl = f"{args.tandemctl} --socket {sock}"
        gen = [args.tandem_gen, "-l", "0", "--no-huge", "-m", "256", "--no-pci",
               "--file-prefix", f"tandem_perf_g_{tag}", "--log-level", "lib.eal:error",
               "--vdev", f"net_memif0,role=client,{memif_args}",
               "--", "--flows", str(args.flows), "--short-flows", str(args.short_flows),
               "--short-len", str(args.short_len), "--seconds", str(args.seconds),
               "--warmup", str(args.warmup), "--window", str(args.window),
               "--rate", str(args.rate)]
        if args.mode == "cutover":
            gen += ["--switch-every-ms", str(args.switch_every_ms), "--ctl", ctl,
                    "--service", args.service, "--first-colour", "blue"]
        if args.expect_clean:
            gen.append("--expect-clean")
        if args.verbose:
            print("  $", " ".join(gen), flush=True)
        cpu0 = thread_cpu_ns(d.pid, "rte-worker-1") or 0
        t0 = time.monotonic()
        g = subprocess.run(gen, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=args.seconds + args.warmup + 120)
        wall = time.monotonic() - t0
        cpu = ((thread_cpu_ns(d.pid, "rte-worker-1") or 0) - cpu0) / 1e9
        res = None
        for line in g.stdout.splitlines():
            if line.startswith("RESULT "):
                res = json.loads(line[7:])
        if res is None:
            raise RuntimeError(f"tandem_gen failed (exit {g.returncode}):\n{g.stdout[-3000:]}")
        res["gen_exit"] = g.returncode
        res["worker_cpu_share"] = cpu / wall if wall > 0 else 0
        res["worker_mpps_cpu"] = res["received"] / cpu / 1e6 if cpu > 0 else 0
        st = subprocess.run([args.tandemctl, "--socket", sock, "--json", "stats"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
        try:
            res["tandemd_stats"] = json.loads(st.stdout)
        except ValueError:
            res["tandemd_stats"] = st.stdout
        return res
    finally:
        d.send_signal(signal.SIGINT)
        try:
            d.wait(timeout=15)
        except subprocess.TimeoutExpired:
            d.kill()
            d.wait()
        for p in (memif, sock):
            if os.path.exists(p):
                os.unlink(p)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["throughput", "cutover"])
    ap.add_argument("--build", default=os.path.join(os.path.dirname(here), "build"))
    ap.add_argument("--config", default=os.path.join(here, "configs", "bench.yaml"))
    ap.add_argument("--service", default="web")
    ap.add_argument("--flows", type=int, default=None, help="long-lived connections")
    ap.add_argument("--short-flows", type=int, default=None, help="slots of short connections")
    ap.add_argument("--short-len", type=int, default=20, help="data packets per short connection")
    ap.add_argument("--rate", type=float, default=0, help="packets/s, 0 = window-limited")
    ap.add_argument("--window", type=int, default=3072, help="packets in flight at most")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--switch-every-ms", type=int, default=1000)
    ap.add_argument("--flow-table-size", type=int, default=1310720)
    ap.add_argument("--ring-log2", type=int, default=12, help="memif ring size (log2)")
    ap.add_argument("--tandemd-mem", type=int, default=1024, help="tandemd -m (MB)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--expect-clean", action="store_true",
                    help="fail on any loss, backend change or failed command")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.flows is None:
        args.flows = 100000 if args.mode == "throughput" else 10000
    if args.short_flows is None:
        args.short_flows = 0 if args.mode == "throughput" else 1000
    if args.seconds is None:
        args.seconds = 10 if args.mode == "throughput" else 60
    args.tandemd = os.path.join(args.build, "tandemd")
    args.tandemctl = os.path.join(args.build, "control", "tandemctl")
    args.tandem_gen = os.path.join(args.build, "perf", "tandem_gen")

    results = []
    for rep in range(args.reps):
        r = run_once(args, rep)
        results.append(r)
        print(f"  rep {rep + 1}: sent {r['sent_mpps']:.3f} Mpps, received {r['received_mpps']:.3f} Mpps, "
              f"worker {r['worker_mpps_cpu']:.2f} Mpps per on-CPU s (cpu {100 * r['worker_cpu_share']:.0f}%), "
              f"lost {r['lost']}, backend changes {r['backend_changes']}"
              + (f", commands {r['commands']} (failed {r['failed_commands']}), command "
                 f"{r['command_ms_median']:.1f} ms median, first new flow on new colour "
                 f"{r['first_new_flow_ms_median']:.1f} ms median / {r['first_new_flow_ms_max']:.1f} max"
                 if args.mode == "cutover" else ""), flush=True)
    med = lambda k: statistics.median(r[k] for r in results)
    print(f"== {args.mode}: {args.flows} long-lived + {args.short_flows} short-connection slots, "
          f"{args.seconds:g}s x {args.reps} (medians)")
    print(f"  sent {med('sent_mpps'):.3f} Mpps, received {med('received_mpps'):.3f} Mpps, "
          f"worker {med('worker_mpps_cpu'):.2f} Mpps per on-CPU second")
    total_lost = sum(r["lost"] for r in results)
    total_changes = sum(r["backend_changes"] for r in results)
    print(f"  packets lost (all reps): {total_lost}; established-connection backend changes: {total_changes}")
    if args.mode == "cutover":
        print(f"  commands: {sum(r['commands'] for r in results)} (failed {sum(r['failed_commands'] for r in results)}), "
              f"tandemctl round trip {med('command_ms_median'):.1f} ms median, "
              f"command -> first new flow on new colour {med('first_new_flow_ms_median'):.1f} ms median, "
              f"{max(r['first_new_flow_ms_max'] for r in results):.1f} ms max; "
              f"commands without a new flow seen: {sum(r['commands_without_new_flow'] for r in results)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    bad = args.expect_clean and any(r["gen_exit"] != 0 for r in results)
    print("bench_memif:", "FAILED" if bad else "ok")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
