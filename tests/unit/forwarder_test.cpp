// forward_l2 / encap_ipip / encap_gue on real mbufs: every header field written is checked on
// the output bytes, checksums are verified independently, and the inner packet must come out
// byte-identical to the received IP packet (Ethernet padding removed).
#include <gtest/gtest.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/forwarder.h"
#include "tests/support/eal_fixture.h"
#include "tests/support/packet_builder.h"

namespace tandem {
namespace {

using test::addr;
using test::build_frame;
using test::frame_spec;
using test::from_mbuf;
using test::inet_checksum;

using test::mac;
using test::mbuf_ptr;

uint16_t get16(const std::vector<uint8_t>& v, size_t off) {
  return static_cast<uint16_t>(v.at(off) << 8 | v.at(off + 1));
}
uint32_t get32(const std::vector<uint8_t>& v, size_t off) {
  return uint32_t{get16(v, off)} << 16 | get16(v, off + 2);
}
std::vector<uint8_t> slice(const std::vector<uint8_t>& v, size_t off, size_t len) {
  EXPECT_LE(off + len, v.size());
  if (off + len > v.size()) return {};
  return {v.begin() + static_cast<long>(off), v.begin() + static_cast<long>(off + len)};
}
std::vector<uint8_t> mac_bytes(const rte_ether_addr& a) {
  return {a.addr_bytes, a.addr_bytes + 6};
}
std::vector<uint8_t> v4_bytes(const ip_address& a) { return {a.bytes + 12, a.bytes + 16}; }
std::vector<uint8_t> v6_bytes(const ip_address& a) { return {a.bytes, a.bytes + 16}; }

// Fills in what the parser would: offsets and lengths come from the frame we just built.
parsed_packet parse_built(const std::vector<uint8_t>& f) {
  parsed_packet p;
  const bool vlan = get16(f, 12) == 0x8100;
  p.has_vlan = vlan ? 1 : 0;
  p.vlan_tci = vlan ? get16(f, 14) : 0;
  p.l3_offset = vlan ? 18 : 14;
  p.ip_version = static_cast<uint8_t>(f.at(p.l3_offset) >> 4);
  if (p.ip_version == 4) {
    p.l3_length = get16(f, p.l3_offset + 2u);
    p.l4_offset = static_cast<uint16_t>(p.l3_offset + (f.at(p.l3_offset) & 0x0f) * 4);
    p.key.proto = f.at(p.l3_offset + 9u);
    p.key.src = ip_address::from_v4_bytes(&f.at(p.l3_offset + 12u));
    p.key.dst = ip_address::from_v4_bytes(&f.at(p.l3_offset + 16u));
  } else {
    p.l3_length = static_cast<uint16_t>(40 + get16(f, p.l3_offset + 4u));
    p.l4_offset = static_cast<uint16_t>(p.l3_offset + 40);
    p.key.proto = f.at(p.l3_offset + 6u);
    p.key.src = ip_address::from_v6(&f.at(p.l3_offset + 8u));
    p.key.dst = ip_address::from_v6(&f.at(p.l3_offset + 24u));
  }
  std::memcpy(&p.key.src_port, &f.at(p.l4_offset), 2);
  std::memcpy(&p.key.dst_port, &f.at(p.l4_offset + 2u), 2);
  p.kind = packet_kind::l4;
  return p;
}

// Sets a recognisable TOS / traffic class (DSCP 46 + ECT(1)) on the built frame and fills the
// Ethernet padding with junk, so that copying the TOS and trimming the padding are observable.
constexpr uint8_t test_tos = 0xb9;
void decorate(std::vector<uint8_t>& f) {
  f.resize(f.size() + 3);  // trailing bytes beyond the IP packet for every family, not just short
  const parsed_packet p = parse_built(f);
  uint8_t* ip = f.data() + p.l3_offset;
  if (p.ip_version == 4) {
    ip[1] = test_tos;
    ip[10] = ip[11] = 0;
    const uint16_t c = inet_checksum(ip, 20);
    ip[10] = static_cast<uint8_t>(c >> 8);
    ip[11] = static_cast<uint8_t>(c & 0xff);
  } else {
    ip[0] = static_cast<uint8_t>(0x60 | test_tos >> 4);
    ip[1] = static_cast<uint8_t>((test_tos & 0x0f) << 4 | (ip[1] & 0x0f));
  }
  for (size_t i = p.l3_offset + p.l3_length; i < f.size(); ++i) f[i] = 0xaa;
}

class ForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mp_ = test::test_mempool();
    in_use_before_ = test::mbufs_in_use(mp_);
    settings_.tunnel_source_v4 = addr("203.0.113.1");
    settings_.tunnel_source_v6 = addr("2001:db8:ffff::1");
    settings_.nexthop_mac = mac("02:aa:bb:cc:dd:ee");
    settings_.gue_port = 7777;
  }
  void TearDown() override { EXPECT_EQ(test::mbufs_in_use(mp_), in_use_before_) << "mbuf leak"; }

