#include "dataplane/packet_parser.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/support/packet_builder.h"

namespace tandem {

// Readable failure messages: gtest finds this by ADL.
[[maybe_unused]] static void PrintTo(drop_reason r, std::ostream* os) {
  *os << drop_reason_name(r);
}

namespace {

using test::addr;
using test::build_frame;
using test::frame_spec;

struct result {
  drop_reason reason;
  parsed_packet p;
};

// Parses the first `n` bytes from an exactly-sized heap copy, so any read past `n` is an
// out-of-bounds heap read that ASAN/valgrind report. `out` starts as garbage so a field the
// parser forgets to set shows up.
result parse_prefix(const std::vector<uint8_t>& f, size_t n) {
  std::unique_ptr<uint8_t[]> buf(new uint8_t[n]);
  if (n) std::memcpy(buf.get(), f.data(), n);
  result r;
  std::memset(static_cast<void*>(&r.p), 0xab, sizeof r.p);
  r.reason = parse_packet(buf.get(), static_cast<uint32_t>(n), r.p);
  return r;
}
result parse(const std::vector<uint8_t>& f) { return parse_prefix(f, f.size()); }

void set16(std::vector<uint8_t>& f, size_t off, uint16_t host) {
  f[off] = static_cast<uint8_t>(host >> 8);
  f[off + 1] = static_cast<uint8_t>(host);
}

void expect_pad_zero(const parsed_packet& p) {
  EXPECT_EQ(p.key.pad[0], 0);
  EXPECT_EQ(p.key.pad[1], 0);
  EXPECT_EQ(p.key.pad[2], 0);
}

std::vector<uint8_t> bytes(size_t n, uint8_t first = 0) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(first + i);
  return v;
}

// Frame builders for the shapes used in several tests.
frame_spec v6_spec(uint8_t proto = 6) {
  frame_spec s;
  s.src = "2001:db8::1";
  s.dst = "2001:db8:0:1::10";
  s.proto = proto;
  return s;
}

// Hop-by-hop (8 bytes), routing (16 bytes), destination options (24 bytes).
std::vector<std::vector<uint8_t>> ext_chain() {
  std::vector<uint8_t> hbh = {0, 1, 4, 0, 0, 0, 0};           // PadN option, 6 bytes of body
  std::vector<uint8_t> rt(15, 0);                               // 2 + 14 = 16 bytes
  rt[0] = 43;
  std::vector<uint8_t> dst(23, 0);                              // 2 + 22 = 24 bytes
  dst[0] = 60;
  dst[1] = 1;  // PadN over the rest
  dst[2] = 20;
  return {hbh, rt, dst};
}

std::vector<uint8_t> arp_frame(bool vlan, size_t body_len = 28) {
  std::vector<uint8_t> f(vlan ? 18 : 14);
  std::memset(f.data(), 0xff, 6);
  for (int i = 0; i < 6; ++i) f[6 + static_cast<size_t>(i)] = static_cast<uint8_t>(0x10 + i);
  if (vlan) {
    set16(f, 12, 0x8100);
    set16(f, 14, 7);
  }
  set16(f, f.size() - 2, 0x0806);
  std::vector<uint8_t> body = {0, 1, 0x08, 0, 6, 4, 0, 1,          // Ethernet/IPv4, request
                               0x10, 0x11, 0x12, 0x13, 0x14, 0x15,  // sender MAC
                               192, 0, 2, 1,                        // sender IP
                               0, 0, 0, 0, 0, 0,                    // target MAC
                               198, 51, 100, 10};                   // target IP
  body.resize(body_len, 0);
  f.insert(f.end(), body.begin(), body.end());
  return f;
}

std::vector<uint8_t> ns_body(size_t len = 24) {
  std::vector<uint8_t> b(len, 0);
  b[0] = 135;  // neighbour solicitation
  auto target = addr("2001:db8:0:1::10");
  if (len >= 24) std::memcpy(b.data() + 8, target.bytes, 16);
  return b;
}

// ---------------------------------------------------------------- valid frames, every field

TEST(PacketParser, Ipv4TcpEveryField) {
  frame_spec s;
  s.src_port = 40000;
  s.dst_port = 443;
  s.tcp_flags = tcp_syn | tcp_ack;
  s.seq = 0x01020304;
  s.ack = 0xa0b0c0d0;
  s.payload = bytes(10);
  auto f = build_frame(s);
  ASSERT_EQ(f.size(), 14u + 20 + 20 + 10);
  auto [reason, p] = parse(f);
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.kind, packet_kind::l4);
  EXPECT_EQ(p.key.src, addr("192.0.2.1"));
  EXPECT_EQ(p.key.dst, addr("198.51.100.10"));
  EXPECT_TRUE(p.key.src.is_v4());
  EXPECT_EQ(p.key.src_port, htons(40000));
  EXPECT_EQ(p.key.dst_port, htons(443));
  EXPECT_EQ(p.key.proto, 6);
  expect_pad_zero(p);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l4_offset, 34);
  EXPECT_EQ(p.l3_length, 50);
  EXPECT_EQ(p.vlan_tci, 0);
  EXPECT_EQ(p.has_vlan, 0);
  EXPECT_EQ(p.ip_version, 4);
  EXPECT_EQ(p.tcp_flags, tcp_syn | tcp_ack);
  EXPECT_EQ(p.tcp_seq, 0x01020304u);
  EXPECT_EQ(p.tcp_ack, 0xa0b0c0d0u);

  flow_key expected;
  expected.src = addr("192.0.2.1");
  expected.dst = addr("198.51.100.10");
  expected.src_port = htons(40000);
  expected.dst_port = htons(443);
  expected.proto = 6;
  EXPECT_TRUE(p.key == expected);
}

