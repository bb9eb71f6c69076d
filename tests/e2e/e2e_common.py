"""Shared harness of the end-to-end tests: topology, tandemd, client driver, tandemctl.

Each test builds its own topology (scripts/topology.sh, a prefix unique to the process), starts
tandemd in the lb namespace (AF_XDP, else af_packet), drives real kernel TCP/UDP from the client
namespace through tests/e2e/client_driver.py and checks what the clients, the backends and
tandemctl report. Everything is torn down on exit, on failure and on SIGTERM/SIGINT (meson's
timeout). Exit codes: 0 pass, 1 deviation, 77 skipped (not root, no network namespaces).

Environment: TANDEMD, TANDEMCTL (binaries; default build/tandemd, build/control/tandemctl),
TANDEM_E2E_PMD (auto|af_xdp|af_packet, default auto), TANDEM_E2E_KEEP=1 (leave the topology up
after a failure, for tcpdump).
"""
import atexit
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TOPOLOGY = os.path.join(ROOT, "scripts", "topology.sh")
DRIVER = os.path.join(HERE, "client_driver.py")
SKIP = 77

WEB_VIP = "198.51.100.10"
DNS_VIP = "198.51.100.53"
CLIENT_SOURCES = "10.77.1.1-10.77.1.50"
BLUE = [("10.1.0.1", "02:00:00:00:01:01", "blue1"), ("10.1.0.2", "02:00:00:00:01:02", "blue2"),
        ("10.1.0.3", "02:00:00:00:01:03", "blue3")]
GREEN = [("10.2.0.1", "02:00:00:00:02:01", "green1"), ("10.2.0.2", "02:00:00:00:02:02", "green2"),
         ("10.2.0.3", "02:00:00:00:02:03", "green3")]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def skip(reason):
    print(f"SKIP: {reason}", flush=True)
    sys.exit(SKIP)


def pools_yaml(indent="      "):
    out = [f"{indent}blue:"]
    out += [f'{indent}  - {{address: {a}, mac: "{m}"}}' for a, m, _ in BLUE]
    out += [f"{indent}green:"]
    out += [f'{indent}  - {{address: {a}, mac: "{m}"}}' for a, m, _ in GREEN]
    return "\n".join(out)


def service_yaml(name, vip, protocol, port, extra=""):
    return (f"  - name: {name}\n    vip: {vip}\n    protocol: {protocol}\n    port: {port}\n"
            f"    forwarding: l2\n    maglev_size: 1009\n    active: blue\n{extra}"
            f"    pools:\n{pools_yaml()}\n")


def config_yaml(services, udp_timeout="30s", tcp_closing="2s"):
    return ("dataplane:\n  flow_table_size: 65536\n"
            f"  timeouts: {{tcp_syn: 10s, tcp_established: 300s, tcp_closing: {tcp_closing}, udp: {udp_timeout}}}\n"
            "services:\n" + "".join(services))


class Failures:
    def __init__(self):
        self.items = []

    def check(self, cond, message):
        if not cond:
            self.items.append(message)
            log(f"DEVIATION: {message}")
        return cond