  mbuf_ptr make(const std::vector<uint8_t>& bytes) {
    rte_mbuf* m = test::to_mbuf(mp_, bytes);
    EXPECT_NE(m, nullptr);
    return mbuf_ptr(m);
  }
  // An mbuf holding `bytes` with exactly `headroom` bytes of headroom in front.
  mbuf_ptr make_with_headroom(const std::vector<uint8_t>& bytes, uint16_t headroom) {
    rte_mbuf* m = rte_pktmbuf_alloc(mp_);
    EXPECT_NE(m, nullptr);
    if (!m) return nullptr;
    m->data_off = headroom;
    char* d = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
    EXPECT_NE(d, nullptr);
    if (d) std::memcpy(d, bytes.data(), bytes.size());
    EXPECT_EQ(rte_pktmbuf_headroom(m), headroom);
    return mbuf_ptr(m);
  }

  backend_info backend(const std::string& ip) {
    backend_info b;
    b.address = addr(ip);
    b.mac = mac("02:be:00:00:00:07");
    return b;
  }

  rte_mempool* mp_ = nullptr;
  unsigned in_use_before_ = 0;
  dataplane_settings settings_;
  const rte_ether_addr port_mac_ = mac("02:00:00:00:99:01");
};

// ---------------------------------------------------------------------------------- l2 mode

TEST_F(ForwarderTest, L2RewritesOnlyTheMacs) {
  for (int vlan : {-1, 0x6123}) {
    for (const char* client : {"192.0.2.1", "2001:db8::1"}) {
      SCOPED_TRACE(std::string(client) + " vlan " + std::to_string(vlan));
      frame_spec s;
      s.vlan = vlan;
      s.src = client;
      s.dst = std::string(client).find(':') != std::string::npos ? "2001:db8::10" : "198.51.100.10";
      s.proto = 17;
      s.payload = {1, 2, 3, 4, 5};
      std::vector<uint8_t> f = build_frame(s);
      decorate(f);
      const parsed_packet p = parse_built(f);
      mbuf_ptr m = make(f);
      const backend_info b = backend("10.0.0.7");
      ASSERT_EQ(forward_l2(m.get(), p, b, port_mac_), drop_reason::none);
      const std::vector<uint8_t> out = from_mbuf(m.get());
      ASSERT_EQ(out.size(), f.size());
      EXPECT_EQ(slice(out, 0, 6), mac_bytes(b.mac));
      EXPECT_EQ(slice(out, 6, 6), mac_bytes(port_mac_));
      // Everything after the MACs (VLAN tag, IP packet, even padding) is untouched.
      EXPECT_EQ(slice(out, 12, out.size() - 12), slice(f, 12, f.size() - 12));
    }
  }
}

// ------------------------------------------------------------------------------ ipip / gue

struct encap_case {
  bool gue;
  bool client_v6;
  bool backend_v6;
  bool vlan;
  uint8_t proto;
};

std::string case_name(const ::testing::TestParamInfo<encap_case>& info) {
  const encap_case& c = info.param;
  return std::string(c.gue ? "gue" : "ipip") + (c.client_v6 ? "_in6" : "_in4") +
         (c.backend_v6 ? "_out6" : "_out4") + (c.vlan ? "_vlan" : "") +
         (c.proto == 6 ? "_tcp" : "_udp");
}

std::vector<encap_case> all_cases() {
  std::vector<encap_case> v;
  for (bool gue : {false, true})
    for (bool cv6 : {false, true})
      for (bool bv6 : {false, true})
        for (bool vlan : {false, true})
          for (uint8_t proto : {uint8_t{6}, uint8_t{17}}) v.push_back({gue, cv6, bv6, vlan, proto});
  return v;
}

class EncapTest : public ForwarderTest, public ::testing::WithParamInterface<encap_case> {};