TEST(PacketParser, TcpFlagsAreTheWireByte) {
  frame_spec s;
  s.tcp_flags = tcp_fin | tcp_rst | tcp_psh | 0x80;  // CWR passes through too
  auto [reason, p] = parse(build_frame(s));
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.tcp_flags, 0x8d);
}

TEST(PacketParser, Ipv4UdpEveryField) {
  frame_spec s;
  s.proto = 17;
  s.src_port = 5353;
  s.dst_port = 53;
  s.payload = bytes(30);
  auto f = build_frame(s);
  auto [reason, p] = parse(f);
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.kind, packet_kind::l4);
  EXPECT_EQ(p.key.src, addr("192.0.2.1"));
  EXPECT_EQ(p.key.dst, addr("198.51.100.10"));
  EXPECT_EQ(p.key.src_port, htons(5353));
  EXPECT_EQ(p.key.dst_port, htons(53));
  EXPECT_EQ(p.key.proto, 17);
  expect_pad_zero(p);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l4_offset, 34);
  EXPECT_EQ(p.l3_length, 20 + 8 + 30);
  EXPECT_EQ(p.vlan_tci, 0);
  EXPECT_EQ(p.has_vlan, 0);
  EXPECT_EQ(p.ip_version, 4);
  EXPECT_EQ(p.tcp_flags, 0);
  EXPECT_EQ(p.tcp_seq, 0u);
  EXPECT_EQ(p.tcp_ack, 0u);
}

TEST(PacketParser, Ipv4OptionsAreSkipped) {
  frame_spec s;
  s.ipv4_options = {0x94, 0x04, 0x00, 0x00,  // router alert
                    0x01, 0x01, 0x01, 0x00};  // NOP NOP NOP EOL
  s.src_port = 1234;
  s.dst_port = 8080;
  s.seq = 77;
  auto f = build_frame(s);
  auto [reason, p] = parse(f);
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l4_offset, 14 + 28);
  EXPECT_EQ(p.l3_length, 28 + 20);
  EXPECT_EQ(p.key.src_port, htons(1234));
  EXPECT_EQ(p.key.dst_port, htons(8080));
  EXPECT_EQ(p.tcp_seq, 77u);
  EXPECT_EQ(p.tcp_flags, tcp_syn);
}

TEST(PacketParser, Ipv4MaximumOptions) {
  frame_spec s;
  s.proto = 17;
  s.ipv4_options.assign(40, 0x01);  // IHL 15
  auto [reason, p] = parse(build_frame(s));
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.l4_offset, 14 + 60);
  EXPECT_EQ(p.l3_length, 60 + 8);
  EXPECT_EQ(p.key.dst_port, htons(80));
}

TEST(PacketParser, Ipv6TcpEveryField) {
  auto s = v6_spec();
  s.src_port = 50000;
  s.dst_port = 443;
  s.tcp_flags = tcp_ack;
  s.seq = 0xfffffffe;
  s.ack = 12345;
  s.payload = bytes(5);
  auto f = build_frame(s);
  auto [reason, p] = parse(f);
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.kind, packet_kind::l4);
  EXPECT_EQ(p.key.src, addr("2001:db8::1"));
  EXPECT_EQ(p.key.dst, addr("2001:db8:0:1::10"));
  EXPECT_FALSE(p.key.src.is_v4());
  EXPECT_EQ(p.key.src_port, htons(50000));
  EXPECT_EQ(p.key.dst_port, htons(443));
  EXPECT_EQ(p.key.proto, 6);
  expect_pad_zero(p);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l4_offset, 54);
  EXPECT_EQ(p.l3_length, 40 + 20 + 5);
  EXPECT_EQ(p.vlan_tci, 0);
  EXPECT_EQ(p.has_vlan, 0);
  EXPECT_EQ(p.ip_version, 6);
  EXPECT_EQ(p.tcp_flags, tcp_ack);
  EXPECT_EQ(p.tcp_seq, 0xfffffffeu);
  EXPECT_EQ(p.tcp_ack, 12345u);
}

