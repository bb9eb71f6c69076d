#!/usr/bin/env python3
"""e2e (b): UDP flows stick to their backend across a switch until their idle timeout.

30 UDP flows (one socket each, many source addresses) talk to the dns VIP on blue. After
`switch dns --to green` they keep sending every 0.5 s for longer than the UDP timeout (3 s):
every datagram must still reach the backend it reached first (the timeout is an idle timeout).
New flows land on green. Then the old flows stay silent for longer than the timeout: their
entries expire (`wait-drained dns blue` returns 0) and their next datagram lands on green.
"""
import sys
import time

from e2e_common import DNS_VIP, Env, config_yaml, fmt_counts, log, service_yaml

FLOWS = 30
UDP_TIMEOUT_S = 3
KEEP_SENDING_S = 4.5   # longer than the timeout: refreshed flows must not expire


def colours(flows, key):
    out = {}
    for fl in flows:
        c = fl[key].split()[0] if fl[key] else "lost"
        out[c] = out.get(c, 0) + 1
    return out


def main():
    cfg = config_yaml([service_yaml("dns", DNS_VIP, "udp", 53)], udp_timeout=f"{UDP_TIMEOUT_S}s")
    env = Env("udp-sticky", cfg, vip=DNS_VIP, port=53)
    with env:
        f = env.failures
        d = env.driver
        s = env.summary

        d.cmd(cmd="udp_open", tag="old", count=FLOWS, vip=DNS_VIP, port=53)
        first = d.cmd(cmd="udp_send", tag="old")["flows"]
        f.check(colours(first, "last") == {"blue": FLOWS}, f"UDP flows before the switch: {colours(first, 'last')}, expected all blue")
        backends = {}
        for fl in first:
            backends[fl["last"]] = backends.get(fl["last"], 0) + 1
        f.check(len(backends) == 3, f"UDP flows use {len(backends)} blue backends, expected 3: {backends}")
        log(f"{FLOWS} UDP flows on {fmt_counts(backends)}")

        env.ctl("switch", "dns", "--to", "green")
        moved, lost, rounds = 0, 0, 0
        end = time.monotonic() + KEEP_SENDING_S
        while time.monotonic() < end:
            time.sleep(0.5)
            for fl in d.cmd(cmd="udp_send", tag="old")["flows"]:
                if fl["last"] is None:
                    lost += 1
                elif fl["last"] != fl["first"]:
                    moved += 1
            rounds += 1
        f.check(moved == 0, f"{moved} datagrams of refreshed flows reached another backend after the switch")
        f.check(lost == 0, f"{lost} datagrams of refreshed flows got no answer")
        s["refreshed flows"] = (f"{FLOWS} kept their backend for {KEEP_SENDING_S} s after the switch "
                                f"({rounds} rounds, moved {moved}, lost {lost})")

        d.cmd(cmd="udp_open", tag="new", count=FLOWS, vip=DNS_VIP, port=53)
        new = d.cmd(cmd="udp_send", tag="new")["flows"]
        f.check(colours(new, "last") == {"green": FLOWS}, f"new UDP flows after the switch: {colours(new, 'last')}, expected all green")
        s["new flows"] = fmt_counts(colours(new, "last"))

        # Silence: the old flows' entries expire after the idle timeout.
        t0 = time.monotonic()
        env.ctl("wait-drained", "dns", "blue", "--timeout", f"{UDP_TIMEOUT_S + 7}s")
        idle_s = time.monotonic() - t0
        f.check(idle_s >= UDP_TIMEOUT_S - 0.6, f"blue drained after {idle_s:.1f} s of silence, before the {UDP_TIMEOUT_S} s timeout")
        after = d.cmd(cmd="udp_send", tag="old")["flows"]
        f.check(colours(after, "last") == {"green": FLOWS},
                f"old flows after {idle_s:.1f} s idle: {colours(after, 'last')}, expected all green")
        s["after idle"] = f"blue drained after {idle_s:.1f} s silent (timeout {UDP_TIMEOUT_S} s), old flows now {fmt_counts(colours(after, 'last'))}"
        st = env.service_status("dns")
        f.check(st["colours"]["blue"]["live_flows"] == 0, f"status: blue live flows {st['colours']['blue']['live_flows']}")
        env.ctl("status", "dns")
    return env.finish()


if __name__ == "__main__":
    sys.exit(main())
