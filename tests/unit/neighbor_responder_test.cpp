// ARP and ICMPv6 neighbour solicitation answers for VIPs, on real mbufs: the reply bytes are
// checked field by field, the ICMPv6 checksum is verified independently, and everything that
// must not be answered leaves the mbuf untouched.
#include <gtest/gtest.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/neighbor_responder.h"
#include "tests/support/eal_fixture.h"
#include "tests/support/packet_builder.h"

namespace tandem {
namespace {

using test::addr;
using test::from_mbuf;
using test::inet_checksum;

using test::mac;
using test::mbuf_ptr;
std::vector<uint8_t> mac_bytes(const rte_ether_addr& a) { return {a.addr_bytes, a.addr_bytes + 6}; }
uint16_t get16(const std::vector<uint8_t>& v, size_t off) {
  return static_cast<uint16_t>(v.at(off) << 8 | v.at(off + 1));
}
uint32_t get32(const std::vector<uint8_t>& v, size_t off) {
  return uint32_t{get16(v, off)} << 16 | get16(v, off + 2);
}
void put16(std::vector<uint8_t>& v, size_t off, uint16_t x) {
  v.at(off) = static_cast<uint8_t>(x >> 8);
  v.at(off + 1) = static_cast<uint8_t>(x & 0xff);
}
std::vector<uint8_t> slice(const std::vector<uint8_t>& v, size_t off, size_t len) {
  EXPECT_LE(off + len, v.size());
  if (off + len > v.size()) return {};
  return {v.begin() + static_cast<long>(off), v.begin() + static_cast<long>(off + len)};
}
void append(std::vector<uint8_t>& v, const uint8_t* p, size_t n) { v.insert(v.end(), p, p + n); }

const char* const client_mac = "02:00:00:00:00:31";
const char* const vip4 = "198.51.100.10";
const char* const vip6 = "2001:db8::10";

// Ethernet [+ 802.1Q] header; returns the L3 offset.
size_t put_l2(std::vector<uint8_t>& f, const rte_ether_addr& dst, const rte_ether_addr& src,
              int vlan, uint16_t ether_type) {
  append(f, dst.addr_bytes, 6);
  append(f, src.addr_bytes, 6);
  if (vlan >= 0) {
    f.insert(f.end(), {0x81, 0x00, static_cast<uint8_t>(vlan >> 8), static_cast<uint8_t>(vlan)});
  }
  f.insert(f.end(), {static_cast<uint8_t>(ether_type >> 8), static_cast<uint8_t>(ether_type)});
  return f.size();
}

struct arp_spec {
  int vlan = -1;
  uint16_t htype = 1;
  uint16_t ptype = 0x0800;
  uint8_t hlen = 6;
  uint8_t plen = 4;
  uint16_t op = 1;
  std::string sha = client_mac;
  std::string spa = "198.51.100.1";
  std::string tpa = vip4;
};

std::vector<uint8_t> arp_frame(const arp_spec& s, parsed_packet& p) {
  std::vector<uint8_t> f;
  const size_t l3 = put_l2(f, mac("ff:ff:ff:ff:ff:ff"), mac(client_mac), s.vlan, 0x0806);
  f.resize(l3 + 28);
  put16(f, l3, s.htype);
  put16(f, l3 + 2, s.ptype);
  f[l3 + 4] = s.hlen;
  f[l3 + 5] = s.plen;
  put16(f, l3 + 6, s.op);
  const rte_ether_addr sha = mac(s.sha.c_str());
  std::memcpy(&f[l3 + 8], sha.addr_bytes, 6);
  std::memcpy(&f[l3 + 14], addr(s.spa).bytes + 12, 4);
  // Target hardware address in a request is ignored; make it non-zero to see it overwritten.
  for (size_t i = 0; i < 6; ++i) f[l3 + 18 + i] = 0x77;
  std::memcpy(&f[l3 + 24], addr(s.tpa).bytes + 12, 4);
  if (f.size() < 60) f.resize(60, 0x55);
  p = parsed_packet{};
  p.kind = packet_kind::arp;
  p.l3_offset = static_cast<uint16_t>(l3);
  p.has_vlan = s.vlan >= 0 ? 1 : 0;
  p.vlan_tci = s.vlan >= 0 ? static_cast<uint16_t>(s.vlan) : 0;
  return f;
}

struct ns_spec {
  int vlan = -1;
  std::string src = "fe80::1";
  std::string dst = "ff02::1:ff00:10";  // solicited-node multicast of the target
  std::string target = vip6;
  uint8_t hop_limit = 255;
  uint8_t type = 135;
  uint8_t code = 0;
  bool slla = true;  // source link-layer address option (absent in DAD)
};

// ICMPv6 checksum check done without DPDK: pseudo-header + message through inet_checksum.
uint16_t icmp6_checksum(const std::vector<uint8_t>& f, size_t l3, size_t icmp_len) {
  std::vector<uint8_t> ph = slice(f, l3 + 8, 32);
  ph.insert(ph.end(), {0, 0, static_cast<uint8_t>(icmp_len >> 8),
                       static_cast<uint8_t>(icmp_len & 0xff), 0, 0, 0, 58});
  const std::vector<uint8_t> msg = slice(f, l3 + 40, icmp_len);
  ph.insert(ph.end(), msg.begin(), msg.end());
  return inet_checksum(ph.data(), ph.size());
}

std::vector<uint8_t> ns_frame(const ns_spec& s, parsed_packet& p) {
  std::vector<uint8_t> f;
  const size_t l3 = put_l2(f, mac("33:33:ff:00:00:10"), mac(client_mac), s.vlan, 0x86dd);
  const size_t icmp_len = s.slla ? 32 : 24;
  f.resize(l3 + 40 + icmp_len);
  f[l3] = 0x60;
  put16(f, l3 + 4, static_cast<uint16_t>(icmp_len));
  f[l3 + 6] = 58;
  f[l3 + 7] = s.hop_limit;
  std::memcpy(&f[l3 + 8], addr(s.src).bytes, 16);
  std::memcpy(&f[l3 + 24], addr(s.dst).bytes, 16);
  const size_t i = l3 + 40;
  f[i] = s.type;
  f[i + 1] = s.code;
  std::memcpy(&f[i + 8], addr(s.target).bytes, 16);
  if (s.slla) {
    f[i + 24] = 1;
    f[i + 25] = 1;
    std::memcpy(&f[i + 26], mac(client_mac).addr_bytes, 6);
  }
  put16(f, i + 2, icmp6_checksum(f, l3, icmp_len));
  EXPECT_EQ(icmp6_checksum(f, l3, icmp_len), 0);
  p = parsed_packet{};
  p.kind = packet_kind::icmp6_nd;
  p.ip_version = 6;
  p.l3_offset = static_cast<uint16_t>(l3);
  p.l4_offset = static_cast<uint16_t>(l3 + 40);
  p.l3_length = static_cast<uint16_t>(40 + icmp_len);
  p.has_vlan = s.vlan >= 0 ? 1 : 0;
  p.vlan_tci = s.vlan >= 0 ? static_cast<uint16_t>(s.vlan) : 0;
  return f;
}

class NeighborTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mp_ = test::test_mempool();
    in_use_before_ = test::mbufs_in_use(mp_);
    // One IPv4 VIP (two listeners on it) and one IPv6 VIP.
    for (auto [vip, port] : {std::pair{vip4, 80}, std::pair{vip4, 443}, std::pair{vip6, 80}}) {
      listener l;
      l.vip = addr(vip);
      l.proto = 6;
      l.port = static_cast<uint16_t>(port);
      g_.listeners.push_back(l);
    }
    g_.finalize();
    ASSERT_TRUE(g_.is_vip(addr(vip4)));
    ASSERT_TRUE(g_.is_vip(addr(vip6)));
    ASSERT_FALSE(g_.is_vip(addr("198.51.100.11")));
  }
  void TearDown() override { EXPECT_EQ(test::mbufs_in_use(mp_), in_use_before_) << "mbuf leak"; }