TEST(PacketParser, Ipv6ExtensionChainEveryField) {
  auto s = v6_spec(17);
  s.ipv6_ext = ext_chain();
  s.src_port = 4500;
  s.dst_port = 4501;
  s.payload = bytes(12);
  auto f = build_frame(s);
  // Sanity-check the builder laid out what we think: 8 + 16 + 24 bytes of extensions.
  ASSERT_EQ(f.size(), 14u + 40 + 48 + 8 + 12);
  ASSERT_EQ(f[14 + 6], 0);                // hop-by-hop first
  ASSERT_EQ(f[54 + 1], 0);                // 8 bytes
  ASSERT_EQ(f[62 + 1], 1);                // routing: 16 bytes
  ASSERT_EQ(f[78 + 1], 2);                // destination options: 24 bytes
  auto [reason, p] = parse(f);
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.kind, packet_kind::l4);
  EXPECT_EQ(p.key.src, addr("2001:db8::1"));
  EXPECT_EQ(p.key.dst, addr("2001:db8:0:1::10"));
  EXPECT_EQ(p.key.src_port, htons(4500));
  EXPECT_EQ(p.key.dst_port, htons(4501));
  EXPECT_EQ(p.key.proto, 17);
  expect_pad_zero(p);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l4_offset, 14 + 40 + 48);
  EXPECT_EQ(p.l3_length, 40 + 48 + 8 + 12);
  EXPECT_EQ(p.has_vlan, 0);
  EXPECT_EQ(p.vlan_tci, 0);
  EXPECT_EQ(p.ip_version, 6);
  EXPECT_EQ(p.tcp_flags, 0);
  EXPECT_EQ(p.tcp_seq, 0u);
  EXPECT_EQ(p.tcp_ack, 0u);
}

TEST(PacketParser, VlanTaggedIpv4) {
  frame_spec s;
  s.vlan = 0x2000 | 100;  // PCP 1, VID 100: the whole TCI is reported
  s.src_port = 999;
  s.seq = 5;
  auto f = build_frame(s);
  auto [reason, p] = parse(f);
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.has_vlan, 1);
  EXPECT_EQ(p.vlan_tci, 0x2064);
  EXPECT_EQ(p.l3_offset, 18);
  EXPECT_EQ(p.l4_offset, 38);
  EXPECT_EQ(p.l3_length, 40);
  EXPECT_EQ(p.ip_version, 4);
  EXPECT_EQ(p.key.src, addr("192.0.2.1"));
  EXPECT_EQ(p.key.dst, addr("198.51.100.10"));
  EXPECT_EQ(p.key.src_port, htons(999));
  EXPECT_EQ(p.key.dst_port, htons(80));
  EXPECT_EQ(p.key.proto, 6);
  expect_pad_zero(p);
  EXPECT_EQ(p.tcp_flags, tcp_syn);
  EXPECT_EQ(p.tcp_seq, 5u);
  EXPECT_EQ(p.tcp_ack, 0u);
  EXPECT_EQ(p.kind, packet_kind::l4);
}

TEST(PacketParser, VlanTaggedIpv6Udp) {
  auto s = v6_spec(17);
  s.vlan = 4094;
  auto [reason, p] = parse(build_frame(s));
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.has_vlan, 1);
  EXPECT_EQ(p.vlan_tci, 4094);
  EXPECT_EQ(p.l3_offset, 18);
  EXPECT_EQ(p.l4_offset, 58);
  EXPECT_EQ(p.l3_length, 48);
  EXPECT_EQ(p.ip_version, 6);
  EXPECT_EQ(p.key.proto, 17);
  EXPECT_EQ(p.key.src_port, htons(40000));
}

TEST(PacketParser, VlanZeroTciIsStillTagged) {
  frame_spec s;
  s.vlan = 0;  // priority tag
  auto [reason, p] = parse(build_frame(s));
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.has_vlan, 1);
  EXPECT_EQ(p.vlan_tci, 0);
  EXPECT_EQ(p.l3_offset, 18);
}

// ---------------------------------------------------------------- truncation at every byte

// Every strict prefix of the IP packet must be rejected without reading past the prefix; from
// the end of the IP packet on (Ethernet padding) the frame must parse.
void sweep(const std::vector<uint8_t>& f, size_t ip_end) {
  ASSERT_LE(ip_end, f.size());
  for (size_t n = 0; n < ip_end; ++n) {
    auto r = parse_prefix(f, n);
    EXPECT_NE(r.reason, drop_reason::none) << "prefix length " << n;
  }
  for (size_t n = ip_end; n <= f.size(); ++n) {
    auto r = parse_prefix(f, n);
    EXPECT_EQ(r.reason, drop_reason::none) << "prefix length " << n;
  }
}

TEST(PacketParserTruncation, Ipv4TcpWithOptions) {
  frame_spec s;
  s.ipv4_options = {1, 1, 1, 0};
  s.payload = bytes(9);
  auto f = build_frame(s);
  ASSERT_EQ(f.size(), 14u + 24 + 20 + 9);
  sweep(f, f.size());
}

TEST(PacketParserTruncation, Ipv6TcpWithExtChain) {
  auto s = v6_spec();
  s.ipv6_ext = ext_chain();
  s.payload = bytes(3);
  auto f = build_frame(s);
  ASSERT_EQ(f.size(), 14u + 40 + 48 + 20 + 3);
  sweep(f, f.size());
}

TEST(PacketParserTruncation, VlanUdpWithPadding) {
  frame_spec s;
  s.vlan = 12;
  s.proto = 17;
  s.payload = bytes(2);
  auto f = build_frame(s);
  ASSERT_EQ(f.size(), 60u);  // 18 + 20 + 8 + 2 = 48, padded
  sweep(f, 48);
}

TEST(PacketParserTruncation, VlanIpv6Udp) {
  auto s = v6_spec(17);
  s.vlan = 300;
  s.ipv6_ext = {{60, 1, 4, 0, 0, 0, 0}};
  s.payload = bytes(7);
  auto f = build_frame(s);
  ASSERT_EQ(f.size(), 18u + 40 + 8 + 8 + 7);
  sweep(f, f.size());
}