TEST_P(EncapTest, OuterHeadersAndInnerPacket) {
  const encap_case c = GetParam();
  frame_spec s;
  s.vlan = c.vlan ? 0xa00b : -1;  // PCP 5, VLAN 11: the whole TCI must be kept
  s.src = c.client_v6 ? "2001:db8:1::5" : "192.0.2.5";
  s.dst = c.client_v6 ? "2001:db8::10" : "198.51.100.10";
  s.proto = c.proto;
  s.src_port = 51000;
  s.dst_port = 443;
  s.payload = {0xde, 0xad, 0xbe, 0xef, 0x01};  // odd length: checksums over odd sizes
  std::vector<uint8_t> f = build_frame(s);
  decorate(f);
  const parsed_packet p = parse_built(f);
  const std::vector<uint8_t> inner = slice(f, p.l3_offset, p.l3_length);
  ASSERT_GT(f.size(), size_t{p.l3_offset} + p.l3_length) << "want padding to trim";

  const backend_info b = backend(c.backend_v6 ? "2001:db8:beef::7" : "10.1.2.7");
  const uint32_t hash = 0x12345678u;
  mbuf_ptr m = make(f);
  const drop_reason r = c.gue ? encap_gue(m.get(), p, b, settings_, port_mac_, hash)
                              : encap_ipip(m.get(), p, b, settings_, port_mac_);
  ASSERT_EQ(r, drop_reason::none);

  const std::vector<uint8_t> out = from_mbuf(m.get());
  const size_t l2 = c.vlan ? 18 : 14;
  const size_t l3 = c.backend_v6 ? 40 : 20;
  const size_t l4 = c.gue ? 8 : 0;
  ASSERT_EQ(out.size(), l2 + l3 + l4 + inner.size());
  EXPECT_EQ(rte_pktmbuf_pkt_len(m.get()), out.size());
  EXPECT_EQ(rte_pktmbuf_data_len(m.get()), out.size());
  EXPECT_EQ(m.get()->nb_segs, 1);

  // Ethernet [+ 802.1Q].
  EXPECT_EQ(slice(out, 0, 6), mac_bytes(settings_.nexthop_mac));
  EXPECT_EQ(slice(out, 6, 6), mac_bytes(port_mac_));
  const uint16_t outer_type = c.backend_v6 ? 0x86dd : 0x0800;
  if (c.vlan) {
    EXPECT_EQ(get16(out, 12), 0x8100);
    EXPECT_EQ(get16(out, 14), 0xa00b);
    EXPECT_EQ(get16(out, 16), outer_type);
  } else {
    EXPECT_EQ(get16(out, 12), outer_type);
  }

  // Outer IP.
  const uint8_t expect_proto = c.gue ? 17 : (c.client_v6 ? 41 : 4);
  if (!c.backend_v6) {
    EXPECT_EQ(out[l2], 0x45);
    EXPECT_EQ(out[l2 + 1], test_tos);
    EXPECT_EQ(get16(out, l2 + 2), l3 + l4 + inner.size());
    EXPECT_EQ(get16(out, l2 + 4), 0);       // id
    EXPECT_EQ(get16(out, l2 + 6), 0x4000);  // DF, offset 0
    EXPECT_EQ(out[l2 + 8], 64);
    EXPECT_EQ(out[l2 + 9], expect_proto);
    EXPECT_NE(get16(out, l2 + 10), 0);
    EXPECT_EQ(inet_checksum(out.data() + l2, 20), 0) << "outer IPv4 header checksum";
    EXPECT_EQ(slice(out, l2 + 12, 4), v4_bytes(settings_.tunnel_source_v4));
    EXPECT_EQ(slice(out, l2 + 16, 4), v4_bytes(b.address));
  } else {
    EXPECT_EQ(get32(out, l2), 0x60000000u | uint32_t{test_tos} << 20);  // flow label 0
    EXPECT_EQ(get16(out, l2 + 4), l4 + inner.size());
    EXPECT_EQ(out[l2 + 6], expect_proto);
    EXPECT_EQ(out[l2 + 7], 64);
    EXPECT_EQ(slice(out, l2 + 8, 16), v6_bytes(settings_.tunnel_source_v6));
    EXPECT_EQ(slice(out, l2 + 24, 16), v6_bytes(b.address));
  }

  // GUE's UDP header.
  if (c.gue) {
    const size_t u = l2 + l3;
    EXPECT_EQ(get16(out, u), 49152 + hash % 16384);
    EXPECT_EQ(get16(out, u + 2), 7777);
    EXPECT_EQ(get16(out, u + 4), 8 + inner.size());
    if (!c.backend_v6) {
      EXPECT_EQ(get16(out, u + 6), 0) << "no UDP checksum over IPv4";
    } else {
      // Independent check: pseudo-header (src, dst, length, next header) + UDP datagram.
      std::vector<uint8_t> ph = slice(out, l2 + 8, 32);
      const size_t udp_len = 8 + inner.size();
      ph.insert(ph.end(), {0, 0, static_cast<uint8_t>(udp_len >> 8),
                           static_cast<uint8_t>(udp_len & 0xff), 0, 0, 0, 17});
      ph.insert(ph.end(), out.begin() + static_cast<long>(u), out.end());
      EXPECT_NE(get16(out, u + 6), 0) << "UDP checksum is mandatory over IPv6";
      EXPECT_EQ(inet_checksum(ph.data(), ph.size()), 0) << "outer UDP checksum";
    }
  }

  // The inner IP packet is the original, byte for byte, and the padding is gone.
  EXPECT_EQ(slice(out, l2 + l3 + l4, out.size() - (l2 + l3 + l4)), inner);
  EXPECT_EQ(out[l2 + l3 + l4] >> 4, c.client_v6 ? 6 : 4) << "GUE variant 1: IP right after UDP";
  EXPECT_EQ(m.get()->l2_len, l2);
  EXPECT_EQ(m.get()->l3_len, l3);
}

