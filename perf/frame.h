// 64-byte (60 bytes + FCS on the wire) IPv4/TCP frames with correct checksums, for the perf/
// generators. Kept here rather than in tests/support so perf binaries do not need gtest.
#pragma once

#include <cstdint>
#include <cstring>

namespace tandem::perf {

inline constexpr uint32_t tcp64_len = 60;

struct tcp4_spec {
  const uint8_t* dst_mac;
  const uint8_t* src_mac;
  uint32_t src_ip;     // host order
  uint32_t dst_ip;     // host order
  uint16_t src_port;   // host order
  uint16_t dst_port;   // host order
  uint8_t flags;       // TCP flag bits
  uint32_t seq;
  uint32_t ack;
  uint16_t ip_id;
};

namespace detail {
inline uint32_t sum16(const uint8_t* p, size_t len, uint32_t acc = 0) {
  for (size_t i = 0; i + 1 < len; i += 2) acc += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (len & 1) acc += static_cast<uint32_t>(p[len - 1] << 8);
  return acc;
}
inline uint16_t fold(uint32_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc & 0xffff);
}
inline void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}
}  // namespace detail

// Writes tcp64_len bytes at `f`: Ethernet / IPv4 (no options) / TCP (no options), zero padding.
inline void build_tcp4(const tcp4_spec& s, uint8_t* f) {
  using namespace detail;
  std::memset(f, 0, tcp64_len);
  std::memcpy(f, s.dst_mac, 6);
  std::memcpy(f + 6, s.src_mac, 6);
  put16(f + 12, 0x0800);
  uint8_t* ip = f + 14;
  ip[0] = 0x45;
  put16(ip + 2, 40);  // total length: 20 IP + 20 TCP
  put16(ip + 4, s.ip_id);
  ip[8] = 64;
  ip[9] = 6;
  put32(ip + 12, s.src_ip);
  put32(ip + 16, s.dst_ip);
  put16(ip + 10, fold(sum16(ip, 20)));
  uint8_t* tcp = ip + 20;
  put16(tcp, s.src_port);
  put16(tcp + 2, s.dst_port);
  put32(tcp + 4, s.seq);
  put32(tcp + 8, s.ack);
  tcp[12] = 5 << 4;  // data offset
  tcp[13] = s.flags;
  put16(tcp + 14, 65535);
  // Pseudo header: source, destination, protocol, TCP length.
  const uint32_t acc = sum16(ip + 12, 8) + 6 + 20;
  put16(tcp + 16, fold(sum16(tcp, 20, acc)));
}

// The benchmark's client for flow i: 198.18.0.0/15 (RFC 2544 benchmark range) + i / 64000,
// source port 1024 + i % 64000.
inline constexpr uint32_t ports_per_client = 64000;
inline constexpr uint32_t client_base = 198u << 24 | 18u << 16;
inline uint32_t client_ip(uint64_t i) { return client_base + static_cast<uint32_t>(i / ports_per_client); }
inline uint16_t client_port(uint64_t i) { return static_cast<uint16_t>(1024 + i % ports_per_client); }
// Inverse of the two above; returns false for addresses outside the scheme.
inline bool flow_index(uint32_t ip, uint16_t port, uint64_t& i) {
  if (ip < client_base || ip - client_base >= 131072 || port < 1024 ||
      port >= 1024 + ports_per_client)
    return false;
  i = uint64_t{ip - client_base} * ports_per_client + (port - 1024);
  return true;
}

}  // namespace tandem::perf