TEST(PacketParserTruncation, ArpAndNeighborSolicitation) {
  sweep(arp_frame(false), 42);
  sweep(arp_frame(true), 46);
  auto s = v6_spec(58);
  s.payload = ns_body(32);
  auto f = build_frame(s);
  sweep(f, f.size());
}

// ---------------------------------------------------------------- L2

TEST(PacketParser, TruncatedL2) {
  auto f = build_frame(frame_spec{});
  EXPECT_EQ(parse_prefix(f, 0).reason, drop_reason::truncated_l2);
  EXPECT_EQ(parse_prefix(f, 13).reason, drop_reason::truncated_l2);
  frame_spec v;
  v.vlan = 5;
  auto fv = build_frame(v);
  EXPECT_EQ(parse_prefix(fv, 17).reason, drop_reason::truncated_l2);
  EXPECT_EQ(parse_prefix(fv, 18).reason, drop_reason::truncated_l3);
}

TEST(PacketParser, UnknownEthertypes) {
  auto f = build_frame(frame_spec{});
  set16(f, 12, 0x88cc);  // LLDP
  EXPECT_EQ(parse(f).reason, drop_reason::unsupported_l3);
  set16(f, 12, 0x88a8);  // 802.1ad outer tag: only a single 802.1Q tag is supported
  EXPECT_EQ(parse(f).reason, drop_reason::unsupported_l3);
  set16(f, 12, 0x0000);
  EXPECT_EQ(parse(f).reason, drop_reason::unsupported_l3);

  frame_spec v;
  v.vlan = 5;
  auto fv = build_frame(v);
  set16(fv, 16, 0x8100);  // a second 802.1Q tag
  EXPECT_EQ(parse(fv).reason, drop_reason::unsupported_l3);
  set16(fv, 16, 0x9000);
  EXPECT_EQ(parse(fv).reason, drop_reason::unsupported_l3);
}

// ---------------------------------------------------------------- IPv4 header checks

TEST(PacketParser, Ipv4VersionMismatch) {
  auto f = build_frame(frame_spec{});
  f[14] = 0x65;
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_version);
  f[14] = 0x05;
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_version);
  auto f6 = build_frame(v6_spec());
  f6[14] = 0x45;  // an IPv4 header behind the IPv6 ethertype
  EXPECT_EQ(parse(f6).reason, drop_reason::bad_ip_version);
}

TEST(PacketParser, Ipv4IhlTooSmall) {
  auto f = build_frame(frame_spec{});
  for (uint8_t ihl = 0; ihl < 5; ++ihl) {
    f[14] = static_cast<uint8_t>(0x40 | ihl);
    EXPECT_EQ(parse(f).reason, drop_reason::bad_ihl) << "ihl " << int(ihl);
  }
}

TEST(PacketParser, Ipv4IhlBeyondFrame) {
  frame_spec s;
  s.proto = 17;
  auto f = build_frame(s);  // 14 + 20 + 8 padded to 60: 46 bytes after L2
  ASSERT_EQ(f.size(), 60u);
  f[14] = 0x4c;  // 48 bytes: beyond the frame
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ihl);
  f[14] = 0x4b;  // 44 bytes: inside the frame, but beyond total length (28)
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_length);
}

TEST(PacketParser, Ipv4TotalLengthTooSmall) {
  auto f = build_frame(frame_spec{});
  set16(f, 16, 19);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_length);
  set16(f, 16, 0);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_length);

  frame_spec o;
  o.ipv4_options = {1, 1, 1, 1};
  auto fo = build_frame(o);
  set16(fo, 16, 23);  // smaller than IHL*4 = 24
  EXPECT_EQ(parse(fo).reason, drop_reason::bad_ip_length);
}

TEST(PacketParser, Ipv4TotalLengthTooBig) {
  frame_spec s;
  s.payload = bytes(20);
  auto f = build_frame(s);  // no padding
  set16(f, 16, static_cast<uint16_t>(f.size() - 14 + 1));
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_length);
  set16(f, 16, 0xffff);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_length);
  // Exactly the bytes after L2 is fine.
  set16(f, 16, static_cast<uint16_t>(f.size() - 14));
  EXPECT_EQ(parse(f).reason, drop_reason::none);
}

TEST(PacketParser, Ipv4Fragments) {
  frame_spec s;
  s.ipv4_frag = 0x2000;  // MF, offset 0: first fragment
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::fragment);
  s.ipv4_frag = 0x0001;  // last fragment, offset 8
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::fragment);
  s.ipv4_frag = 0x1fff;
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::fragment);
  s.ipv4_frag = 0x4000 | 0x2000 | 0x0010;
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::fragment);
  s.ipv4_frag = 0x4000;  // DF alone is not a fragment
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::none);
}

// ---------------------------------------------------------------- IPv6 header checks

