#include "dataplane/ip_address.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

namespace tandem {
namespace {

ip_address must(std::string_view text) {
  auto a = parse_ip_address(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(ip_address{});
}

TEST(IpAddress, V4RoundTripAndLayout) {
  auto a = parse_ip_address("192.0.2.1");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_v4());
  // IPv4-mapped: ::ffff:192.0.2.1
  const uint8_t expected[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
  EXPECT_EQ(std::memcmp(a->bytes, expected, 16), 0);
  EXPECT_EQ(a->v4_be(), htonl(0xc0000201));
  EXPECT_EQ(to_string(*a), "192.0.2.1");
  for (const char* text : {"0.0.0.0", "255.255.255.255", "10.1.2.3", "127.0.0.1"}) {
    auto b = parse_ip_address(text);
    ASSERT_TRUE(b) << text;
    EXPECT_TRUE(b->is_v4()) << text;
    EXPECT_EQ(to_string(*b), text);
  }
}

TEST(IpAddress, V4Constructors) {
  const uint8_t raw[4] = {198, 51, 100, 10};
  EXPECT_EQ(ip_address::from_v4_bytes(raw), must("198.51.100.10"));
  EXPECT_EQ(ip_address::from_v4_be(htonl(0xc633640a)), must("198.51.100.10"));
  EXPECT_EQ(must("198.51.100.10").v4_be(), htonl(0xc633640a));
}

TEST(IpAddress, V6RoundTrip) {
  for (const char* text : {"2001:db8::1", "::", "::1", "fe80::1:2:3:4", "2001:db8:0:1::10",
                           "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}) {
    auto a = parse_ip_address(text);
    ASSERT_TRUE(a) << text;
    EXPECT_FALSE(a->is_v4()) << text;
    EXPECT_EQ(to_string(*a), text);
  }
  // Non-canonical input prints canonically.
  EXPECT_EQ(to_string(must("2001:0DB8:0000:0000:0000:0000:0000:0001")), "2001:db8::1");
  const uint8_t raw[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(ip_address::from_v6(raw), must("2001:db8::1"));
}

TEST(IpAddress, V4MappedV6IsTheV4Address) {
  // One representation: ::ffff:a.b.c.d and a.b.c.d are the same address.
  EXPECT_EQ(must("::ffff:192.0.2.1"), must("192.0.2.1"));
  EXPECT_TRUE(must("::ffff:192.0.2.1").is_v4());
  // Other embeddings are not IPv4.
  EXPECT_FALSE(must("::192.0.2.1").is_v4());
  EXPECT_FALSE(must("64:ff9b::192.0.2.1").is_v4());
}

TEST(IpAddress, RejectsGarbage) {
  for (const char* text :
       {"1.2.3", "1.2.3.4.5", "::g", "", " 1.2.3.4", "1.2.3.4 ", "256.1.1.1", "1.2.3.-1",
        "a.b.c.d", "1:2:3:4:5:6:7:8:9", "::1::", "2001:db8::1/64", "1.2.3.4/8", "localhost",
        "12345::", ":::"}) {
    EXPECT_FALSE(parse_ip_address(text).has_value()) << '"' << text << '"';
  }
  // Longer than any address.
  EXPECT_FALSE(parse_ip_address(std::string(100, '1')).has_value());
}

TEST(IpAddress, InPrefixV4) {
  auto p8 = must("10.0.0.0");
  EXPECT_TRUE(must("10.0.0.0").in_prefix(p8, 8));
  EXPECT_TRUE(must("10.255.255.255").in_prefix(p8, 8));
  EXPECT_FALSE(must("9.255.255.255").in_prefix(p8, 8));
  EXPECT_FALSE(must("11.0.0.0").in_prefix(p8, 8));

  // /0 matches every IPv4 address, and only IPv4 addresses.
  auto any4 = must("0.0.0.0");
  EXPECT_TRUE(must("255.255.255.255").in_prefix(any4, 0));
  EXPECT_TRUE(must("1.2.3.4").in_prefix(any4, 0));
  EXPECT_FALSE(must("2001:db8::1").in_prefix(any4, 0));
  EXPECT_FALSE(must("::").in_prefix(any4, 0));

  auto host = must("192.0.2.1");
  EXPECT_TRUE(must("192.0.2.1").in_prefix(host, 32));
  EXPECT_FALSE(must("192.0.2.0").in_prefix(host, 32));
  EXPECT_FALSE(must("192.0.2.3").in_prefix(host, 32));

  auto p31 = must("192.0.2.0");
  EXPECT_TRUE(must("192.0.2.1").in_prefix(p31, 31));
  EXPECT_FALSE(must("192.0.2.2").in_prefix(p31, 31));

  // Non-octet boundary: 172.16.0.0/12 is 172.16.0.0 - 172.31.255.255.
  auto p12 = must("172.16.0.0");
  EXPECT_TRUE(must("172.31.255.255").in_prefix(p12, 12));
  EXPECT_FALSE(must("172.32.0.0").in_prefix(p12, 12));
  EXPECT_FALSE(must("172.15.255.255").in_prefix(p12, 12));

  // Lengths beyond the family's width never match.
  EXPECT_FALSE(must("192.0.2.1").in_prefix(host, 33));
}

TEST(IpAddress, InPrefixV6) {
  auto p32 = must("2001:db8::");
  EXPECT_TRUE(must("2001:db8::1").in_prefix(p32, 32));
  EXPECT_TRUE(must("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff").in_prefix(p32, 32));
  EXPECT_FALSE(must("2001:db9::").in_prefix(p32, 32));
  EXPECT_FALSE(must("2001:db7:ffff::").in_prefix(p32, 32));

  auto any6 = must("::");
  EXPECT_TRUE(must("2001:db8::1").in_prefix(any6, 0));
  EXPECT_TRUE(must("ffff::").in_prefix(any6, 0));
  EXPECT_FALSE(must("10.0.0.1").in_prefix(any6, 0));  // IPv4 is not under ::/0 here

  auto host = must("2001:db8::10");
  EXPECT_TRUE(must("2001:db8::10").in_prefix(host, 128));
  EXPECT_FALSE(must("2001:db8::11").in_prefix(host, 128));
  EXPECT_FALSE(must("2001:db8::10").in_prefix(host, 129));

  auto p127 = must("2001:db8::10");
  EXPECT_TRUE(must("2001:db8::11").in_prefix(p127, 127));
  EXPECT_FALSE(must("2001:db8::12").in_prefix(p127, 127));
  EXPECT_FALSE(must("2001:db8::f").in_prefix(p127, 127));

  auto p8 = must("fe00::");
  EXPECT_TRUE(must("feff::1").in_prefix(p8, 8));
  EXPECT_FALSE(must("fd00::1").in_prefix(p8, 8));
}

TEST(IpPrefix, ParsesAndPrints) {
  auto p = parse_ip_prefix("10.0.0.0/8");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->address, must("10.0.0.0"));
  EXPECT_EQ(p->length, 8);
  EXPECT_EQ(*p, (ip_prefix{must("10.0.0.0"), 8}));
  EXPECT_EQ(to_string(*p), "10.0.0.0/8");

  for (const char* text : {"0.0.0.0/0", "192.0.2.1/32", "192.0.2.0/31", "2001:db8::/32",
                           "::/0", "2001:db8::1/128", "2001:db8::10/127", "fe80::/10"}) {
    auto q = parse_ip_prefix(text);
    ASSERT_TRUE(q) << text;
    EXPECT_EQ(to_string(*q), text);
  }
  EXPECT_EQ(parse_ip_prefix("2001:db8::/32")->length, 32);
  EXPECT_EQ(parse_ip_prefix("::/0")->length, 0);
  EXPECT_EQ(parse_ip_prefix("2001:db8::1/128")->length, 128);
}

TEST(IpPrefix, RejectsHostBits) {
  EXPECT_FALSE(parse_ip_prefix("10.0.0.1/8"));
  EXPECT_FALSE(parse_ip_prefix("10.128.0.0/8"));
  EXPECT_FALSE(parse_ip_prefix("192.0.2.1/31"));
  EXPECT_FALSE(parse_ip_prefix("1.0.0.0/0"));
  EXPECT_FALSE(parse_ip_prefix("2001:db8::1/32"));
  EXPECT_FALSE(parse_ip_prefix("2001:db8::11/127"));
  EXPECT_FALSE(parse_ip_prefix("::1/0"));
  EXPECT_FALSE(parse_ip_prefix("fe80::/8"));  // 0xfe80: bit 8 is a host bit and set
}

TEST(IpPrefix, RejectsBadLengths) {
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/33"));
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/128"));
  EXPECT_FALSE(parse_ip_prefix("2001:db8::/129"));
  EXPECT_FALSE(parse_ip_prefix("2001:db8::/300"));
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/-1"));
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/+8"));
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/8x"));
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/ 8"));
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/8/8"));
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/99999999999999999999"));
}

TEST(IpPrefix, RejectsMissingParts) {
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0"));
  EXPECT_FALSE(parse_ip_prefix("2001:db8::"));
  EXPECT_FALSE(parse_ip_prefix("10.0.0.0/"));
  EXPECT_FALSE(parse_ip_prefix("/8"));
  EXPECT_FALSE(parse_ip_prefix(""));
  EXPECT_FALSE(parse_ip_prefix("garbage/8"));
}

}  // namespace
}  // namespace tandem
