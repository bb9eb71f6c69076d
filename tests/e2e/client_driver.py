#!/usr/bin/env python3
"""Client traffic for tandem's end-to-end tests and demo. Runs in the client namespace.

Long-lived TCP connections to VIP:PORT from many source addresses each send "P <n>\\n" every
--interval-ms and expect "<pool> <address> P <n>\\n" back from the identity server
(tests/e2e/identity_server.py). Per connection it records the backend identity at the start
(from the server's HELLO line), any change, resets (ECONNRESET), an unexpected end (EOF) and the
longest gap between two replies. Short connections ("probes") connect, read the identity,
exchange one message and close, to show where new connections land. UDP flows send a datagram
on demand and record which backend answered.

Two front ends:
  serve   JSON commands on stdin, one JSON result per line on stdout (used by the tests):
          {"cmd": "open", "count": 200, "tag": "old"}       long-lived connections
          {"cmd": "probe", "count": 100}                      short connections
          {"cmd": "report", "tag": "old"}                     per-tag summary
          {"cmd": "close", "tag": "old"}                      close them (FIN)
          {"cmd": "udp_open", "count": 30, "tag": "u"}        UDP flows (one socket each)
          {"cmd": "udp_send", "tag": "u"}                     one datagram per flow
          {"cmd": "now"} / {"cmd": "quit"}
  probe   --count N short connections, one line: how many landed on each backend
  steady  endless traffic for the demo: long-lived connections that live a random while and are
          replaced, plus a stream of new short connections; prints one line per second.
Times are time.monotonic() seconds (CLOCK_MONOTONIC: the same clock in every namespace).
"""
import argparse
import errno
import ipaddress
import json
import random
import selectors
import socket
import sys
import time

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE


def expand_sources(spec):
    """'10.77.1.1-10.77.1.50,10.77.2.1' -> list of addresses."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = (ipaddress.IPv4Address(x) for x in part.split("-", 1))
            out.extend(str(ipaddress.IPv4Address(i)) for i in range(int(a), int(b) + 1))
        else:
            out.append(str(ipaddress.IPv4Address(part)))
    return out


class Conn:
    __slots__ = ("sock", "src", "tag", "kind", "state", "identity", "changes", "buf", "seq",
                 "outstanding", "sent_at", "last_reply", "max_gap", "opened_at", "ended_at",
                 "error", "replies", "deadline", "port")

    def __init__(self, sock, src, tag, kind):
        self.sock = sock
        self.src = src
        self.tag = tag
        self.kind = kind            # "long" or "probe"
        self.state = "connecting"   # connecting, hello, running, done, closed, reset, eof, failed
        self.identity = None        # "blue 10.1.0.1"
        self.changes = []           # identities seen after the first one
        self.buf = b""
        self.seq = 0
        self.outstanding = False
        self.sent_at = 0.0
        self.last_reply = 0.0
        self.max_gap = 0.0
        self.opened_at = time.monotonic()
        self.ended_at = None
        self.error = None
        self.replies = 0
        self.deadline = None        # steady mode: when to close
        self.port = 0

    @property
    def colour(self):
        return self.identity.split()[0] if self.identity else None


class Engine:
    def __init__(self, vip, port, sources, interval_ms=10, connect_timeout=5.0):
        self.vip = vip
        self.port = port
        self.sources = sources
        self.next_source = 0
        self.interval = interval_ms / 1000.0
        self.connect_timeout = connect_timeout
        self.sel = selectors.DefaultSelector()
        self.conns = []             # every TCP connection ever opened (for reports)
        self.running = set()        # long-lived connections exchanging messages
        self.pending = set()        # connecting or waiting for HELLO / probe echo
        self.udp = {}               # tag -> list of dicts
        self.next_tick = time.monotonic()

    # --- TCP --------------------------------------------------------------------------------
    def pick_source(self):
        s = self.sources[self.next_source % len(self.sources)]
        self.next_source += 1
        return s

    def connect(self, tag, kind, src=None, port=None):
        src = src or self.pick_source()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = Conn(s, src, tag, kind)
        try:
            s.bind((src, 0))
            c.port = s.getsockname()[1]
            rc = s.connect_ex((self.vip, port or self.port))
        except OSError as e:
            rc = e.errno
        self.conns.append(c)
        if rc not in (0, errno.EINPROGRESS):
            self._end(c, "failed", f"connect: {errno.errorcode.get(rc, rc)}")
            return c
        self.pending.add(c)
        self.sel.register(s, EVENT_WRITE, c)
        return c

    def _end(self, c, state, error=None):
        if c.state in ("done", "closed", "reset", "eof", "failed"):
            return
        c.state = state
        c.error = error
        c.ended_at = time.monotonic()
        self.running.discard(c)
        self.pending.discard(c)
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        if state in ("reset", "failed"):
            # Do not send anything more (a FIN after a reset would only confuse captures).
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except OSError:
                pass
        c.sock.close()

    def close(self, c):
        """Graceful close (FIN) of a healthy connection."""
        self._end(c, "closed")

    def _on_event(self, c, mask, now):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._end(c, "failed", f"connect: {errno.errorcode.get(err, err)}")
                return
            c.state = "hello"
            self.sel.modify(c.sock, EVENT_READ, c)
            return
        try:
            data = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            self._end(c, "reset", "ECONNRESET")
            return
        except OSError as e:
            self._end(c, "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "failed",
                      errno.errorcode.get(e.errno, str(e)))
            return
        if not data:
            self._end(c, "eof", "EOF from server")
            return
        c.buf += data
        while b"\n" in c.buf:
            line, c.buf = c.buf.split(b"\n", 1)
            self._on_line(c, line.decode(errors="replace"), now)

    def _on_line(self, c, line, now):
        if c.state == "hello":
            if not line.startswith("HELLO "):
                self._end(c, "failed", f"expected HELLO, got {line!r}")
                return
            c.identity = line[6:]
            c.last_reply = now
            if c.kind == "long":
                c.state = "running"
                self.pending.discard(c)
                self.running.add(c)
            else:
                c.state = "probe"
                self._send(c, now)
            return
        parts = line.split(" ", 2)
        ident = " ".join(parts[:2])
        if ident != c.identity and (not c.changes or c.changes[-1] != ident):
            c.changes.append(ident)
        c.replies += 1
        gap = now - c.last_reply
        if gap > c.max_gap:
            c.max_gap = gap
        c.last_reply = now
        c.outstanding = False
        if c.kind == "probe":
            c.state = "done"
            self.pending.discard(c)
            try:
                self.sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.ended_at = now
            c.sock.close()

    def _send(self, c, now):
        c.seq += 1
        try:
            c.sock.send(b"P %d\n" % c.seq)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._end(c, "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "failed",
                      errno.errorcode.get(e.errno, str(e)))
            return
        c.outstanding = True
        c.sent_at = now

    def tick(self, now):
        for c in list(self.running):
            if not c.outstanding:
                self._send(c, now)
        for c in list(self.pending):
            if now - c.opened_at > self.connect_timeout:
                self._end(c, "failed", f"no answer within {self.connect_timeout:.0f}s ({c.state})")

    def step(self, max_wait):
        """One loop iteration: events, then the message tick when due."""
        now = time.monotonic()
        wait = max(0.0, min(max_wait, self.next_tick - now))
        for key, mask in self.sel.select(wait):
            if isinstance(key.data, Conn):
                self._on_event(key.data, mask, time.monotonic())
            else:
                key.data(key.fileobj)
        now = time.monotonic()
        if now >= self.next_tick:
            self.tick(now)
            self.next_tick += self.interval
            if self.next_tick < now:
                self.next_tick = now + self.interval

    def run_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.step(end - time.monotonic())

    def run_until(self, cond, timeout):
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            self.step(min(0.05, max(0.0, end - time.monotonic())))
        return cond()

    # --- UDP --------------------------------------------------------------------------------
    def udp_open(self, tag, count, port, vip=None):
        flows = self.udp.setdefault(tag, [])
        for _ in range(count):
            src = self.pick_source()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0))
            s.connect((vip or self.vip, port))
            s.setblocking(False)
            flows.append({"sock": s, "src": src, "port": s.getsockname()[1], "first": None,
                          "last": None, "history": [], "seq": 0})
        return flows

    def udp_send(self, tag, timeout=1.0):
        flows = self.udp.get(tag, [])
        waiting = {}
        for f in flows:
            f["seq"] += 1
            token = b"U %d %d" % (f["port"], f["seq"])
            try:
                f["sock"].send(token)
                waiting[f["sock"]] = (f, token)
            except OSError:
                f["last"] = None
        for f, _ in waiting.values():
            f["last"] = None
        sel = selectors.DefaultSelector()
        for s in waiting:
            sel.register(s, EVENT_READ)
        end = time.monotonic() + timeout
        left = dict(waiting)
        while left and time.monotonic() < end:
            # Keep the TCP connections going while we wait.
            self.step(0.0)
            for key, _ in sel.select(0.005):
                s = key.fileobj
                try:
                    data = s.recv(2048)
                except OSError:
                    continue
                f, token = left.get(s, (None, None))
                if f is None or not data.endswith(token):
                    continue
                ident = " ".join(data.decode(errors="replace").split(" ", 2)[:2])
                f["last"] = ident
                if f["first"] is None:
                    f["first"] = ident
                f["history"].append(ident)
                del left[s]
        sel.close()
        return flows

    # --- reports ----------------------------------------------------------------------------
    def report(self, tag=None, stall_ms=200.0):
        now = time.monotonic()
        sel = [c for c in self.conns if c.kind == "long" and (tag is None or c.tag == tag)]
        out = {"tag": tag, "total": len(sel), "alive": 0, "kept": 0, "reset": 0, "eof": 0,
               "failed": 0, "closed": 0, "changed": 0, "stalled": 0, "max_gap_ms": 0.0,
               "by_colour": {}, "by_backend": {}, "reset_times": [], "problems": [],
               "now": now, "replies": 0}
        for c in sel:
            gap = c.max_gap
            if c.state == "running" and c.outstanding:
                gap = max(gap, now - c.last_reply)
            out["max_gap_ms"] = max(out["max_gap_ms"], round(gap * 1000.0, 1))
            out["replies"] += c.replies
            stalled = gap * 1000.0 > stall_ms
            if c.state == "running":
                out["alive"] += 1
                out["by_colour"][c.colour] = out["by_colour"].get(c.colour, 0) + 1
                out["by_backend"][c.identity] = out["by_backend"].get(c.identity, 0) + 1
            elif c.state in out:
                out[c.state] += 1
            if c.state == "reset":
                out["reset_times"].append(c.ended_at)
            if c.changes:
                out["changed"] += 1
            if stalled:
                out["stalled"] += 1
            if c.state in ("running", "closed") and not c.changes and not stalled:
                out["kept"] += 1
            if (c.changes or stalled or c.state in ("eof", "failed")) and len(out["problems"]) < 10:
                out["problems"].append({"src": f"{c.src}:{c.port}", "state": c.state,
                                        "identity": c.identity, "changes": c.changes,
                                        "max_gap_ms": round(gap * 1000.0, 1), "error": c.error})
        return out

    def probe(self, count, tag="probe", timeout=5.0, port=None):
        started = [self.connect(tag, "probe", port=port) for _ in range(count)]
        self.run_until(lambda: all(c.state not in ("connecting", "hello", "probe")
                                   for c in started), timeout)
        by_colour, by_source, by_backend, failures = {}, {}, {}, []
        for c in started:
            if c.state != "done":
                self._end(c, "failed", c.error or f"unfinished ({c.state})")
                failures.append({"src": c.src, "error": c.error})
                continue
            by_colour[c.colour] = by_colour.get(c.colour, 0) + 1
            by_backend[c.identity] = by_backend.get(c.identity, 0) + 1
            by_source.setdefault(c.src, []).append(c.colour)
        # Probes are finished: forget them (reports cover long-lived connections only).
        self.conns = [c for c in self.conns if c.kind != "probe"]
        return {"count": count, "by_colour": by_colour, "by_backend": by_backend,
                "by_source": by_source, "failed": len(failures), "failures": failures[:10]}


# --- serve: JSON commands on stdin ---------------------------------------------------------

def serve(engine, args):
    import os
    stdin = sys.stdin.buffer
    os.set_blocking(stdin.fileno(), False)
    inbox = [b""]
    commands = []

    def on_stdin(_f):
        data = os.read(stdin.fileno(), 65536)
        if not data:
            commands.append({"cmd": "quit"})
            return
        inbox[0] += data
        while b"\n" in inbox[0]:
            line, inbox[0] = inbox[0].split(b"\n", 1)
            if line.strip():
                commands.append(json.loads(line))

    engine.sel.register(stdin, EVENT_READ, on_stdin)

    def reply(obj):
        obj.setdefault("now", time.monotonic())
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True, "sources": len(engine.sources)})
    while True:
        engine.step(0.05)
        while commands:
            cmd = commands.pop(0)
            name = cmd.get("cmd")
            try:
                if name == "quit":
                    reply({"ok": True})
                    return
                if name == "now":
                    reply({"ok": True})
                elif name == "open":
                    tag = cmd.get("tag", "long")
                    new = [engine.connect(tag, "long") for _ in range(int(cmd["count"]))]
                    engine.run_until(lambda: all(c.state != "connecting" and c.state != "hello"
                                                 for c in new), engine.connect_timeout + 1)
                    by_colour, by_backend = {}, {}
                    for c in new:
                        if c.state == "running":
                            by_colour[c.colour] = by_colour.get(c.colour, 0) + 1
                            by_backend[c.identity] = by_backend.get(c.identity, 0) + 1
                    failed = [{"src": c.src, "error": c.error} for c in new if c.state != "running"]
                    reply({"ok": True, "opened": len(new) - len(failed), "failed": len(failed),
                           "failures": failed[:10], "by_colour": by_colour,
                           "by_backend": by_backend})
                elif name == "probe":
                    r = engine.probe(int(cmd["count"]), cmd.get("tag", "probe"),
                                     port=cmd.get("port"))
                    r["ok"] = True
                    reply(r)
                elif name == "report":
                    r = engine.report(cmd.get("tag"), float(cmd.get("stall_ms", 200)))
                    r["ok"] = True
                    reply(r)
                elif name == "close":
                    tag = cmd.get("tag")
                    n = 0
                    for c in list(engine.running):
                        if tag is None or c.tag == tag:
                            engine.close(c)
                            n += 1
                    reply({"ok": True, "closed": n})
                elif name == "run":
                    engine.run_for(float(cmd.get("seconds", 1)))
                    reply({"ok": True})
                elif name == "udp_open":
                    engine.udp_open(cmd.get("tag", "udp"), int(cmd["count"]), int(cmd.get("port", 53)),
                                    cmd.get("vip"))
                    reply({"ok": True})
                elif name == "udp_send":
                    flows = engine.udp_send(cmd.get("tag", "udp"), float(cmd.get("timeout", 1.0)))
                    reply({"ok": True, "flows": [{"src": f"{f['src']}:{f['port']}", "first": f["first"],
                                                  "last": f["last"]} for f in flows]})
                else:
                    reply({"ok": False, "error": f"unknown command {name!r}"})
            except Exception as e:  # report, keep serving
                reply({"ok": False, "error": f"{type(e).__name__}: {e}"})


# --- steady: the demo's traffic ------------------------------------------------------------

def steady(engine, args):
    """Keeps --connections long-lived connections (each lives a random --lifetime range, then
    closes and is replaced) and opens --new-per-second short connections. Prints a line per
    second: what the clients see."""
    lo, hi = (float(x) for x in args.lifetime.split("-"))
    end = time.monotonic() + args.duration if args.duration else None
    rng = random.Random(7)
    per_second = {}
    resets = 0
    next_print = time.monotonic() + 1.0
    next_probe = time.monotonic()
    probe_gap = 1.0 / args.new_per_second if args.new_per_second > 0 else None
    probes = []
    totals = {"opened": 0, "new": 0, "resets": 0, "eof": 0, "failed": 0, "max_gap": 0.0}
    import signal
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while end is None or time.monotonic() < end:
            now = time.monotonic()
            live = [c for c in engine.running]
            opening = [c for c in engine.pending if c.kind == "long"]
            for _ in range(args.connections - len(live) - len(opening)):
                c = engine.connect("steady", "long")
                c.deadline = now + rng.uniform(lo, hi)
                totals["opened"] += 1
            for c in live:
                if c.deadline is not None and now >= c.deadline:
                    engine.close(c)
            if probe_gap is not None and now >= next_probe:
                probes.append(engine.connect("probe", "probe"))
                next_probe += probe_gap
                if next_probe < now:
                    next_probe = now + probe_gap
            engine.step(0.01)
            for c in [p for p in probes if p.state not in ("connecting", "hello", "probe")]:
                probes.remove(c)
                if c.state == "done":
                    per_second[c.colour] = per_second.get(c.colour, 0) + 1
                    totals["new"] += 1
                else:
                    totals["failed"] += 1
            # Forget finished connections, but count resets first.
            done = [c for c in engine.conns if c.state in ("closed", "reset", "eof", "failed", "done")]
            for c in done:
                if c.state in ("reset", "eof"):
                    resets += 1
                    totals["resets" if c.state == "reset" else "eof"] += 1
                elif c.state == "failed":
                    totals["failed"] += 1
                if c.kind == "long":
                    totals["max_gap"] = max(totals["max_gap"], c.max_gap)
            if done:
                engine.conns = [c for c in engine.conns if c not in set(done)]
            if time.monotonic() >= next_print:
                next_print += 1.0
                by = {}
                gap = 0.0
                for c in engine.running:
                    by[c.colour] = by.get(c.colour, 0) + 1
                    gap = max(gap, c.max_gap)
                    c.max_gap = 0.0
                totals["max_gap"] = max(totals["max_gap"], gap)
                print(f"  clients: open connections blue {by.get('blue', 0):3d} green {by.get('green', 0):3d}"
                      f" | new in the last second: blue {per_second.get('blue', 0):3d} green {per_second.get('green', 0):3d}"
                      f" | resets {resets}, longest reply gap {gap * 1000:.0f} ms", flush=True)
                per_second = {}
    except KeyboardInterrupt:
        pass
    for c in engine.running:
        totals["max_gap"] = max(totals["max_gap"], c.max_gap)
    print(f"  clients, in total: {totals['opened']} long-lived and {totals['new']} short connections; "
          f"resets {totals['resets']}, unexpected ends {totals['eof']}, failures {totals['failed']}, "
          f"longest gap between two replies {totals['max_gap'] * 1000:.0f} ms", flush=True)


def main():
    ap = argparse.ArgumentParser(description="client traffic for tandem's e2e tests and demo")
    ap.add_argument("--vip", default="198.51.100.10")
    ap.add_argument("--port", type=int, default=80)
    ap.add_argument("--sources", default="10.77.1.1-10.77.1.50",
                    help="source addresses: ranges and single addresses, comma separated")
    ap.add_argument("--interval-ms", type=float, default=10.0,
                    help="message interval on each long-lived connection")
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("serve", help="JSON commands on stdin (tests)")
    st = sub.add_parser("steady", help="endless traffic with a line per second (demo)")
    st.add_argument("--connections", type=int, default=60)
    st.add_argument("--lifetime", default="5-20", help="seconds a long-lived connection lives: MIN-MAX")
    st.add_argument("--new-per-second", type=float, default=20)
    st.add_argument("--duration", type=float, default=0, help="seconds; 0 = until interrupted")
    pr = sub.add_parser("probe", help="open COUNT short connections, print where they landed")
    pr.add_argument("--count", type=int, default=10)
    args = ap.parse_args()
    engine = Engine(args.vip, args.port, expand_sources(args.sources), args.interval_ms)
    if args.mode == "serve":
        serve(engine, args)
    elif args.mode == "probe":
        r = engine.probe(args.count)
        print(f"{args.count} new connections to {args.vip}:{args.port}: "
              + ", ".join(f"{k} {v}" for k, v in sorted(r["by_backend"].items()))
              + (f", failed {r['failed']}" if r["failed"] else ""))
        sys.exit(1 if r["failed"] else 0)
    else:
        steady(engine, args)


if __name__ == "__main__":
    main()