TEST(PacketParser, Ipv6PayloadLength) {
  auto s = v6_spec();
  s.payload = bytes(20);
  auto f = build_frame(s);
  const uint16_t plen = 20 + 20;
  ASSERT_EQ(f[18] << 8 | f[19], plen);
  set16(f, 18, plen + 1);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_length);
  set16(f, 18, 0xffff);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ip_length);
  // Shorter payload length: TCP no longer fits in what the header claims.
  set16(f, 18, 19);
  EXPECT_EQ(parse(f).reason, drop_reason::truncated_l4);
  set16(f, 18, 0);
  EXPECT_EQ(parse(f).reason, drop_reason::truncated_l4);
  set16(f, 18, 20);  // header only; the rest is treated as padding
  auto r = parse(f);
  ASSERT_EQ(r.reason, drop_reason::none);
  EXPECT_EQ(r.p.l3_length, 60);
}

TEST(PacketParser, Ipv6TruncatedFixedHeader) {
  auto f = build_frame(v6_spec());
  EXPECT_EQ(parse_prefix(f, 14 + 39).reason, drop_reason::truncated_l3);
  EXPECT_EQ(parse_prefix(f, 14).reason, drop_reason::truncated_l3);
}

std::vector<std::vector<uint8_t>> dest_opts(size_t count) {
  return std::vector<std::vector<uint8_t>>(count, std::vector<uint8_t>{60, 1, 4, 0, 0, 0, 0});
}

TEST(PacketParser, Ipv6EightExtensionHeadersAccepted) {
  auto s = v6_spec();
  s.ipv6_ext = dest_opts(8);
  auto [reason, p] = parse(build_frame(s));
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.l4_offset, 14 + 40 + 64);
  EXPECT_EQ(p.key.proto, 6);
}

TEST(PacketParser, Ipv6NineExtensionHeadersRejected) {
  auto s = v6_spec();
  s.ipv6_ext = dest_opts(9);
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::bad_ext_header);
  s.ipv6_ext = dest_opts(30);
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::bad_ext_header);
}

TEST(PacketParser, Ipv6ExtensionHeaderOverrunsPayload) {
  auto s = v6_spec(17);
  s.ipv6_ext = ext_chain();
  auto f = build_frame(s);
  const size_t rt = 14 + 40 + 8;  // routing header
  ASSERT_EQ(f[rt + 1], 1);
  // Payload: 48 bytes of extensions + 8 of UDP = 56; routing from offset 8 may be at most 48.
  f[rt + 1] = 6;  // 56 bytes: ends at 64 > 56
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ext_header);
  f[rt + 1] = 5;  // 48 bytes: fits exactly, but the next header (dest opts) has no room left
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ext_header);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ext_header);
  f[rt + 1] = 255;
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ext_header);

  // The header fits the frame but not the IP payload: padding is not payload.
  auto s2 = v6_spec(17);
  s2.ipv6_ext = {{60, 1, 4, 0, 0, 0, 0}};
  auto g = build_frame(s2);
  ASSERT_EQ(g.size(), 14u + 40 + 8 + 8);
  g.resize(g.size() + 64, 0);  // padding
  g[14 + 40 + 1] = 2;          // 24 bytes: 8 past the 16-byte payload, inside the padding
  EXPECT_EQ(parse(g).reason, drop_reason::bad_ext_header);
}

TEST(PacketParser, Ipv6ExtensionHeaderLessThanEightBytesLeft) {
  // Next header says hop-by-hop, but the payload holds only 4 bytes.
  auto s = v6_spec(0);
  s.payload = {0, 0, 0, 0};
  auto f = build_frame(s);
  ASSERT_EQ(f[14 + 6], 0);
  ASSERT_EQ(f[18] << 8 | f[19], 4);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ext_header);
  // And with an empty payload.
  set16(f, 18, 0);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_ext_header);
}

TEST(PacketParser, Ipv6FragmentHeader) {
  auto s = v6_spec();
  s.ipv6_ext = {{44, 0, 1, 0, 0, 0, 1}};
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::fragment);
  s.ipv6_ext = {{0, 1, 4, 0, 0, 0, 0}, {44, 0, 0, 0, 0, 0, 7}};
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::fragment);
}

// ---------------------------------------------------------------- L4 header checks

TEST(PacketParser, TcpTruncated) {
  auto f = build_frame(frame_spec{});
  set16(f, 16, 20 + 19);  // IP says 19 bytes of TCP (frame has more: padding)
  EXPECT_EQ(parse(f).reason, drop_reason::truncated_l4);
  set16(f, 16, 20);
  EXPECT_EQ(parse(f).reason, drop_reason::truncated_l4);
}

TEST(PacketParser, TcpDataOffsetTooSmall) {
  auto f = build_frame(frame_spec{});
  for (uint8_t doff = 0; doff < 5; ++doff) {
    f[14 + 20 + 12] = static_cast<uint8_t>(doff << 4);
    EXPECT_EQ(parse(f).reason, drop_reason::bad_l4_header) << "doff " << int(doff);
  }
}