  mbuf_ptr make(const std::vector<uint8_t>& bytes) {
    rte_mbuf* m = test::to_mbuf(mp_, bytes);
    EXPECT_NE(m, nullptr);
    return mbuf_ptr(m);
  }
  bool arp(const std::vector<uint8_t>& f, const parsed_packet& p, std::vector<uint8_t>& out) {
    mbuf_ptr m = make(f);
    const bool r = answer_arp(m.get(), p, g_, port_mac_);
    out = from_mbuf(m.get());
    return r;
  }
  bool ns(const std::vector<uint8_t>& f, const parsed_packet& p, std::vector<uint8_t>& out) {
    mbuf_ptr m = make(f);
    const bool r = answer_neighbor_solicitation(m.get(), p, g_, port_mac_);
    out = from_mbuf(m.get());
    EXPECT_EQ(rte_pktmbuf_data_len(m.get()), rte_pktmbuf_pkt_len(m.get()));
    return r;
  }

  rte_mempool* mp_ = nullptr;
  unsigned in_use_before_ = 0;
  generation g_;
  const rte_ether_addr port_mac_ = mac("02:00:00:00:99:01");
};

// ---------------------------------------------------------------------------------------- ARP

TEST_F(NeighborTest, ArpRequestForVipBecomesReply) {
  for (int vlan : {-1, 0x2005}) {
    SCOPED_TRACE(vlan);
    arp_spec s;
    s.vlan = vlan;
    parsed_packet p;
    const std::vector<uint8_t> f = arp_frame(s, p);
    std::vector<uint8_t> out;
    ASSERT_TRUE(arp(f, p, out));
    ASSERT_EQ(out.size(), f.size());
    const size_t a = p.l3_offset;
    EXPECT_EQ(slice(out, 0, 6), mac_bytes(mac(client_mac)));
    EXPECT_EQ(slice(out, 6, 6), mac_bytes(port_mac_));
    EXPECT_EQ(slice(out, 12, a - 12), slice(f, 12, a - 12)) << "VLAN tag and ethertype kept";
    EXPECT_EQ(get16(out, a), 1);
    EXPECT_EQ(get16(out, a + 2), 0x0800);
    EXPECT_EQ(out[a + 4], 6);
    EXPECT_EQ(out[a + 5], 4);
    EXPECT_EQ(get16(out, a + 6), 2) << "opcode reply";
    EXPECT_EQ(slice(out, a + 8, 6), mac_bytes(port_mac_)) << "sender MAC";
    EXPECT_EQ(slice(out, a + 14, 4), slice(f, a + 24, 4)) << "sender IP = VIP";
    EXPECT_EQ(slice(out, a + 18, 6), mac_bytes(mac(client_mac))) << "target MAC = requester";
    EXPECT_EQ(slice(out, a + 24, 4), slice(f, a + 14, 4)) << "target IP = requester";
    EXPECT_EQ(slice(out, a + 28, out.size() - a - 28), slice(f, a + 28, f.size() - a - 28));
  }
}

