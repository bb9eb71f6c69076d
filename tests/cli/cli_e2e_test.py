#!/usr/bin/env python3
"""End-to-end tests of every tandemctl command against a running tandemd.

tandemd runs on a net_af_packet port attached to one end of a veth pair inside a private
network namespace; the test sends crafted frames into the other end and reads what tandemd
transmits. The destination MAC of each forwarded frame names the backend (02:00:00:00:CC:NN,
CC = 01 blue / 02 green), so every command is checked against what the dataplane really does.

Needs root. Exits 77 (skipped) when network namespaces are not available.
"""
import ctypes
import json
import shutil
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

BUILD = os.environ.get("TANDEM_BUILD_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "build"))
TANDEMD = os.path.join(BUILD, "tandemd")
TANDEMCTL = os.path.join(BUILD, "control", "tandemctl")
NS = f"tcli{os.getpid()}"
VIP = "198.51.100.10"
DNS_VIP = "198.51.100.53"

CONFIG = """
dataplane:
  flow_table_size: 65536
  timeouts: {{tcp_closing: 1s, udp: 2s}}
control:
  socket: {sock}
  history_file: {history}
services:
  - name: web
    vip: 198.51.100.10
    protocol: tcp
    port: 80
    forwarding: l2
    maglev_size: 1009
    active: blue
    drain: {{timeout: 300s, on_timeout: keep}}
    preview: {{vip: 198.51.100.11, port: 8080}}
    pools:
      blue:
{blue}
      green:
{green}
  - name: dns
    vip: 198.51.100.53
    protocol: udp
    port: 53
    forwarding: l2
    maglev_size: 1009
    pools:
      blue:
        - {{address: 10.1.0.53, mac: "02:00:00:00:01:35"}}
      green:
        - {{address: 10.2.0.53, mac: "02:00:00:00:02:35"}}
"""


def pool_yaml(colour, n, extra=""):
    cc = 1 if colour == "blue" else 2
    return "\n".join(
        f'        - {{address: 10.{cc}.0.{i}, mac: "02:00:00:00:0{cc}:0{i}"{extra}}}'
        for i in range(1, n + 1))


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip4(a):
    return socket.inet_aton(a)


def frame(src, dst, sport, dport, flags=0x02, proto=6, payload=b"", dst_mac=b"\x02\0\0\0\0\xaa",
          src_mac=b"\x02\0\0\0\0\xbb"):
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1000, 5000 if flags & 0x10 else 0, 5 << 4,
                         flags, 65535, 0, 0) + payload
        csum_at = 16
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        csum_at = 6
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, len(l4))
    c = checksum(pseudo + l4)
    l4 = l4[:csum_at] + struct.pack("!H", c) + l4[csum_at + 2:]
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, ip4(src), ip4(dst))
    iph = iph[:10] + struct.pack("!H", checksum(iph)) + iph[12:]
    f = dst_mac + src_mac + b"\x08\x00" + iph + l4
    return f + b"\0" * max(0, 60 - len(f))


def backend_of(f):
    """('blue'|'green', n) for a frame sent to a test backend MAC, else None."""
    mac = f[:6]
    if mac[:4] != b"\x02\0\0\0" or mac[4] not in (1, 2):
        return None
    return ("blue" if mac[4] == 1 else "green", mac[5])


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


def enter_netns(name):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)


