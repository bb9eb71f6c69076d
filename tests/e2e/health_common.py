"""Shared parts of the health-check end-to-end tests (health_*.py; issue 5).

tandemd checks backends from the lb namespace's own kernel stack, so that namespace needs an
address on the backend segment (the topology leaves it without one) and the backends need a
neighbour entry for it (the lb namespace answers no ARP). Both are added here, after tandemd
started. The kernel only sees the segment's frames when tandemd uses af_packet (AF_XDP steals
them), so these tests always run with af_packet.
"""
import json
import os
import signal
import subprocess
import sys
import time

from e2e_common import BLUE, GREEN, log

os.environ["TANDEM_E2E_PMD"] = "af_packet"   # before Env() reads it

LB_ADDR = "10.0.0.254"
LB_MAC = "02:00:00:00:00:fe"
METRICS = "127.0.0.1:9469"
INTERVAL_S = 0.3
FALL = 2
RISE = 2


def health_yaml(min_healthy_to_switch=2):
    return (f"    health: {{check: tcp, interval: {int(INTERVAL_S * 1000)}ms, timeout: 200ms, "
            f"rise: {RISE}, fall: {FALL}, min_healthy_to_switch: {min_healthy_to_switch}}}\n")


def with_metrics(config_text):
    return f"metrics:\n  listen: \"{METRICS}\"\n" + config_text


def give_lb_an_address(env):
    """The lb namespace's kernel gets 10.0.0.254 on eth0; every backend a static neighbour
    entry for it (replies to health checks go straight back)."""
    subprocess.run(["ip", "-n", f"{env.prefix}-lb", "addr", "add", f"{LB_ADDR}/8", "dev", "eth0"],
                   check=True)
    for _, _, role in BLUE + GREEN:
        subprocess.run(["ip", "-n", f"{env.prefix}-{role}", "neigh", "replace", LB_ADDR, "lladdr",
                        LB_MAC, "dev", "eth0", "nud", "permanent"], check=True)


def all_backends_up(env, timeout=20):
    """Gives the lb an address and waits until every backend is healthy; records a failure
    (and returns False) when they are not within `timeout` seconds."""
    give_lb_an_address(env)
    up = wait_for(lambda: set(health_states(env).values()) == {"up"}, timeout, step=0.2)
    return env.failures.check(
        up, f"backends not all up {timeout} s after the lb got an address: {health_states(env)}")


def health_states(env, service="web"):
    """{(colour, address): state} from tandemctl status."""
    st = env.service_status(service)
    return {(c, b["address"]): b["health"]["state"]
            for c in ("blue", "green") for b in st["colours"][c]["backends"]}


def wait_for(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def kill_backend(env, role):
    """Stops the identity server of one backend (SIGKILL: it is gone, like a crashed server)."""
    pidfile = f"/run/tandem-topology/{env.prefix}/{role}.pid"
    with open(pidfile) as f:
        pid = int(f.read().strip())
    os.kill(pid, signal.SIGKILL)
    log(f"killed the server of {role} (pid {pid})")


def scrape(env):
    """GET /metrics inside the lb namespace; returns the body."""
    code = ("import urllib.request,sys; "
            f"sys.stdout.write(urllib.request.urlopen('http://{METRICS}/metrics', timeout=5).read().decode())")
    r = subprocess.run(["ip", "netns", "exec", f"{env.prefix}-lb", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"scrape failed: {r.stderr.strip()}")
    return r.stdout


def sample(text, prefix):
    """Value of the first sample line starting with `prefix` (name and labels), or None."""
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def promtool_check(text):
    """(ok, output) of `promtool check metrics`; ok None when promtool is not installed."""
    for p in ("/usr/bin/promtool", "/usr/local/bin/promtool"):
        if os.access(p, os.X_OK):
            r = subprocess.run([p, "check", "metrics"], input=text, capture_output=True, text=True)
            return r.returncode == 0 and not r.stdout.strip(), (r.stdout + r.stderr).strip()
    return None, "promtool not installed"


def dump_json(x):
    return json.dumps(x, sort_keys=True)


def raw_http(env, data):
    """Sends raw bytes to the metrics endpoint (inside the lb namespace); returns the status line."""
    host, port = METRICS.rsplit(":", 1)
    code = ("import socket,sys; s=socket.create_connection((%r,%s),5); s.sendall(%r); "
            "s.shutdown(socket.SHUT_WR); b=b''\n"
            "while True:\n"
            "    x=s.recv(65536)\n"
            "    if not x: break\n"
            "    b+=x\n"
            "sys.stdout.write(b.decode(errors='replace').split('\\r\\n',1)[0])") % (host, port, data)
    r = subprocess.run(["ip", "netns", "exec", f"{env.prefix}-lb", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=20)
    return r.stdout.strip() if r.returncode == 0 else f"error: {r.stderr.strip()}"