TEST_F(NeighborTest, ArpReplyGoesToSenderHardwareAddress) {
  // Ethernet source and ARP sender MAC differ (e.g. a proxy): the ARP sender is the requester.
  arp_spec s;
  s.sha = "02:00:00:00:00:44";
  parsed_packet p;
  const std::vector<uint8_t> f = arp_frame(s, p);
  std::vector<uint8_t> out;
  ASSERT_TRUE(arp(f, p, out));
  EXPECT_EQ(slice(out, 0, 6), mac_bytes(mac("02:00:00:00:00:44")));
  EXPECT_EQ(slice(out, 14 + 18, 6), mac_bytes(mac("02:00:00:00:00:44")));
}

TEST_F(NeighborTest, ArpProbeForVipIsDefended) {
  arp_spec s;
  s.spa = "0.0.0.0";  // RFC 5227 probe
  parsed_packet p;
  const std::vector<uint8_t> f = arp_frame(s, p);
  std::vector<uint8_t> out;
  ASSERT_TRUE(arp(f, p, out));
  EXPECT_EQ(get16(out, 14 + 6), 2);
  EXPECT_EQ(slice(out, 14 + 14, 4), slice(f, 14 + 24, 4));
  EXPECT_EQ(slice(out, 14 + 24, 4), (std::vector<uint8_t>{0, 0, 0, 0}));
}

