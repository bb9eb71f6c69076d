#!/usr/bin/env python3
"""e2e (health a): a backend killed in its namespace is marked down in time; nothing else moves.

tandemd checks every backend (TCP to port 80, interval 300ms, fall 2) from the lb namespace's
kernel. 150 long-lived kernel TCP connections are spread over blue. The server of blue2 is
killed (SIGKILL): tandemctl must show it down within interval x fall + 1 s; new connections
must never land on it; every connection to blue1 and blue3 must go on untouched (no reset, no
backend change, no stall); history and the metrics endpoint must show the change, and the
endpoint's output must pass `promtool check metrics`.
"""
import sys
import time

import health_common as hc  # first: it selects af_packet
from e2e_common import WEB_VIP, Env, config_yaml, fmt_counts, log, service_yaml

OLD = 150
VICTIM_ROLE, VICTIM_ADDR = "blue2", "10.1.0.2"
VICTIM = f"blue {VICTIM_ADDR}"
STALL_MS = 300.0


def main():
    cfg = hc.with_metrics(config_yaml([service_yaml("web", WEB_VIP, "tcp", 80, hc.health_yaml())]))
    env = Env("health-kill-backend", cfg)
    with env:
        f, d, s = env.failures, env.driver, env.summary
        if not hc.all_backends_up(env):
            return env.finish()

        r = d.cmd(cmd="open", count=OLD, tag="old")
        f.check(r["opened"] == OLD and r["by_colour"] == {"blue": OLD},
                f"connections: {r['by_colour']} ({r['failures'][:3]}), expected {OLD} blue")
        before = r["by_backend"]
        f.check(before.get(VICTIM, 0) > 0 and len(before) == 3, f"connections per backend {before}")
        survivors = {k: v for k, v in before.items() if k != VICTIM}
        log(f"{OLD} connections on {fmt_counts(before)}")
        d.cmd(cmd="run", seconds=1)
        rehashed_before = env.worker_counter("rehashed_down")

        t0 = time.monotonic()
        hc.kill_backend(env, VICTIM_ROLE)
        down = hc.wait_for(lambda: hc.health_states(env)[("blue", VICTIM_ADDR)] == "down", 10)
        took = time.monotonic() - t0
        bound = hc.INTERVAL_S * hc.FALL + 1.0
        f.check(down, f"{VICTIM_ADDR} not marked down 10 s after its server was killed")
        f.check(took <= bound, f"{VICTIM_ADDR} marked down after {took:.2f} s, bound {bound:.2f} s")
        s["marked down"] = f"{took * 1000:.0f} ms after the kill (bound {bound * 1000:.0f} ms, polled via tandemctl)"
        b = [x for x in env.service_status("web")["colours"]["blue"]["backends"] if x["address"] == VICTIM_ADDR][0]
        f.check(b["up"] is False and "refused" in (b["health"]["last_result"] or ""),
                f"status of {VICTIM_ADDR}: {hc.dump_json(b)}")

        p = d.cmd(cmd="probe", count=100)
        f.check(p["failed"] == 0 and p["by_colour"] == {"blue": 100} and VICTIM not in p["by_backend"],
                f"new connections after the kill: {p['by_backend']} ({p['failures'][:3]})")
        s["new connections"] = fmt_counts(p["by_backend"])

        d.cmd(cmd="run", seconds=2)
        rep = d.cmd(cmd="report", tag="old", stall_ms=STALL_MS)
        f.check(rep["by_backend"] == survivors,
                f"connections alive per backend {rep['by_backend']}, expected {survivors}")
        f.check(rep["alive"] == sum(survivors.values()) and rep["kept"] == sum(survivors.values()),
                f"alive {rep['alive']}, kept {rep['kept']}, expected {sum(survivors.values())}: {rep['problems'][:3]}")
        f.check(rep["changed"] == 0, f"{rep['changed']} connections changed backend: {rep['problems'][:3]}")
        s["survivors"] = (f"{rep['kept']}/{sum(survivors.values())} untouched, max gap {rep['max_gap_ms']:.0f} ms; "
                          f"{before.get(VICTIM, 0)} on {VICTIM_ROLE} ended with it")

        hist = env.ctl_json("history", "--limit", "30")
        f.check(any(h["command"] == "health" and f"web blue {VICTIM_ADDR} up -> down" in h["change"] for h in hist),
                f"no health entry for {VICTIM_ADDR} in history: {[h['change'] for h in hist][-5:]}")

        m = hc.scrape(env)
        up = hc.sample(m, f'tandem_backend_up{{service="web",colour="blue",backend="{VICTIM_ADDR}"}} ')
        f.check(up == 0, f"tandem_backend_up of {VICTIM_ADDR} is {up}")
        f.check(hc.sample(m, 'tandem_backend_up{service="web",colour="blue",backend="10.1.0.1"} ') == 1,
                "tandem_backend_up of 10.1.0.1 is not 1")
        rehashed = env.worker_counter("rehashed_down")
        metric = sum(float(l.rsplit(" ", 1)[1]) for l in m.splitlines()
                     if l.startswith("tandem_worker_rehashed_down_total{"))
        f.check(metric >= rehashed_before and abs(metric - rehashed) <= 2,
                f"tandem_worker_rehashed_down_total {metric} vs stats {rehashed}")
        s["re-hashed flows"] = f"{rehashed - rehashed_before} (packets of the victim's dead connections)"
        ok, out = hc.promtool_check(m)
        if ok is not None:
            f.check(ok, f"promtool check metrics: {out[:500]}")
        s["promtool"] = "skipped (not installed)" if ok is None else ("ok" if ok else "FAILED")
    return env.finish()


if __name__ == "__main__":
    sys.exit(main())
