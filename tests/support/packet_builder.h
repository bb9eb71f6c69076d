// Builds well-formed test frames byte by byte (Ethernet [+802.1Q] / IPv4|IPv6 / TCP|UDP) with
// correct checksums, so tests can also corrupt them on purpose.
#pragma once

#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dataplane/ip_address.h"

namespace tandem::test {

struct frame_spec {
  std::string src_mac = "02:00:00:00:00:01";
  std::string dst_mac = "02:00:00:00:00:02";
  int vlan = -1;                    // >= 0 adds an 802.1Q tag with this VLAN id
  std::string src = "192.0.2.1";    // IPv4 or IPv6 (both ends must be the same family)
  std::string dst = "198.51.100.10";
  uint8_t proto = 6;                // 6 tcp, 17 udp, anything else: raw payload after IP
  uint16_t src_port = 40000;
  uint16_t dst_port = 80;
  uint8_t tcp_flags = 0x02;         // SYN by default
  uint32_t seq = 1000;
  uint32_t ack = 0;
  std::vector<uint8_t> payload;
  std::vector<uint8_t> ipv4_options;  // multiple of 4 bytes
  std::vector<std::vector<uint8_t>> ipv6_ext;  // raw extension headers: {next_header_type, ...}
  // each element: first byte = this header's type (0 hop-by-hop, 43 routing, 60 dest opts,
  // 44 fragment); the builder fills next-header and length fields.
  uint16_t ipv4_frag = 0;           // raw IPv4 flags+fragment offset field (host order)
  uint8_t ttl = 64;
};

std::vector<uint8_t> build_frame(const frame_spec& spec);

// Copies bytes into a fresh mbuf from `mp` (nullptr if allocation fails).
rte_mbuf* to_mbuf(rte_mempool* mp, const std::vector<uint8_t>& bytes);
std::vector<uint8_t> from_mbuf(const rte_mbuf* m);

// Internet checksum (RFC 1071) over bytes; 0 when the bytes include a correct checksum field.
uint16_t inet_checksum(const uint8_t* data, size_t len, uint32_t initial = 0);

ip_address addr(const std::string& text);  // aborts on bad text (tests only)

// Owns an mbuf in a test: freed when the test is done with it.
struct mbuf_deleter {
  void operator()(rte_mbuf* m) const { rte_pktmbuf_free(m); }
};
using mbuf_ptr = std::unique_ptr<rte_mbuf, mbuf_deleter>;

// "02:00:00:00:00:01" -> rte_ether_addr; records a test failure on bad text.
rte_ether_addr mac(const char* text);

}  // namespace tandem::test