class Driver:
    """client_driver.py serve, running in the client namespace."""

    def __init__(self, client_ns, vip=WEB_VIP, port=80):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", client_ns, sys.executable, DRIVER, "--vip", vip,
             "--port", str(port), "--sources", CLIENT_SOURCES, "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        hello = self._read(15)
        if not hello.get("ready"):
            raise RuntimeError(f"client driver did not start: {hello}")

    def _read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"client driver: no answer within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("client driver exited")
        return json.loads(line)

    def cmd(self, timeout=60, **kw):
        self.proc.stdin.write(json.dumps(kw) + "\n")
        self.proc.stdin.flush()
        r = self._read(timeout)
        if not r.get("ok", False):
            raise RuntimeError(f"client driver: {kw.get('cmd')}: {r.get('error', r)}")
        return r

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.cmd(cmd="quit", timeout=5)
            except Exception:
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Env:
    """One topology + tandemd + client driver. Use as a context manager."""

    def __init__(self, name, config_text, port=80, vip=WEB_VIP):
        self.name = name
        self.config_text = config_text
        self.vip, self.port = vip, port
        self.prefix = f"e{os.getpid() % 100000}"
        self.tandemd = os.environ.get("TANDEMD") or os.path.join(ROOT, "build", "tandemd")
        self.tandemctl = os.environ.get("TANDEMCTL") or os.path.join(ROOT, "build", "control", "tandemctl")
        self.tmp = None
        self.socket = None
        self.driver = None
        self.pmd = None
        self.failures = Failures()
        self.summary = {}   # label -> text, printed in order by finish()
        self._up = False
        self._closed = False

    # --- set-up / tear-down ---------------------------------------------------------------
    def preflight(self):
        if os.geteuid() != 0:
            skip("end-to-end tests need root (network namespaces)")
        if not shutil.which("ip"):
            skip("iproute2 (ip) is not installed")
        probe = f"{self.prefix}-probe"
        r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if r.returncode != 0:
            skip(f"network namespaces unavailable: {r.stderr.strip()}")
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        for b in (self.tandemd, self.tandemctl):
            if not os.access(b, os.X_OK):
                print(f"FAIL: {b} is not built (ninja -C build, or set TANDEMD/TANDEMCTL)", flush=True)
                sys.exit(1)

    def __enter__(self):
        self.preflight()
        try:
            return self._start()
        except Exception as e:
            traceback.print_exc()
            self.failures.items.append(f"set-up: {type(e).__name__}: {e}")
            self.close()
            sys.exit(self.finish())

    def _start(self):
        self.tmp = tempfile.mkdtemp(prefix=f"tandem-e2e-{self.name}-")
        self.socket = os.path.join(self.tmp, "tandemd.sock")
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        cfg = os.path.join(self.tmp, "tandem.yaml")
        with open(cfg, "w") as f:
            f.write(self.config_text)
        log(f"{self.name}: topology '{self.prefix}' up")
        self._up = True
        subprocess.run([TOPOLOGY, "up", "--prefix", self.prefix], check=True)
        mode = os.environ.get("TANDEM_E2E_PMD", "auto")
        r = subprocess.run([TOPOLOGY, "lb-start", "--prefix", self.prefix, "--config", cfg,
                            "--socket", self.socket, "--tandemd", self.tandemd, "--mode", mode,
                            "--probe-vip", self.vip,
                            "--log", os.path.join(self.tmp, "tandemd.log")],
                           capture_output=True, text=True)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            raise RuntimeError("tandemd did not start")
        self.pmd = r.stdout.strip().splitlines()[-1]
        log(f"{self.name}: tandemd runs with {self.pmd}")
        self.driver = Driver(f"{self.prefix}-client", self.vip, self.port)
        return self

    def _on_signal(self, signum, _frame):
        log(f"signal {signum}: cleaning up")
        self.close()
        sys.exit(1)

    def close(self):
        if self._closed:
            return
        self._closed = True
        if self.driver:
            self.driver.stop()
        if self._up:
            if os.environ.get("TANDEM_E2E_KEEP") == "1" and self.failures.items:
                log(f"TANDEM_E2E_KEEP=1: topology '{self.prefix}' left up; remove it with "
                    f"{TOPOLOGY} down --prefix {self.prefix}")
                return
            tlog = os.path.join(self.tmp or "/nonexistent", "tandemd.log")
            if self.failures.items and os.path.exists(tlog):
                log("tandemd log (last lines):")
                with open(tlog) as f:
                    sys.stdout.write("".join(f.readlines()[-20:]))
            subprocess.run([TOPOLOGY, "down", "--prefix", self.prefix], capture_output=True)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and not isinstance(exc, SystemExit):
            traceback.print_exception(exc_type, exc, tb)
            self.failures.items.append(f"{exc_type.__name__}: {exc}")
            try:
                log("tandemctl stats at the failure:")
                print(json.dumps(self.ctl_json("stats"), indent=1)[:3000], flush=True)
            except Exception:
                pass
        self.close()
        return not isinstance(exc, SystemExit)  # errors become a FAIL summary, not a traceback exit

    # --- tandemctl -------------------------------------------------------------------------
    def ctl(self, *args, expect=0, quiet=False):
        cmd = [self.tandemctl, "--socket", self.socket, *args]
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        t1 = time.monotonic()
        if not quiet:
            log(f"$ tandemctl {' '.join(args)}  -> exit {r.returncode} ({(t1 - t0) * 1000:.0f} ms)")
            out = (r.stdout + r.stderr).strip()
            if out:
                print("    " + out.replace("\n", "\n    "), flush=True)
        if expect is not None and r.returncode != expect:
            self.failures.check(False, f"tandemctl {' '.join(args)}: exit {r.returncode}, expected {expect}: {r.stderr.strip()}")
        r.t0, r.t1 = t0, t1
        return r

    def ctl_json(self, *args):
        r = subprocess.run([self.tandemctl, "--socket", self.socket, "--json", *args],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"tandemctl {' '.join(args)}: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def service_status(self, name):
        for s in self.ctl_json("status", name)["services"]:
            if s["name"] == name:
                return s
        raise RuntimeError(f"no service {name} in status")

    def live_flows(self, name, colour):
        return self.service_status(name)["colours"][colour]["live_flows"]

    def worker_counter(self, key):
        return sum(w.get(key, 0) for w in self.ctl_json("stats")["workers"])

    def backend_stats(self, role):
        """The identity server's counters, read inside the backend's namespace."""
        code = ("import socket,sys; s=socket.create_connection(('127.0.0.1', 9999), 2); "
                "sys.stdout.write(s.makefile().readline())")
        r = subprocess.run(["ip", "netns", "exec", f"{self.prefix}-{role}", sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"backend {role}: stats: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def finish(self):
        """Prints the scenario's summary line; returns the exit code."""
        summary = "; ".join(f"{k}: {v}" for k, v in self.summary.items()) or "nothing measured"
        verdict = "PASS" if not self.failures.items else f"FAIL ({len(self.failures.items)} deviations)"
        print(f"SUMMARY {self.name} [{self.pmd}]: {verdict}: {summary}", flush=True)
        for item in self.failures.items:
            print(f"  - {item}", flush=True)
        return 0 if not self.failures.items else 1


def colours_by_source(probe_result):
    """{source: colour} if every connection of a source landed on one colour; else raises."""
    out, mixed = {}, []
    for src, colours in probe_result["by_source"].items():
        if len(set(colours)) != 1:
            mixed.append(src)
        out[src] = colours[0]
    return out, mixed


def fmt_counts(d):
    return " ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"