TEST(PacketParser, TcpDataOffsetBeyondPacket) {
  frame_spec s;
  s.payload = bytes(20);
  auto f = build_frame(s);  // 40 bytes of L4
  const size_t doff_at = 14 + 20 + 12;
  f[doff_at] = 10 << 4;  // 40 bytes: exactly the L4 bytes
  EXPECT_EQ(parse(f).reason, drop_reason::none);
  f[doff_at] = 11 << 4;  // 44 bytes
  EXPECT_EQ(parse(f).reason, drop_reason::bad_l4_header);
  f[doff_at] = 15 << 4;
  EXPECT_EQ(parse(f).reason, drop_reason::bad_l4_header);

  // Ethernet padding is not TCP: 54-byte frame padded to 60, data offset 6 (24 bytes) fits the
  // frame but not the IP packet.
  auto g = build_frame(frame_spec{});
  ASSERT_EQ(g.size(), 60u);
  g[doff_at] = 6 << 4;
  EXPECT_EQ(parse(g).reason, drop_reason::bad_l4_header);

  // Same over IPv6.
  auto h = build_frame(v6_spec());
  h[14 + 40 + 12] = 6 << 4;
  EXPECT_EQ(parse(h).reason, drop_reason::bad_l4_header);
}

TEST(PacketParser, UdpLength) {
  frame_spec s;
  s.proto = 17;
  s.payload = bytes(4);
  auto f = build_frame(s);  // 14 + 20 + 12 = 46, padded to 60
  const size_t ulen_at = 14 + 20 + 4;
  ASSERT_EQ(f[ulen_at] << 8 | f[ulen_at + 1], 12);
  set16(f, ulen_at, 7);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_l4_header);
  set16(f, ulen_at, 0);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_l4_header);
  set16(f, ulen_at, 13);  // beyond the IP packet, inside the Ethernet padding
  EXPECT_EQ(parse(f).reason, drop_reason::bad_l4_header);
  set16(f, ulen_at, 0xffff);
  EXPECT_EQ(parse(f).reason, drop_reason::bad_l4_header);
  set16(f, ulen_at, 8);  // shorter than the IP payload is tolerated
  EXPECT_EQ(parse(f).reason, drop_reason::none);
  set16(f, ulen_at, 12);
  EXPECT_EQ(parse(f).reason, drop_reason::none);

  auto g = build_frame(v6_spec(17));
  set16(g, 14 + 40 + 4, 9);
  EXPECT_EQ(parse(g).reason, drop_reason::bad_l4_header);
}

TEST(PacketParser, UdpTruncated) {
  frame_spec s;
  s.proto = 17;
  auto f = build_frame(s);
  set16(f, 16, 20 + 7);
  EXPECT_EQ(parse(f).reason, drop_reason::truncated_l4);
}

TEST(PacketParser, IcmpIsUnsupportedL4) {
  frame_spec s;
  s.proto = 1;
  s.payload = {8, 0, 0, 0, 0, 1, 0, 1};  // echo request
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::unsupported_l4);
  s.proto = 132;  // SCTP
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::unsupported_l4);
  auto s6 = v6_spec(59);  // no next header
  EXPECT_EQ(parse(build_frame(s6)).reason, drop_reason::unsupported_l4);
}

// ---------------------------------------------------------------- ARP and neighbour discovery

TEST(PacketParser, Arp) {
  auto f = arp_frame(false);
  auto [reason, p] = parse(f);
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.kind, packet_kind::arp);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l3_length, 28);
  EXPECT_EQ(p.has_vlan, 0);
  EXPECT_EQ(p.vlan_tci, 0);
  expect_pad_zero(p);

  auto fv = arp_frame(true);
  fv.resize(60, 0);  // padded like a real minimum-size frame
  auto rv = parse(fv);
  ASSERT_EQ(rv.reason, drop_reason::none);
  EXPECT_EQ(rv.p.kind, packet_kind::arp);
  EXPECT_EQ(rv.p.l3_offset, 18);
  EXPECT_EQ(rv.p.has_vlan, 1);
  EXPECT_EQ(rv.p.vlan_tci, 7);
}

TEST(PacketParser, ArpShorterThanBody) {
  EXPECT_EQ(parse(arp_frame(false, 27)).reason, drop_reason::truncated_l3);
  EXPECT_EQ(parse(arp_frame(true, 0)).reason, drop_reason::truncated_l3);
}

TEST(PacketParser, NeighborSolicitation) {
  auto s = v6_spec(58);
  s.payload = ns_body(32);  // with a source link-layer address option
  auto [reason, p] = parse(build_frame(s));
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.kind, packet_kind::icmp6_nd);
  EXPECT_EQ(p.l3_offset, 14);
  EXPECT_EQ(p.l4_offset, 54);
  EXPECT_EQ(p.l3_length, 40 + 32);
  EXPECT_EQ(p.ip_version, 6);
  EXPECT_EQ(p.key.src, addr("2001:db8::1"));
  EXPECT_EQ(p.key.dst, addr("2001:db8:0:1::10"));
  EXPECT_EQ(p.key.proto, 58);
  EXPECT_EQ(p.key.src_port, 0);
  EXPECT_EQ(p.key.dst_port, 0);
  expect_pad_zero(p);
}

TEST(PacketParser, NeighborSolicitationAfterHopByHop) {
  auto s = v6_spec(58);
  s.vlan = 9;
  s.ipv6_ext = {{0, 1, 4, 0, 0, 0, 0}};
  s.payload = ns_body(24);
  auto [reason, p] = parse(build_frame(s));
  ASSERT_EQ(reason, drop_reason::none);
  EXPECT_EQ(p.kind, packet_kind::icmp6_nd);
  EXPECT_EQ(p.l3_offset, 18);
  EXPECT_EQ(p.l4_offset, 18 + 40 + 8);
  EXPECT_EQ(p.l3_length, 40 + 8 + 24);
}

