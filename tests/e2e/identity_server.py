#!/usr/bin/env python3
"""A backend for the end-to-end tests and the demo: answers with its identity and echoes.

TCP (every --tcp port, on every address): on connect it sends "HELLO <pool> <address>\\n";
every line it receives comes back as "<pool> <address> <line>\\n".
UDP (every --udp port, bound to every --vip, so replies leave from the VIP): each datagram
comes back as "<pool> <address> <payload>".
Stats (--stats-port, TCP, on every address): a connection gets one JSON line with counters
(connections accepted/open/ended by EOF/ended by reset, UDP datagrams) and the close times of
reset connections, then the server closes it. Tests reach it on the backend's own address,
bypassing tandemd.

Single-threaded (selectors), no dependencies beyond Debian's python3.
"""
import argparse
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time


def parse_ports(text):
    return [int(p) for p in text.split(",") if p.strip()] if text else []


class Server:
    def __init__(self, args):
        self.ident = f"{args.pool} {args.address}".encode()
        self.hello = b"HELLO " + self.ident + b"\n"
        self.prefix = self.ident + b" "
        self.sel = selectors.DefaultSelector()
        self.buffers = {}        # conn socket -> pending input bytes
        self.stats = {"pool": args.pool, "address": args.address, "accepted": 0, "open": 0,
                      "closed_eof": 0, "closed_reset": 0, "udp_datagrams": 0,
                      "reset_times": [], "pid": os.getpid()}
        for port in parse_ports(args.tcp):
            self._listen(port, self._accept)
        if args.stats_port:
            self._listen(args.stats_port, self._stats)
        for port in parse_ports(args.udp):
            for vip in args.vip:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                # The VIP sits on lo; binding to it makes replies leave with the VIP as source.
                s.bind((vip, port))
                s.setblocking(False)
                self.sel.register(s, selectors.EVENT_READ, self._udp)

    def _listen(self, port, handler):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(4096)
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, handler)

    def _accept(self, lsock):
        while True:
            try:
                conn, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats["accepted"] += 1
            self.stats["open"] += 1
            self.buffers[conn] = b""
            try:
                conn.send(self.hello)
            except OSError:
                pass
            self.sel.register(conn, selectors.EVENT_READ, self._read)

    def _close(self, conn, reset):
        self.sel.unregister(conn)
        self.buffers.pop(conn, None)
        conn.close()
        self.stats["open"] -= 1
        if reset:
            self.stats["closed_reset"] += 1
            self.stats["reset_times"].append(time.monotonic())
        else:
            self.stats["closed_eof"] += 1

    def _read(self, conn):
        try:
            data = conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            self._close(conn, True)
            return
        except OSError as e:
            self._close(conn, e.errno in (errno.ECONNRESET, errno.EPIPE))
            return
        if not data:
            self._close(conn, False)
            return
        buf = self.buffers[conn] + data
        if b"\n" not in buf:
            self.buffers[conn] = buf
            return
        lines = buf.split(b"\n")
        self.buffers[conn] = lines.pop()
        out = b"".join(self.prefix + line + b"\n" for line in lines)
        try:
            conn.send(out)  # small replies; the socket buffer always has room in these tests
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            self._close(conn, e.errno in (errno.ECONNRESET, errno.EPIPE))

    def _udp(self, s):
        while True:
            try:
                data, peer = s.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.stats["udp_datagrams"] += 1
            try:
                s.sendto(self.prefix + data, peer)
            except OSError:
                pass

    def _stats(self, lsock):
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)
            conn.sendall(json.dumps(self.stats).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def run(self, ready_file):
        if ready_file:
            with open(ready_file, "w") as f:
                f.write(str(os.getpid()))
        while True:
            for key, _ in self.sel.select():
                key.data(key.fileobj)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", required=True, help="pool name reported to clients (blue/green)")
    ap.add_argument("--address", required=True, help="backend address reported to clients")
    ap.add_argument("--tcp", default="80,8080", help="TCP ports, comma separated")
    ap.add_argument("--udp", default="53", help="UDP ports, comma separated")
    ap.add_argument("--vip", action="append", default=[],
                    help="VIP to bind the UDP ports to (repeat)")
    ap.add_argument("--stats-port", type=int, default=9999)
    ap.add_argument("--ready-file", help="written with the pid once every socket listens")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    Server(args).run(args.ready_file)


if __name__ == "__main__":
    main()