INSTANTIATE_TEST_SUITE_P(AllShapes, EncapTest, ::testing::ValuesIn(all_cases()), case_name);

TEST_F(ForwarderTest, GueSourcePortFollowsFlowHashAndStaysInRange) {
  frame_spec s;
  const std::vector<uint8_t> f = build_frame(s);
  const parsed_packet p = parse_built(f);
  const backend_info b = backend("10.1.2.7");
  const size_t sport_off = 14 + 20;
  auto sport = [&](uint32_t hash) -> int {
    mbuf_ptr m = make(f);
    if (encap_gue(m.get(), p, b, settings_, port_mac_, hash) != drop_reason::none) return -1;
    return get16(from_mbuf(m.get()), sport_off);
  };
  for (uint32_t h : {0u, 1u, 16383u, 16384u, 16385u, 0x7fffffffu, 0xffffffffu, 0xdeadbeefu}) {
    SCOPED_TRACE(h);
    const int port = sport(h);
    EXPECT_GE(port, 49152);
    EXPECT_LE(port, 65535);
    EXPECT_EQ(port, static_cast<int>(49152 + h % 16384));
  }
  EXPECT_EQ(sport(0), 49152);
  EXPECT_EQ(sport(16383), 65535);
  EXPECT_NE(sport(1), sport(2));
  EXPECT_EQ(sport(0xdeadbeefu), sport(0xdeadbeefu));
}

// Headroom exactly one byte short fails and leaves the mbuf untouched; exactly enough works.
TEST_F(ForwarderTest, NoHeadroomLeavesMbufUnchanged) {
  struct shape {
    bool gue;
    bool backend_v6;
    int vlan;
  };
  for (const shape sh : {shape{false, false, -1}, shape{true, false, -1}, shape{false, true, 7},
                         shape{true, true, -1}, shape{true, true, 7}}) {
    SCOPED_TRACE(std::string(sh.gue ? "gue" : "ipip") + (sh.backend_v6 ? " v6" : " v4") +
                 (sh.vlan >= 0 ? " vlan" : ""));
    frame_spec s;
    s.vlan = sh.vlan;
    std::vector<uint8_t> f = build_frame(s);
    decorate(f);
    const parsed_packet p = parse_built(f);
    const backend_info b = backend(sh.backend_v6 ? "2001:db8:beef::7" : "10.1.2.7");
    const uint16_t hdr = static_cast<uint16_t>((sh.vlan >= 0 ? 18 : 14) + (sh.backend_v6 ? 40 : 20) +
                                               (sh.gue ? 8 : 0));
    const uint16_t needed = static_cast<uint16_t>(hdr - p.l3_offset);  // old L2 is reused
    auto run = [&](rte_mbuf* m) {
      return sh.gue ? encap_gue(m, p, b, settings_, port_mac_, 99)
                    : encap_ipip(m, p, b, settings_, port_mac_);
    };

    mbuf_ptr shortm = make_with_headroom(f, static_cast<uint16_t>(needed - 1));
    ASSERT_TRUE(shortm);
    const uint16_t off_before = shortm.get()->data_off;
    EXPECT_EQ(run(shortm.get()), drop_reason::no_headroom);
    EXPECT_EQ(from_mbuf(shortm.get()), f) << "bytes and length unchanged (padding kept)";
    EXPECT_EQ(shortm.get()->data_off, off_before);
    EXPECT_EQ(rte_pktmbuf_data_len(shortm.get()), f.size());

    mbuf_ptr zero = make_with_headroom(f, 0);
    ASSERT_TRUE(zero);
    EXPECT_EQ(run(zero.get()), drop_reason::no_headroom);
    EXPECT_EQ(from_mbuf(zero.get()), f);

    mbuf_ptr exact = make_with_headroom(f, needed);
    ASSERT_TRUE(exact);
    EXPECT_EQ(run(exact.get()), drop_reason::none);
    EXPECT_EQ(rte_pktmbuf_headroom(exact.get()), 0);
    EXPECT_EQ(rte_pktmbuf_pkt_len(exact.get()), hdr + p.l3_length);
  }
}