TEST(PacketParser, OtherIcmpv6IsUnsupported) {
  auto s = v6_spec(58);
  s.payload = ns_body(23);  // too short for a solicitation
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::unsupported_l4);
  s.payload = ns_body(24);
  s.payload[0] = 136;  // neighbour advertisement
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::unsupported_l4);
  s.payload[0] = 128;  // echo request
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::unsupported_l4);
  s.payload.clear();
  EXPECT_EQ(parse(build_frame(s)).reason, drop_reason::unsupported_l4);
}

// ---------------------------------------------------------------- Ethernet padding

TEST(PacketParser, EthernetPaddingIsIgnored) {
  frame_spec s;
  s.proto = 17;
  auto f = build_frame(s);
  ASSERT_EQ(f.size(), 60u);  // 42 bytes + 18 of padding
  auto r = parse(f);
  ASSERT_EQ(r.reason, drop_reason::none);
  EXPECT_EQ(r.p.l3_length, 28);

  frame_spec t;
  t.payload = bytes(100);
  auto g = build_frame(t);
  g.resize(g.size() + 37, 0xee);  // odd, non-zero padding
  auto rg = parse(g);
  ASSERT_EQ(rg.reason, drop_reason::none);
  EXPECT_EQ(rg.p.l3_length, 20 + 20 + 100);
  EXPECT_EQ(rg.p.l4_offset, 34);

  auto h = build_frame(v6_spec(17));
  h.resize(h.size() + 100, 0xff);
  auto rh = parse(h);
  ASSERT_EQ(rh.reason, drop_reason::none);
  EXPECT_EQ(rh.p.l3_length, 48);
}

TEST(PacketParser, HugeLengthIsClampedNotMisread) {
  // A buffer longer than 64 KiB (only possible with a caller bug): the IP length still rules.
  auto f = build_frame(frame_spec{});
  f.resize(70000, 0);
  auto r = parse(f);
  ASSERT_EQ(r.reason, drop_reason::none);
  EXPECT_EQ(r.p.l3_length, 40);
}

// ---------------------------------------------------------------- random corruption

// Random byte flips and lengths over valid frames: never crashes or over-reads (under
// ASAN/valgrind), and every accepted frame satisfies the offset invariants the worker relies on.
TEST(PacketParser, RandomCorruptionKeepsInvariants) {
  std::vector<std::vector<uint8_t>> seeds;
  seeds.push_back(build_frame(frame_spec{}));
  {
    frame_spec s;
    s.vlan = 3;
    s.proto = 17;
    s.ipv4_options = {1, 1, 1, 0};
    s.payload = bytes(16);
    seeds.push_back(build_frame(s));
  }
  {
    auto s = v6_spec();
    s.ipv6_ext = ext_chain();
    seeds.push_back(build_frame(s));
  }
  {
    auto s = v6_spec(58);
    s.payload = ns_body(24);
    seeds.push_back(build_frame(s));
  }
  seeds.push_back(arp_frame(true));

  std::mt19937 rng(12345);
  size_t accepted = 0;
  for (int iter = 0; iter < 40000; ++iter) {
    auto f = seeds[rng() % seeds.size()];
    const int flips = static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) f[rng() % f.size()] = static_cast<uint8_t>(rng());
    const size_t n = rng() % (f.size() + 1);
    auto [reason, p] = parse_prefix(f, n);
    ASSERT_LT(static_cast<size_t>(reason), static_cast<size_t>(drop_reason::not_for_vip));
    if (reason != drop_reason::none) continue;
    ++accepted;
    ASSERT_LE(size_t{p.l3_offset} + p.l3_length, n);
    ASSERT_TRUE(p.l3_offset == 14 || p.l3_offset == 18);
    ASSERT_EQ(p.has_vlan, p.l3_offset == 18 ? 1 : 0);
    ASSERT_EQ(p.key.pad[0] | p.key.pad[1] | p.key.pad[2], 0);
    if (p.kind == packet_kind::arp) continue;
    ASSERT_GE(p.l4_offset, p.l3_offset + (p.ip_version == 4 ? 20 : 40));
    const size_t l4_end = size_t{p.l3_offset} + p.l3_length;
    if (p.kind == packet_kind::icmp6_nd) {
      ASSERT_EQ(p.ip_version, 6);
      ASSERT_LE(size_t{p.l4_offset} + 24, l4_end);
    } else {
      ASSERT_EQ(p.kind, packet_kind::l4);
      ASSERT_TRUE(p.key.proto == 6 || p.key.proto == 17);
      ASSERT_LE(size_t{p.l4_offset} + (p.key.proto == 6 ? 20 : 8), l4_end);
      ASSERT_EQ(p.key.src.is_v4(), p.ip_version == 4);
    }
  }
  // The corruption is mild enough that a fair share still parses, so the invariants ran.
  EXPECT_GT(accepted, 1000u);
}

// ---------------------------------------------------------------- inline fast path

