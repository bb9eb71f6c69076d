#!/usr/bin/env python3
"""e2e (health b): a bake window rolls back by itself when the new colour's servers die.

200 long-lived kernel TCP connections on blue. `switch web --to green --bake 30s
--auto-rollback --min-healthy 0.8`; new connections land on green. Then every green server is
killed: tandem must roll back to blue within the bake window on its own, not one blue
connection may break, stall or change backend, new connections must land on blue again, and
history, status and the metrics endpoint must show the auto-rollback. Bad requests to the
endpoint get 4xx and it keeps serving; its output passes `promtool check metrics`.
"""
import sys
import time

import health_common as hc  # first: it selects af_packet
from e2e_common import GREEN, WEB_VIP, Env, config_yaml, fmt_counts, log, service_yaml

OLD = 200
NEW = 30
BAKE_S = 30
STALL_MS = 300.0


def main():
    cfg = hc.with_metrics(config_yaml([service_yaml("web", WEB_VIP, "tcp", 80, hc.health_yaml())]))
    env = Env("health-bake-rollback", cfg)
    with env:
        f, d, s = env.failures, env.driver, env.summary
        if not hc.all_backends_up(env):
            return env.finish()

        r = d.cmd(cmd="open", count=OLD, tag="old")
        f.check(r["opened"] == OLD and r["by_colour"] == {"blue": OLD},
                f"old connections: {r['by_colour']} ({r['failures'][:3]}), expected {OLD} blue")
        old_backends = r["by_backend"]
        d.cmd(cmd="run", seconds=1)

        env.ctl("switch", "web", "--to", "green", "--bake", f"{BAKE_S}s", "--auto-rollback", "--min-healthy", "0.8")
        st = env.service_status("web")
        f.check(st["active"] == "green" and st["bake"] and st["bake"]["state"] == "baking",
                f"after the switch: active {st['active']}, bake {st['bake']}")
        p = d.cmd(cmd="probe", count=50)
        f.check(p["by_colour"] == {"green": 50}, f"new connections during the bake: {p['by_colour']}")
        r = d.cmd(cmd="open", count=NEW, tag="new")
        f.check(r["by_colour"] == {"green": NEW}, f"connections opened during the bake: {r['by_colour']}")
        d.cmd(cmd="run", seconds=1)

        t0 = time.monotonic()
        for _, _, role in GREEN:
            hc.kill_backend(env, role)
        back = hc.wait_for(lambda: env.service_status("web")["active"] == "blue", BAKE_S)
        took = time.monotonic() - t0
        f.check(back, f"still on green {took:.1f} s after every green server died (bake window {BAKE_S} s)")
        s["auto-rollback"] = f"{took * 1000:.0f} ms after the green servers died (window {BAKE_S} s)"

        p = d.cmd(cmd="probe", count=50)
        f.check(p["failed"] == 0 and p["by_colour"] == {"blue": 50},
                f"new connections after the rollback: {p['by_colour']} ({p['failures'][:3]})")
        d.cmd(cmd="run", seconds=2)
        old = d.cmd(cmd="report", tag="old", stall_ms=STALL_MS)
        f.check(old["alive"] == OLD and old["kept"] == OLD,
                f"blue connections: alive {old['alive']}, kept {old['kept']} of {OLD}: {old['problems'][:3]}")
        f.check(old["reset"] == 0 and old["eof"] == 0 and old["changed"] == 0 and old["stalled"] == 0,
                f"blue connections: reset {old['reset']} eof {old['eof']} changed {old['changed']} stalled {old['stalled']}")
        f.check(old["by_backend"] == old_backends, f"blue connections per backend {old['by_backend']}, was {old_backends}")
        s["blue connections"] = (f"{old['kept']}/{OLD} untouched, max gap {old['max_gap_ms']:.0f} ms, "
                                 f"{old['replies']} replies")

        st = env.service_status("web")
        bake = st["bake"] or {}
        f.check(bake.get("state") == "rolled_back" and str(bake.get("reason", "")).startswith("auto-rollback: green healthy"),
                f"bake after the rollback: {bake}")
        hist = env.ctl_json("history", "--limit", "30")
        auto = [h for h in hist if h["command"] == "auto-rollback web"]
        f.check(len(auto) == 1 and "(auto-rollback: green healthy" in auto[0]["change"] and auto[0]["uid"] == -1,
                f"auto-rollback history entries: {auto}")
        if auto:
            s["history"] = auto[0]["change"]
        env.ctl("status", "web")

        # The endpoint: bad requests get 4xx and change nothing.
        for data, want in ((b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405"),
                           (b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n", "404"),
                           (b"\x16\x03\x01 hello\r\n\r\n", "400"),
                           (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n", "400")):
            line = hc.raw_http(env, data)
            f.check(line.startswith("HTTP/1.1 " + want), f"{data[:30]!r}...: {line!r}, expected {want}")
        m = hc.scrape(env)
        checks = {'tandem_rollbacks_total{service="web",trigger="auto",result="ok"} ': 1,
                  'tandem_bake_state{service="web",colour="green",state="rolled_back"} ': 1,
                  'tandem_service_active{service="web",colour="blue"} ': 1,
                  'tandem_switches_total{service="web",result="ok"} ': 1}
        for prefix, want in checks.items():
            got = hc.sample(m, prefix)
            f.check(got == want, f"{prefix.strip()} = {got}, expected {want}")
        down = [hc.sample(m, f'tandem_backend_up{{service="web",colour="green",backend="{a}"}} ') for a, _, _ in GREEN]
        f.check(down == [0, 0, 0], f"tandem_backend_up of the green backends: {down}")
        ok, out = hc.promtool_check(m)
        if ok is not None:
            f.check(ok, f"promtool check metrics: {out[:500]}")
        s["metrics"] = "promtool skipped" if ok is None else "promtool ok" if ok else "promtool FAILED"
    return env.finish()


if __name__ == "__main__":
    sys.exit(main())