// A headroom consumed through the mbuf API (prepend), as a driver or earlier stage might.
TEST_F(ForwarderTest, NoHeadroomAfterPrepend) {
  frame_spec s;
  s.src = "2001:db8::1";
  s.dst = "2001:db8::10";
  const std::vector<uint8_t> f = build_frame(s);
  mbuf_ptr m = make(f);
  // Eat all but 10 bytes of headroom, then put the frame at the new start.
  const uint16_t eat = static_cast<uint16_t>(rte_pktmbuf_headroom(m.get()) - 10);
  ASSERT_NE(rte_pktmbuf_prepend(m.get(), eat), nullptr);
  ASSERT_EQ(rte_pktmbuf_trim(m.get(), eat), 0);
  std::memcpy(rte_pktmbuf_mtod(m.get(), uint8_t*), f.data(), f.size());
  ASSERT_EQ(from_mbuf(m.get()), f);
  const parsed_packet p = parse_built(f);
  const backend_info b = backend("2001:db8:beef::7");
  EXPECT_EQ(encap_gue(m.get(), p, b, settings_, port_mac_, 5), drop_reason::no_headroom);
  EXPECT_EQ(from_mbuf(m.get()), f);
  EXPECT_EQ(rte_pktmbuf_headroom(m.get()), 10);
}

TEST_F(ForwarderTest, IpLengthBeyondFrameIsRejectedUntouched) {
  const std::vector<uint8_t> f = build_frame(frame_spec{});
  parsed_packet p = parse_built(f);
  p.l3_length = static_cast<uint16_t>(f.size());  // claims more than the frame holds
  mbuf_ptr m = make(f);
  EXPECT_NE(encap_ipip(m.get(), p, backend("10.1.2.7"), settings_, port_mac_), drop_reason::none);
  EXPECT_EQ(from_mbuf(m.get()), f);
}

TEST_F(ForwarderTest, ForwardPacketDispatchesOnMode) {
  const std::vector<uint8_t> f = build_frame(frame_spec{});
  const parsed_packet p = parse_built(f);
  const backend_info b = backend("10.1.2.7");
  struct expect {
    forwarding_mode mode;
    size_t size;
    uint8_t outer_proto;  // 0: none (l2)
  };
  for (const expect e : {expect{forwarding_mode::l2, f.size(), 0},
                         expect{forwarding_mode::ipip, size_t{14} + 20 + p.l3_length, 4},
                         expect{forwarding_mode::gue, size_t{14} + 20 + 8 + p.l3_length, 17}}) {
    SCOPED_TRACE(forwarding_mode_name(e.mode));
    mbuf_ptr m = make(f);
    ASSERT_EQ(forward_packet(e.mode, m.get(), p, b, settings_, port_mac_, 1), drop_reason::none);
    const std::vector<uint8_t> out = from_mbuf(m.get());
    ASSERT_EQ(out.size(), e.size);
    if (e.outer_proto == 0) {
      EXPECT_EQ(slice(out, 0, 6), mac_bytes(b.mac));
    } else {
      EXPECT_EQ(slice(out, 0, 6), mac_bytes(settings_.nexthop_mac));
      EXPECT_EQ(out[14 + 9], e.outer_proto);
    }
  }
}

}  // namespace
}  // namespace tandem