TEST_F(NeighborTest, ArpNotAnsweredLeavesFrameUntouched) {
  struct bad {
    const char* what;
    arp_spec spec;
  };
  std::vector<bad> cases;
  auto add = [&](const char* what, auto mutate) {
    arp_spec s;
    mutate(s);
    cases.push_back({what, s});
  };
  add("target is not a VIP", [](arp_spec& s) { s.tpa = "198.51.100.11"; });
  add("target is an IPv6 VIP's low bytes", [](arp_spec& s) { s.tpa = "0.0.0.16"; });
  add("ARP reply", [](arp_spec& s) { s.op = 2; });
  add("RARP request", [](arp_spec& s) { s.op = 3; });
  add("hardware type not Ethernet", [](arp_spec& s) { s.htype = 6; });
  add("protocol type not IPv4", [](arp_spec& s) { s.ptype = 0x86dd; });
  add("hardware length 8", [](arp_spec& s) { s.hlen = 8; });
  add("protocol length 16", [](arp_spec& s) { s.plen = 16; });
  add("broadcast sender MAC", [](arp_spec& s) { s.sha = "ff:ff:ff:ff:ff:ff"; });
  add("multicast sender MAC", [](arp_spec& s) { s.sha = "01:00:5e:00:00:01"; });
  for (const bad& c : cases) {
    SCOPED_TRACE(c.what);
    parsed_packet p;
    const std::vector<uint8_t> f = arp_frame(c.spec, p);
    std::vector<uint8_t> out;
    EXPECT_FALSE(arp(f, p, out));
    EXPECT_EQ(out, f);
  }
}

TEST_F(NeighborTest, TruncatedArpIsRejected) {
  arp_spec s;
  parsed_packet p;
  std::vector<uint8_t> f = arp_frame(s, p);
  f.resize(14 + 27);  // one byte short of the ARP header: the target IP is incomplete
  std::vector<uint8_t> out;
  EXPECT_FALSE(arp(f, p, out));
  EXPECT_EQ(out, f);
}

// ------------------------------------------------------------------------ neighbour discovery

void expect_advertisement(const std::vector<uint8_t>& out, const std::vector<uint8_t>& f,
                          size_t l3, const rte_ether_addr& port_mac, bool dad) {
  ASSERT_EQ(out.size(), l3 + 40 + 32) << "exactly IPv6 + NA with one option";
  EXPECT_EQ(slice(out, 0, 6), dad ? mac_bytes(mac("33:33:00:00:00:01"))
                                  : mac_bytes(mac(client_mac)));
  EXPECT_EQ(slice(out, 6, 6), mac_bytes(port_mac));
  EXPECT_EQ(slice(out, 12, l3 - 12), slice(f, 12, l3 - 12)) << "VLAN tag and ethertype kept";
  EXPECT_EQ(out[l3] >> 4, 6);
  EXPECT_EQ(get16(out, l3 + 4), 32) << "payload length";
  EXPECT_EQ(out[l3 + 6], 58);
  EXPECT_EQ(out[l3 + 7], 255) << "hop limit";
  const std::vector<uint8_t> target = slice(f, l3 + 40 + 8, 16);
  EXPECT_EQ(slice(out, l3 + 8, 16), target) << "source = VIP";
  if (dad) {
    const ip_address all_nodes = addr("ff02::1");
    EXPECT_EQ(slice(out, l3 + 24, 16), std::vector<uint8_t>(all_nodes.bytes, all_nodes.bytes + 16));
  } else {
    EXPECT_EQ(slice(out, l3 + 24, 16), slice(f, l3 + 8, 16)) << "destination = NS source";
  }
  const size_t i = l3 + 40;
  EXPECT_EQ(out[i], 136);
  EXPECT_EQ(out[i + 1], 0);
  EXPECT_EQ(get32(out, i + 4), dad ? 0x20000000u : 0x60000000u) << "flags (S)|O, reserved 0";
  EXPECT_EQ(slice(out, i + 8, 16), target);
  EXPECT_EQ(out[i + 24], 2) << "target link-layer address option";
  EXPECT_EQ(out[i + 25], 1);
  EXPECT_EQ(slice(out, i + 26, 6), mac_bytes(port_mac));
  EXPECT_EQ(icmp6_checksum(out, l3, 32), 0) << "ICMPv6 checksum";
}