class Tandem:
    """A tandemd process on veth `lb` in namespace NS, and the peer end `wire` for the test."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tandem-cli-")
        self.sock = os.path.join(self.dir, "tandemd.sock")
        self.history = os.path.join(self.dir, "history.log")
        self.config = os.path.join(self.dir, "tandem.yaml")
        self.write_config()
        sh("ip", "netns", "add", NS)
        sh("ip", "netns", "exec", NS, "ip", "link", "add", "lb", "type", "veth", "peer", "name", "wire")
        for dev in ("lb", "wire"):
            # No IPv6 autoconfiguration chatter on the wire: only tandemd's frames come back.
            sh("ip", "netns", "exec", NS, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            sh("ip", "netns", "exec", NS, "ip", "link", "set", dev, "up")
            sh("ip", "netns", "exec", NS, "ethtool", "-K", dev, "tx", "off", "rx", "off",
               "tso", "off", "gso", "off", "gro", "off", check=False)
        self.log = open(os.path.join(self.dir, "tandemd.log"), "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", NS, TANDEMD, "-l", "0-1", "--no-huge", "-m", "256", "--no-pci",
             "--file-prefix", NS, "--vdev", "net_af_packet0,iface=lb", "--",
             "--config", self.config, "--log-level", "info"],
            stdout=self.log, stderr=subprocess.STDOUT)
        mac = sh("ip", "netns", "exec", NS, "cat", "/sys/class/net/lb/address").stdout.strip()
        self.lb_mac = bytes(int(x, 16) for x in mac.split(":"))
        deadline = time.time() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("tandemd did not start: " + open(self.log.name).read())
            time.sleep(0.1)
        enter_netns(NS)
        self.raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.raw.bind(("wire", 0))
        self.raw.settimeout(0.05)

    def write_config(self, blue=3, green=3, active="blue"):
        text = CONFIG.format(sock=self.sock, history=self.history, blue=pool_yaml("blue", blue),
                             green=pool_yaml("green", green))
        text = text.replace("active: blue", f"active: {active}", 1)
        with open(self.config, "w") as f:
            f.write(text)
        return text

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        sh("ip", "netns", "del", NS, check=False)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def ctl(self, *args, user=None):
        cmd = [TANDEMCTL, "--socket", self.sock, *args]
        if user:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def ctl_json(self, *args):
        r = self.ctl("--json", *args)
        assert r.returncode == 0, f"tandemctl {args}: {r.returncode} {r.stdout} {r.stderr}"
        return json.loads(r.stdout)

    def exchange(self, frames):
        """Sends frames, returns the frames tandemd transmitted (in order)."""
        while True:  # flush stale frames
            try:
                self.raw.recv(65535)
            except socket.timeout:
                break
        out = []
        for i in range(0, len(frames), 64):
            for f in frames[i:i + 64]:
                self.raw.send(f)
            out += self._collect()
        out += self._collect(quiet_s=0.3)
        return out

    def _collect(self, quiet_s=0.02):
        out = []
        last = time.time()
        while time.time() - last < quiet_s:
            try:
                data, addr = self.raw.recvfrom(65535)
            except socket.timeout:
                continue
            if addr[2] == socket.PACKET_OUTGOING or data[6:12] != self.lb_mac:
                continue  # our own frames, or the kernel's
            out.append(data)
            last = time.time()
        return out


def client(i):
    return f"10.9.{(i >> 8) & 0xff}.{i & 0xff}"


class CliEndToEnd(unittest.TestCase):
    t = None

    @classmethod
    def setUpClass(cls):
        cls.t = Tandem()

    @classmethod
    def tearDownClass(cls):
        if cls.t:
            cls.t.close()

    def setUp(self):
        # Each test starts from the file's state with blue active.
        st = self.t.ctl_json("status", "web")
        if st["services"][0]["active"] != "blue":
            self.assertEqual(self.t.ctl("switch", "web", "--to", "blue").returncode, 0)
        self.t.write_config()
        r = self.t.ctl("apply", "-f", self.t.config)
        self.assertEqual(r.returncode, 0, r.stderr)

    def flows(self, n, sport, flags, start=0, dst=VIP, dport=80):
        return [backend_of(f) for f in self.t.exchange(
            [frame(client(start + i), dst, sport, dport, flags) for i in range(n)])]

    def test_01_status_reports_the_config(self):
        st = self.t.ctl_json("status")
        names = [s["name"] for s in st["services"]]
        self.assertEqual(names, ["web", "dns"])
        web = st["services"][0]
        self.assertEqual(web["active"], "blue")
        self.assertEqual(len(web["colours"]["green"]["backends"]), 3)
        human = self.t.ctl("status", "web")
        self.assertEqual(human.returncode, 0)
        self.assertIn("blue (active)", human.stdout)

    def test_02_switch_keeps_established_flows_and_drains(self):
        before = self.flows(40, 40000, 0x02)
        self.assertEqual(before, self.flows(40, 40000, 0x10))
        self.assertTrue(all(b and b[0] == "blue" for b in before), before)
        r = self.t.ctl("switch", "web", "--to", "green")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.flows(40, 40000, 0x18), before, "established flows keep blue")
        fresh = self.flows(40, 41000, 0x02)
        self.assertTrue(all(b and b[0] == "green" for b in fresh), fresh)
        drain = self.t.ctl_json("status", "web")["services"][0]["drain"]
        self.assertEqual(drain["colour"], "blue")
        self.assertEqual(drain["remaining"], 40)
        # The same colour again is a conflict.
        again = self.t.ctl("switch", "web", "--to", "green")
        self.assertEqual(again.returncode, 1)
        self.assertIn("already active", again.stderr)
        # wait-drained times out while flows remain, returns once they end.
        w = self.t.ctl("wait-drained", "web", "blue", "--timeout", "1s")
        self.assertEqual(w.returncode, 1, w.stdout + w.stderr)
        self.flows(40, 40000, 0x11)  # FIN+ACK
        w = self.t.ctl("wait-drained", "web", "blue", "--timeout", "20s")
        self.assertEqual(w.returncode, 0, w.stdout + w.stderr)
        hist = self.t.ctl_json("history", "--limit", "10")
        self.assertTrue(any(h["command"].startswith("switch web") and h["uid"] == 0 for h in hist), hist)
        with open(self.t.history) as f:
            self.assertIn("switch web --to green", f.read())
        # The green flows end too, so later tests start clean.
        self.flows(40, 41000, 0x04)

    def test_03_rollback_the_other_way(self):
        self.assertEqual(self.t.ctl("switch", "web", "--to", "green").returncode, 0)
        green = self.flows(30, 42000, 0x02)
        r = self.t.ctl("rollback", "web")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.flows(30, 42000, 0x10), green, "green flows survive the rollback")
        self.assertTrue(all(b[0] == "blue" for b in self.flows(30, 43000, 0x02)))
        self.flows(30, 42000, 0x04)
        self.flows(30, 43000, 0x04)

    def test_04_canary_splits_by_client(self):
        r = self.t.ctl("canary", "web", "--to", "green", "--percent", "50")
        self.assertEqual(r.returncode, 0, r.stderr)
        first = self.flows(400, 44000, 0x02)
        green = sum(1 for b in first if b[0] == "green")
        self.assertTrue(120 < green < 280, f"{green} of 400 in a 50 % canary")
        later = self.flows(400, 44001, 0x02)
        self.assertEqual([b[0] for b in later], [b[0] for b in first], "clients keep their cohort")
        self.assertEqual(self.t.ctl("canary", "web", "--to", "green", "--percent", "0").returncode, 0)
        self.assertTrue(all(b[0] == "blue" for b in self.flows(100, 44002, 0x02)))
        for sport in (44000, 44001, 44002):
            self.flows(400, sport, 0x04)

    def test_05_segment_routes_a_prefix(self):
        r = self.t.ctl("segment", "web", "add", "10.9.1.0/24", "--to", "green")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = self.flows(512, 45000, 0x02)  # clients 10.9.0.x and 10.9.1.x
        for i, b in enumerate(out):
            self.assertEqual(b[0], "green" if i >= 256 else "blue", client(i))
        self.assertEqual(self.t.ctl("segment", "web", "remove", "10.9.1.0/24", "--to", "green").returncode, 0)
        self.flows(512, 45000, 0x04)
        self.assertTrue(all(b[0] == "blue" for b in self.flows(512, 45001, 0x02)))
        self.flows(512, 45001, 0x04)

    def test_06_pool_edits_and_backend_state(self):
        r = self.t.ctl("pool", "web", "blue", "add", "10.1.0.9", "--mac", "02:00:00:00:01:09")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = self.flows(400, 46000, 0x02)
        self.assertIn(("blue", 9), out, "the new backend takes new flows")
        pinned = [i for i, b in enumerate(out) if b == ("blue", 9)]
        self.assertEqual(self.t.ctl("pool", "web", "blue", "remove", "10.1.0.9").returncode, 0)
        again = self.flows(400, 46000, 0x10)
        self.assertEqual([again[i] for i in pinned], [("blue", 9)] * len(pinned),
                         "flows on a removed backend stay until they end")
        self.assertNotIn(("blue", 9), self.flows(400, 46001, 0x02))
        r = self.t.ctl("backend", "web", "10.1.0.1", "state", "drain")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(("blue", 1), self.flows(400, 46002, 0x02), "drained backend takes no new flows")
        self.assertEqual(self.t.ctl("pool", "web", "blue", "set-weight", "10.1.0.2", "--weight", "0").returncode, 0)
        self.assertNotIn(("blue", 2), self.flows(400, 46003, 0x02))
        for sport in (46000, 46001, 46002, 46003):
            self.flows(400, sport, 0x04)

    def test_07_flows_lists_a_sample(self):
        # Earlier tests' closed flows stay in the table until their 1 s closing timeout.
        deadline = time.time() + 15
        while self.t.ctl_json("flows", "web", "--limit", "0")["matched"] and time.time() < deadline:
            time.sleep(0.2)
        self.flows(25, 47000, 0x02)
        res = self.t.ctl_json("flows", "web", "--colour", "blue", "--limit", "256")
        self.assertEqual(res["matched"], 25)
        ours = [f for f in res["flows"] if f["client_port"] == 47000]
        self.assertEqual(len(ours), 25)
        self.assertTrue(all(f["colour"] == "blue" and f["state"] == "syn_seen" for f in ours), ours)
        self.assertEqual(len(self.t.ctl_json("flows", "web", "--limit", "5")["flows"]), 5)
        one = ours[0]["backend"]
        by_backend = self.t.ctl_json("flows", "web", "--backend", one, "--limit", "100")
        self.assertTrue(all(f["backend"] == one for f in by_backend["flows"]))
        self.flows(25, 47000, 0x04)

    def test_08_apply_and_diff(self):
        text = self.t.write_config(blue=3, green=4, active="green")
        d = self.t.ctl_json("diff", "-f", self.t.config)
        self.assertTrue(any("active blue -> green" in c for c in d), d)
        self.assertTrue(any("10.2.0.4" in c for c in d), d)
        dry = self.t.ctl("apply", "-f", self.t.config, "--dry-run")
        self.assertEqual(dry.returncode, 0, dry.stderr)
        self.assertEqual(self.t.ctl_json("status", "web")["services"][0]["active"], "blue")
        established = self.flows(40, 48000, 0x02)
        r = self.t.ctl("apply", "-f", self.t.config)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.t.ctl_json("status", "web")["services"][0]["active"], "green")
        self.assertEqual(self.flows(40, 48000, 0x10), established, "apply moves no flow")
        self.assertTrue(all(b[0] == "green" for b in self.flows(40, 48001, 0x02)))
        self.assertIn("no changes", self.t.ctl("diff", "-f", self.t.config).stdout + "no changes")
        self.flows(40, 48000, 0x04)
        self.flows(40, 48001, 0x04)
        del text

    def test_09_stats_count_drops_by_reason(self):
        bad = frame(client(1), VIP, 1, 80)[:30]  # truncated inside the IP header
        self.t.exchange([bad] * 5 + [frame(client(1), "198.51.100.99", 1, 80)] * 3)
        st = self.t.ctl_json("stats")
        drops = st["workers"][0]["drops"]
        self.assertGreaterEqual(drops.get("truncated_l3", 0), 5, drops)
        self.assertGreaterEqual(drops.get("not_for_vip", 0), 3, drops)
        self.assertGreater(st["workers"][0]["rx_packets"], 0)

    def test_10_udp_service_and_arp(self):
        out = [backend_of(f) for f in self.t.exchange(
            [frame(client(i), DNS_VIP, 5000 + i, 53, proto=17, payload=b"q") for i in range(20)])]
        self.assertEqual(out, [("blue", 0x35)] * 20)
        arp = (b"\xff" * 6 + b"\x02\0\0\0\0\xbb" + b"\x08\x06" +
               struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, b"\x02\0\0\0\0\xbb",
                           ip4("10.9.0.1"), b"\0" * 6, ip4(VIP)))
        replies = self.t.exchange([arp + b"\0" * 18])
        self.assertTrue(any(r[12:14] == b"\x08\x06" and r[21] == 2 for r in replies), replies)

    def test_11_preview_reaches_the_idle_colour(self):
        out = self.flows(50, 49000, 0x02, dst="198.51.100.11", dport=8080)
        self.assertEqual(len(out), 50)
        self.assertTrue(all(b[0] == "green" for b in out), out)
        self.assertEqual(self.t.ctl("switch", "web", "--to", "green").returncode, 0)
        self.assertTrue(all(b[0] == "blue" for b in self.flows(50, 49001, 0x02, dst="198.51.100.11",
                                                             dport=8080)))
        self.flows(50, 49000, 0x04, dst="198.51.100.11", dport=8080)
        self.flows(50, 49001, 0x04, dst="198.51.100.11", dport=8080)

    def test_12_switch_all_and_rollback_all(self):
        r = self.t.ctl("switch", "--all", "--to", "green")
        self.assertEqual(r.returncode, 0, r.stderr)
        st = self.t.ctl_json("status")
        self.assertEqual([s["active"] for s in st["services"]], ["green", "green"])
        gen = st["generation"]
        udp = [backend_of(f) for f in self.t.exchange(
            [frame(client(i), DNS_VIP, 6000 + i, 53, proto=17, payload=b"q") for i in range(10)])]
        self.assertEqual(udp, [("green", 0x35)] * 10)
        r = self.t.ctl("rollback", "--all")
        self.assertEqual(r.returncode, 0, r.stderr)
        st = self.t.ctl_json("status")
        self.assertEqual([s["active"] for s in st["services"]], ["blue", "blue"])
        self.assertEqual(st["generation"], gen + 1, "every service rolls back in one generation")
        self.assertTrue(all(b[0] == "blue" for b in self.flows(20, 49100, 0x02)))
        self.flows(20, 49100, 0x04)

    # --- bad inputs: clear errors, non-zero exits, running state unchanged -------------------

    def assertUnchanged(self, before):
        after = self.t.ctl_json("status")
        for s in after["services"] + before["services"]:
            if s.get("drain"):  # time moves on; what matters is which colour drains
                s["drain"] = s["drain"]["colour"]
        # A drain may also finish meanwhile (an earlier test's UDP flows reach their 2 s idle
        # timeout): that is time passing, not the request. A drain that starts would need a new
        # generation, which the check below rules out.
        for a, b in zip(after["services"], before["services"]):
            if a.get("drain") is None and b.get("drain") is not None:
                b["drain"] = None
        for s in after["services"]:
            for c in ("blue", "green"):
                for b in s["colours"][c]["backends"]:
                    b.pop("live_flows", None)
                s["colours"][c].pop("live_flows", None)
                s["colours"][c].pop("new_flows", None)
        for s in before["services"]:
            for c in ("blue", "green"):
                for b in s["colours"][c]["backends"]:
                    b.pop("live_flows", None)
                s["colours"][c].pop("live_flows", None)
                s["colours"][c].pop("new_flows", None)
        self.assertEqual(after["generation"], before["generation"])
        self.assertEqual(after["services"], before["services"])

    def test_20_bad_requests(self):
        before = self.t.ctl_json("status")
        cases = [
            (("switch", "nosuch", "--to", "green"), 1, "unknown service"),
            (("switch", "web", "--to", "purple"), 2, "purple"),
            (("canary", "web", "--to", "green", "--percent", "150"), 2, "percent"),
            (("segment", "web", "add", "10.0.0.1/8", "--to", "green"), 2, "host bits"),
            (("pool", "web", "blue", "add", "10.1.0.300"), 2, "10.1.0.300"),
            (("pool", "web", "blue", "remove", "10.1.0.77"), 1, "not in the blue pool"),
            (("backend", "web", "10.1.0.1", "state", "sleepy"), 2, "sleepy"),
            (("flows", "nosuch"), 1, "unknown service"),
        ]
        for args, code, text in cases:
            r = self.t.ctl(*args)
            self.assertEqual(r.returncode, code, f"{args}: {r.stdout} {r.stderr}")
            self.assertIn(text, r.stderr, args)
        self.assertUnchanged(before)

    def test_21_malformed_and_oversized_requests(self):
        before = self.t.ctl_json("status")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.t.sock)
        f = s.makefile("rwb")
        f.write(b"{not json\n")
        f.flush()
        resp = json.loads(f.readline())
        self.assertFalse(resp["ok"])
        self.assertIn("malformed JSON", resp["error"])
        f.write(b'{"version":1,"command":"status","args":{"x":"' + b"a" * (1 << 20) + b'"}}\n')
        f.flush()
        resp = json.loads(f.readline())
        self.assertFalse(resp["ok"])
        self.assertIn("1 MiB", resp["error"])
        f.write(b'{"version":1,"command":"status","args":{}}\n')
        f.flush()
        self.assertTrue(json.loads(f.readline())["ok"], "the connection still works")
        s.close()
        self.assertUnchanged(before)

    def test_22_socket_permissions(self):
        r = self.t.ctl("status", user="65534")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("Permission denied", r.stderr)

    def test_23_bad_configs_apply_nothing(self):
        before = self.t.ctl_json("status")
        bad_yaml = os.path.join(self.t.dir, "bad.yaml")
        with open(bad_yaml, "w") as f:
            f.write("services: [ {name: web, vip: 198.51.100.10\n")
        r = self.t.ctl("apply", "-f", bad_yaml)
        self.assertEqual(r.returncode, 1)
        self.assertIn("bad.yaml:", r.stderr)
        # Valid YAML, first service fine and changed, second one invalid: nothing applies.
        text = self.t.write_config(blue=2, green=3).replace(
            'address: 10.2.0.53, mac: "02:00:00:00:02:35"', 'address: 10.2.0.53')
        halfway = os.path.join(self.t.dir, "halfway.yaml")
        with open(halfway, "w") as f:
            f.write(text)
        r = self.t.ctl("apply", "-f", halfway)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("mac", r.stderr)
        self.assertUnchanged(before)


if __name__ == "__main__":
    if os.geteuid() != 0 or subprocess.run(["ip", "netns", "list"], capture_output=True).returncode:
        print("skipped: needs root and ip netns")
        sys.exit(77)
    result = unittest.main(exit=False, verbosity=2).result
    passed = result.testsRun - len(result.failures) - len(result.errors)
    print(f"{passed} passed, {len(result.failures) + len(result.errors)} failed")
    sys.exit(0 if result.wasSuccessful() else 1)
