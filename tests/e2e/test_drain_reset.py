#!/usr/bin/env python3
"""e2e (c): a drain deadline with --on-drain-timeout reset.

100 long-lived connections on blue; `switch web --to green --drain-timeout 2s
--on-drain-timeout reset --drain-spread 1s`; 60 connections opened afterwards land on green.
Every blue connection must be reset on both ends (the client sees ECONNRESET, its blue backend
sees a reset) between the deadline and the end of the spread window, spread over that window;
not one green connection may be touched. Then `wait-drained web blue` returns 0 and status
shows nothing left.
"""
import sys
import time

from e2e_common import BLUE, GREEN, WEB_VIP, Env, config_yaml, service_yaml

OLD = 100
NEW = 60
TIMEOUT_S = 2.0
SPREAD_S = 1.0
SLACK_S = 0.5        # a client notices a reset at its next message (10 ms) plus scheduling on a busy 2-core box


def backend_resets(env, backends):
    return {role: env.backend_stats(role)["closed_reset"] for _, _, role in backends}


def main():
    cfg = config_yaml([service_yaml("web", WEB_VIP, "tcp", 80)], tcp_closing="2s")
    env = Env("drain-timeout-reset", cfg)
    with env:
        f = env.failures
        d = env.driver
        s = env.summary

        r = d.cmd(cmd="open", count=OLD, tag="old")
        f.check(r["opened"] == OLD and r["by_colour"] == {"blue": OLD},
                f"old connections: {r['by_colour']} ({r['failures'][:3]}), expected {OLD} blue")
        d.cmd(cmd="run", seconds=0.5)
        blue_before = backend_resets(env, BLUE)
        green_before = backend_resets(env, GREEN)

        sw = env.ctl("switch", "web", "--to", "green", "--drain-timeout", f"{TIMEOUT_S:.0f}s",
                     "--on-drain-timeout", "reset", "--drain-spread", f"{SPREAD_S:.0f}s")
        window = (sw.t0 + TIMEOUT_S, sw.t1 + TIMEOUT_S + SPREAD_S + SLACK_S)
        r = d.cmd(cmd="open", count=NEW, tag="new")
        f.check(r["opened"] == NEW and r["by_colour"] == {"green": NEW},
                f"connections opened after the switch: {r['by_colour']} ({r['failures'][:3]}), expected {NEW} green")

        # Before the deadline nothing happens to blue.
        d.cmd(cmd="run", seconds=max(0.0, sw.t0 + TIMEOUT_S - 0.3 - time.monotonic()))
        early = d.cmd(cmd="report", tag="old")
        f.check(early["alive"] == OLD, f"{OLD - early['alive']} blue connections ended before the drain deadline")

        # Through the spread window and a little after.
        d.cmd(cmd="run", seconds=max(0.0, window[1] + 0.5 - time.monotonic()))
        old = d.cmd(cmd="report", tag="old")
        new = d.cmd(cmd="report", tag="new")

        f.check(old["reset"] == OLD, f"blue connections reset: {old['reset']} of {OLD} "
                                     f"(alive {old['alive']}, eof {old['eof']}, failed {old['failed']}): {old['problems'][:3]}")
        times = sorted(old["reset_times"])
        if times:
            first, last = times[0] - sw.t0, times[-1] - sw.t0
            f.check(times[0] >= window[0] - 0.05,
                    f"first client reset {first:.3f} s after the switch, before the {TIMEOUT_S:.0f} s deadline")
            f.check(times[-1] <= window[1],
                    f"last client reset {last:.3f} s after the switch, after the spread window "
                    f"({TIMEOUT_S + SPREAD_S:.0f} s + {SLACK_S} s slack)")
            f.check(last - first >= SPREAD_S / 2,
                    f"client resets came within {last - first:.3f} s: not spread over {SPREAD_S:.0f} s")
            s["client resets"] = f"{len(times)}/{OLD} at {first:.2f}..{last:.2f} s after the switch (window {TIMEOUT_S:.0f}..{TIMEOUT_S + SPREAD_S:.0f} s)"
        f.check(new["alive"] == NEW and new["kept"] == NEW and new["reset"] == 0 and new["changed"] == 0
                and new["stalled"] == 0,
                f"green connections: alive {new['alive']} kept {new['kept']} reset {new['reset']} "
                f"changed {new['changed']} stalled {new['stalled']} (max gap {new['max_gap_ms']} ms): {new['problems'][:3]}")
        s["green"] = f"{NEW} kept {new['kept']} reset {new['reset']} stalled {new['stalled']} max gap {new['max_gap_ms']:.0f} ms"

        # The backend side: each blue backend saw exactly its share of resets, green none.
        blue_after = backend_resets(env, BLUE)
        green_after = backend_resets(env, GREEN)
        blue_resets = sum(blue_after[k] - blue_before[k] for k in blue_after)
        green_resets = sum(green_after[k] - green_before[k] for k in green_after)
        f.check(blue_resets == OLD, f"blue backends saw {blue_resets} resets, expected {OLD} ({blue_after})")
        f.check(green_resets == 0, f"green backends saw {green_resets} resets, expected 0")
        server_times = []
        for _, _, role in BLUE:
            server_times += env.backend_stats(role)["reset_times"]
        late = [t - sw.t0 for t in server_times if not (window[0] - 0.05 <= t <= window[1])]
        f.check(not late, f"{len(late)} backend resets outside the window: {sorted(late)[:5]}")
        s["backend resets"] = f"blue {blue_resets} green {green_resets}"
        if server_times:
            s["backend resets"] += (f" at {min(server_times) - sw.t0:.2f}..{max(server_times) - sw.t0:.2f} s "
                                    "after the switch")
        resets = env.worker_counter("drain_resets")
        f.check(resets == OLD, f"tandemd drain_resets {resets}, expected {OLD}")

        r = env.ctl("wait-drained", "web", "blue", "--timeout", "10s")
        st = env.service_status("web")
        f.check(st["colours"]["blue"]["live_flows"] == 0, f"blue live flows {st['colours']['blue']['live_flows']} after the drain")
        f.check(st["drain"] is None or st["drain"]["remaining"] == 0, f"status drain {st['drain']}")
        s["wait-drained blue"] = f"exit {r.returncode}"
        # A client whose RST from tandemd did not carry exactly its rcv_nxt (tandemd sees only the
        # client->server direction) answers with a challenge ACK (RFC 5961); that ACK is picked
        # up mid-flow on green and the green backend's kernel resets it. Reported, not judged.
        pickups = env.worker_counter("midflow_pickups")
        s["status"] = (f"blue live {st['colours']['blue']['live_flows']}, "
                       f"green live {st['colours']['green']['live_flows']} "
                       f"({NEW} connections + {pickups} mid-flow pickups after resets)")
        env.ctl("status", "web")
        d.cmd(cmd="close", tag="new")
    return env.finish()


if __name__ == "__main__":
    sys.exit(main())