TEST_F(NeighborTest, SolicitationForVipBecomesAdvertisement) {
  for (int vlan : {-1, 0x0fff}) {
    for (bool slla : {true, false}) {  // without the option the frame must grow by 8 bytes
      for (const char* src : {"fe80::1", "2001:db8:1::5"}) {
        SCOPED_TRACE(std::string(src) + " vlan " + std::to_string(vlan) + " slla " +
                     std::to_string(slla));
        ns_spec s;
        s.vlan = vlan;
        s.slla = slla;
        s.src = src;
        parsed_packet p;
        std::vector<uint8_t> f = ns_frame(s, p);
        if (slla) f.resize(f.size() + 6, 0xaa);  // trailing bytes: must be trimmed away
        std::vector<uint8_t> out;
        ASSERT_TRUE(ns(f, p, out));
        expect_advertisement(out, f, p.l3_offset, port_mac_, false);
      }
    }
  }
}

TEST_F(NeighborTest, DuplicateAddressDetectionIsAnsweredToAllNodes) {
  ns_spec s;
  s.src = "::";
  s.slla = false;
  parsed_packet p;
  const std::vector<uint8_t> f = ns_frame(s, p);
  std::vector<uint8_t> out;
  ASSERT_TRUE(ns(f, p, out));
  expect_advertisement(out, f, p.l3_offset, port_mac_, true);
}

TEST_F(NeighborTest, SolicitationNotAnsweredLeavesFrameUntouched) {
  struct bad {
    const char* what;
    ns_spec spec;
  };
  std::vector<bad> cases;
  auto add = [&](const char* what, auto mutate) {
    ns_spec s;
    mutate(s);
    cases.push_back({what, s});
  };
  add("target is not a VIP", [](ns_spec& s) { s.target = "2001:db8::11"; });
  add("target is the IPv4 VIP, mapped", [](ns_spec& s) { s.target = "::ffff:198.51.100.10"; });
  add("hop limit 254 (routed)", [](ns_spec& s) { s.hop_limit = 254; });
  add("hop limit 64", [](ns_spec& s) { s.hop_limit = 64; });
  add("code 1", [](ns_spec& s) { s.code = 1; });
  add("advertisement, not solicitation", [](ns_spec& s) { s.type = 136; });
  add("multicast source", [](ns_spec& s) { s.src = "ff02::2"; });
  for (const bad& c : cases) {
    SCOPED_TRACE(c.what);
    parsed_packet p;
    const std::vector<uint8_t> f = ns_frame(c.spec, p);
    std::vector<uint8_t> out;
    EXPECT_FALSE(ns(f, p, out));
    EXPECT_EQ(out, f);
  }
}

TEST_F(NeighborTest, TruncatedSolicitationIsRejected) {
  ns_spec s;
  s.slla = false;
  parsed_packet p;
  std::vector<uint8_t> f = ns_frame(s, p);
  // The IPv6 length says 23 bytes of ICMPv6: the target address does not fit.
  put16(f, p.l3_offset + 4u, 23);
  p.l3_length = 40 + 23;
  std::vector<uint8_t> out;
  EXPECT_FALSE(ns(f, p, out));
  EXPECT_EQ(out, f);
}

}  // namespace
}  // namespace tandem
