#!/usr/bin/env python3
"""e2e (a): 200 long-lived kernel TCP connections through tandemd survive a release.

200 connections are opened on blue and exchange a message every 10 ms. Then: canary 10 % to
green, switch to green, canary 10 % back to blue, rollback. Not one of the 200 may be reset,
stall for more than 200 ms or change backend. New connections land where the release says:
preview -> idle colour, canary -> the same clients every time, after the switch all green,
after the rollback all blue. 50 connections opened after the switch stay on green through the
canary and the rollback; when they close, `wait-drained web green` returns 0 and status shows
nothing left.
"""
import sys
import time

from e2e_common import (WEB_VIP, Env, colours_by_source, config_yaml, fmt_counts, log,
                        service_yaml)

OLD = 200
NEW = 50
PROBES = 100          # 2 per client address
STALL_MS = 200.0


def main():
    cfg = config_yaml([service_yaml("web", WEB_VIP, "tcp", 80, "    preview: {port: 8080}\n")],
                      tcp_closing="2s")
    env = Env("switch-canary-rollback", cfg)
    with env:
        f = env.failures
        d = env.driver
        s = env.summary

        r = d.cmd(cmd="open", count=OLD, tag="old")
        f.check(r["opened"] == OLD and r["by_colour"] == {"blue": OLD},
                f"old connections: {r['opened']} opened ({r['failures'][:3]}), by colour {r['by_colour']}, expected {OLD} blue")
        f.check(len(r["by_backend"]) == 3, f"old connections use {len(r['by_backend'])} blue backends, expected 3")
        old_backends = r["by_backend"]
        log(f"{OLD} long-lived connections on {fmt_counts(old_backends)}")
        d.cmd(cmd="run", seconds=1)

        p = d.cmd(cmd="probe", count=PROBES)
        f.check(p["by_colour"] == {"blue": PROBES}, f"before the release new connections landed {p['by_colour']}, expected all blue")
        p = d.cmd(cmd="probe", count=20, port=8080)
        f.check(p["by_colour"] == {"green": 20}, f"preview before the switch: {p['by_colour']}, expected all green (idle)")

        # Canary: 10 % of clients (by address) get green for their new connections.
        env.ctl("canary", "web", "--to", "green", "--percent", "10")
        p = d.cmd(cmd="probe", count=PROBES)
        by_src, mixed = colours_by_source(p)
        canary_green = sorted(a for a, c in by_src.items() if c == "green")
        f.check(not mixed, f"canary: clients with connections on both colours: {mixed[:5]}")
        f.check(p["failed"] == 0, f"canary probes failed: {p['failures'][:3]}")
        f.check(1 <= len(canary_green) <= 15,
                f"canary 10 %: {len(canary_green)} of {len(by_src)} clients on green, expected about 5")
        s["canary green 10%"] = f"{len(canary_green)}/{len(by_src)} clients on green ({fmt_counts(p['by_colour'])})"

        # Switch: every new connection goes green, the 200 stay on blue.
        env.ctl("switch", "web", "--to", "green")
        p = d.cmd(cmd="probe", count=PROBES)
        f.check(p["by_colour"] == {"green": PROBES}, f"after the switch new connections landed {p['by_colour']}, expected all green")
        s["new after switch"] = fmt_counts(p["by_colour"])
        p = d.cmd(cmd="probe", count=20, port=8080)
        f.check(p["by_colour"] == {"blue": 20}, f"preview after the switch: {p['by_colour']}, expected all blue (idle)")
        r = d.cmd(cmd="open", count=NEW, tag="new")
        f.check(r["opened"] == NEW and r["by_colour"] == {"green": NEW},
                f"connections opened after the switch: {r['by_colour']} ({r['failures'][:3]}), expected {NEW} green")
        st = env.service_status("web")
        f.check(st["drain"] is not None and st["drain"]["colour"] == "blue" and st["drain"]["remaining"] >= OLD,
                f"status after the switch: drain {st['drain']}, expected blue draining with >= {OLD} flows")
        d.cmd(cmd="run", seconds=1)

        # Canary back to blue for 10 % of clients (the first step of a careful rollback).
        env.ctl("canary", "web", "--to", "blue", "--percent", "10")
        p = d.cmd(cmd="probe", count=PROBES)
        by_src, mixed = colours_by_source(p)
        canary_blue = sorted(a for a, c in by_src.items() if c == "blue")
        f.check(not mixed, f"canary to blue: clients on both colours: {mixed[:5]}")
        f.check(1 <= len(canary_blue) <= 15,
                f"canary 10 % to blue: {len(canary_blue)} of {len(by_src)} clients on blue, expected about 5")
        s["canary blue 10%"] = f"{len(canary_blue)}/{len(by_src)} clients on blue"
        d.cmd(cmd="run", seconds=1)

        # Rollback: new connections blue again; everything established stays put.
        env.ctl("rollback", "web")
        p = d.cmd(cmd="probe", count=PROBES)
        f.check(p["by_colour"] == {"blue": PROBES}, f"after the rollback new connections landed {p['by_colour']}, expected all blue")
        s["new after rollback"] = fmt_counts(p["by_colour"])
        d.cmd(cmd="run", seconds=1)

        old = d.cmd(cmd="report", tag="old", stall_ms=STALL_MS)
        new = d.cmd(cmd="report", tag="new", stall_ms=STALL_MS)
        for name, rep, n, colour in (("old", old, OLD, "blue"), ("new", new, NEW, "green")):
            f.check(rep["alive"] == n and rep["kept"] == n,
                    f"{name} connections: alive {rep['alive']}, kept {rep['kept']} of {n}; problems {rep['problems'][:3]}")
            f.check(rep["reset"] == 0 and rep["eof"] == 0 and rep["failed"] == 0,
                    f"{name} connections: reset {rep['reset']}, eof {rep['eof']}, failed {rep['failed']}")
            f.check(rep["changed"] == 0, f"{name} connections: {rep['changed']} changed backend: {rep['problems'][:3]}")
            f.check(rep["stalled"] == 0, f"{name} connections: {rep['stalled']} stalled > {STALL_MS:.0f} ms (max gap {rep['max_gap_ms']} ms)")
            f.check(rep["by_colour"] == {colour: n}, f"{name} connections by colour {rep['by_colour']}, expected {colour}")
        f.check(old["by_backend"] == old_backends, f"old connections per backend {old['by_backend']}, was {old_backends}")
        s["long-lived"] = (f"{OLD + NEW} kept {old['kept'] + new['kept']} reset {old['reset'] + new['reset']} "
                           f"stalled {old['stalled'] + new['stalled']} changed {old['changed'] + new['changed']} "
                           f"max gap {max(old['max_gap_ms'], new['max_gap_ms']):.0f} ms, "
                           f"{old['replies'] + new['replies']} replies")

        # Green drains: not before its connections close, then within the closing timeout.
        r = env.ctl("wait-drained", "web", "green", "--timeout", "1s", expect=1)
        d.cmd(cmd="close", tag="new")
        t0 = time.monotonic()
        r = env.ctl("wait-drained", "web", "green", "--timeout", "20s")
        drained_s = time.monotonic() - t0
        st = env.service_status("web")
        f.check(st["colours"]["green"]["live_flows"] == 0,
                f"status after wait-drained: green live flows {st['colours']['green']['live_flows']}")
        f.check(st["drain"] is None or st["drain"]["remaining"] == 0, f"status after wait-drained: drain {st['drain']}")
        s["wait-drained green"] = f"exit {r.returncode} {drained_s:.1f} s after the last green connection closed"

        # The old connections close too; blue (active) counts them down to zero.
        d.cmd(cmd="close", tag="old")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and env.live_flows("web", "blue") != 0:
            time.sleep(0.2)
        left = env.live_flows("web", "blue")
        f.check(left == 0, f"blue live flows {left} 10 s after every connection closed")
        env.ctl("status", "web")
        drops = {}
        for w in env.ctl_json("stats")["workers"]:
            for k, v in w["drops"].items():
                drops[k] = drops.get(k, 0) + v
        s["tandemd drops"] = fmt_counts(drops)
    return env.finish()


if __name__ == "__main__":
    sys.exit(main())