// parse_packet_fast (the worker's) must agree with parse_packet on every input: the same reason
// and, when accepted, the same value in every field. Mutations aim at the bytes the fast path
// decides on (ethertype, version/IHL, lengths, fragment bits, protocol, data offset) as well as
// anywhere, over IPv4 TCP frames with and without payload and options, and other shapes.
TEST(PacketParser, FastPathAgreesWithTheFullParser) {
  std::vector<std::vector<uint8_t>> seeds;
  {
    frame_spec s;
    s.tcp_flags = 0x10;
    s.seq = 0x01020304;
    s.ack = 0xa0b0c0d0;
    seeds.push_back(build_frame(s));
    s.payload = bytes(100);
    seeds.push_back(build_frame(s));
    s.ipv4_options = {1, 1, 1, 0};
    seeds.push_back(build_frame(s));
  }
  {
    frame_spec s;
    s.proto = 17;
    seeds.push_back(build_frame(s));
  }
  {
    frame_spec s;
    s.vlan = 5;
    seeds.push_back(build_frame(s));
  }
  seeds.push_back(build_frame(v6_spec()));
  seeds.push_back(arp_frame(false));

  const size_t hot[] = {12, 13, 14, 16, 17, 20, 21, 23, 46, 47};  // decision bytes of IPv4/TCP
  std::mt19937 rng(777);
  size_t fast_accepted = 0;
  for (int iter = 0; iter < 60000; ++iter) {
    auto f = seeds[rng() % seeds.size()];
    const int flips = static_cast<int>(rng() % 3);
    for (int k = 0; k < flips; ++k) {
      const size_t at = (rng() & 1) ? hot[rng() % std::size(hot)] : rng() % f.size();
      if (at < f.size()) f[at] = static_cast<uint8_t>(rng());
    }
    // Often the whole frame (Ethernet padding cases come from the payload seeds), sometimes cut.
    const size_t n = (rng() % 4 == 0) ? rng() % (f.size() + 1) : f.size();
    std::unique_ptr<uint8_t[]> buf(new uint8_t[n ? n : 1]);
    if (n) std::memcpy(buf.get(), f.data(), n);
    parsed_packet slow, fast;
    std::memset(static_cast<void*>(&slow), 0xab, sizeof slow);
    std::memset(static_cast<void*>(&fast), 0xcd, sizeof fast);
    const drop_reason rs = parse_packet(buf.get(), static_cast<uint32_t>(n), slow);
    const drop_reason rf = parse_packet_fast(buf.get(), static_cast<uint32_t>(n), fast);
    ASSERT_EQ(rf, rs) << "iteration " << iter;
    if (rs != drop_reason::none) continue;
    fast_accepted += fast.ip_version == 4 && fast.key.proto == 6 && !fast.has_vlan;
    ASSERT_EQ(fast.key, slow.key) << "iteration " << iter;
    ASSERT_EQ(fast.l3_offset, slow.l3_offset);
    ASSERT_EQ(fast.l4_offset, slow.l4_offset);
    ASSERT_EQ(fast.l3_length, slow.l3_length);
    ASSERT_EQ(fast.vlan_tci, slow.vlan_tci);
    ASSERT_EQ(fast.ip_version, slow.ip_version);
    ASSERT_EQ(fast.has_vlan, slow.has_vlan);
    ASSERT_EQ(fast.tcp_flags, slow.tcp_flags);
    ASSERT_EQ(fast.kind, slow.kind);
    if (slow.kind == packet_kind::l4 && slow.key.proto == 6) {
      ASSERT_EQ(fast.tcp_seq, slow.tcp_seq);
      ASSERT_EQ(fast.tcp_ack, slow.tcp_ack);
    }
  }
  // Enough inputs took the inline path for the comparison to mean something.
  EXPECT_GT(fast_accepted, 5000u);
}

// ---------------------------------------------------------------- names

// [a-z][a-z0-9]*(_[a-z0-9]+)*, without std::regex (GCC 12 warns inside it under ASAN -Werror).
bool is_snake_case(const std::string& s) {
  if (s.empty() || s[0] < 'a' || s[0] > 'z' || s.back() == '_') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '_' && s[i - 1] != '_');
    if (!ok) return false;
  }
  return true;
}

TEST(DropReasonName, DistinctSnakeCaseNames) {
  EXPECT_FALSE(is_snake_case("Bad"));
  EXPECT_FALSE(is_snake_case("a__b"));
  EXPECT_FALSE(is_snake_case("a-b"));
  EXPECT_TRUE(is_snake_case("bad_l4_header"));
  std::set<std::string> seen;
  for (size_t i = 0; i < static_cast<size_t>(drop_reason::count_); ++i) {
    const char* name = drop_reason_name(static_cast<drop_reason>(i));
    ASSERT_NE(name, nullptr) << i;
    const std::string s(name);
    EXPECT_FALSE(s.empty()) << i;
    EXPECT_TRUE(is_snake_case(s)) << s;
    EXPECT_TRUE(seen.insert(s).second) << "duplicate " << s;
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(drop_reason::count_));
  EXPECT_STREQ(drop_reason_name(drop_reason::none), "none");
  EXPECT_STREQ(drop_reason_name(drop_reason::fragment), "fragment");
  EXPECT_STREQ(drop_reason_name(drop_reason::bad_ext_header), "bad_ext_header");
  EXPECT_STREQ(drop_reason_name(drop_reason::no_headroom), "no_headroom");
  EXPECT_NE(drop_reason_name(drop_reason::count_), nullptr);
}

}  // namespace
}  // namespace tandem
