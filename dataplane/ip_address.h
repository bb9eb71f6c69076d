// One address type for IPv4 and IPv6 so flow keys, services and backends have one shape.
// IPv4 is stored IPv4-mapped (::ffff:a.b.c.d), as in RFC 4291 section 2.5.5.2.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace tandem {

struct ip_address {
  alignas(8) uint8_t bytes[16] = {};

  static ip_address from_v4_be(uint32_t be) {
    ip_address a;
    a.bytes[10] = 0xff;
    a.bytes[11] = 0xff;
    std::memcpy(a.bytes + 12, &be, 4);
    return a;
  }
  static ip_address from_v4_bytes(const uint8_t* p) {
    uint32_t be;
    std::memcpy(&be, p, 4);
    return from_v4_be(be);
  }
  static ip_address from_v6(const uint8_t* p) {
    ip_address a;
    std::memcpy(a.bytes, p, 16);
    return a;
  }

  bool is_v4() const {
    static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(bytes, prefix, 12) == 0;
  }
  // Network byte order, valid only when is_v4().
  uint32_t v4_be() const {
    uint32_t be;
    std::memcpy(&be, bytes + 12, 4);
    return be;
  }
  // True when the first `len` bits (counted in the address family's own width) match.
  bool in_prefix(const ip_address& prefix, uint8_t len) const;

  friend bool operator==(const ip_address& a, const ip_address& b) {
    return std::memcmp(a.bytes, b.bytes, 16) == 0;
  }
};
static_assert(sizeof(ip_address) == 16);

// Parses "192.0.2.1" or "2001:db8::1"; nullopt when neither.
std::optional<ip_address> parse_ip_address(std::string_view text);
std::string to_string(const ip_address& a);

struct ip_prefix {
  ip_address address;
  uint8_t length = 0;  // in bits of the family's own width (0-32 for IPv4, 0-128 for IPv6)
  friend bool operator==(const ip_prefix&, const ip_prefix&) = default;
};
// Parses "10.0.0.0/8" or "2001:db8::/32"; host bits must be zero.
std::optional<ip_prefix> parse_ip_prefix(std::string_view text);
std::string to_string(const ip_prefix& p);

}  // namespace tandem
