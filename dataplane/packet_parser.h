// Bounds-checked parsing of one received frame into what the worker needs: the flow key,
// header offsets for rewriting, TCP flags and sequence numbers. Never reads past `len`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dataplane/flow_key.h"

namespace tandem {

// Why a frame was not forwarded. Counted per worker; names appear in stats and metrics.
enum class drop_reason : uint8_t {
  none = 0,
  truncated_l2,         // shorter than an Ethernet (+802.1Q) header
  unsupported_l3,       // ethertype not IPv4/IPv6/ARP
  truncated_l3,         // shorter than the fixed IP header
  bad_ip_version,       // version field disagrees with the ethertype
  bad_ihl,              // IPv4 IHL < 5 or header longer than the frame
  bad_ip_length,        // IPv4 total length / IPv6 payload length inconsistent with the frame
  bad_ext_header,       // IPv6 extension header truncated or chain too long
  fragment,             // IPv4/IPv6 fragment: no ports to hash on (counted, see docs)
  unsupported_l4,       // not TCP or UDP
  truncated_l4,         // shorter than the TCP/UDP header
  bad_l4_header,        // TCP data offset < 5 or beyond the packet; UDP length inconsistent
  not_for_vip,          // well formed, but no service matches its destination
  no_backend,           // the chosen pool is empty
  bad_arp,              // ARP not for a VIP, or malformed
  tx_full,              // the TX queue did not take the packet
  no_headroom,          // encapsulation did not fit in the mbuf headroom
  drain_reset,          // a packet of a flow reset at its drain deadline (both ends got an RST)
  count_                // number of reasons; keep last
};
const char* drop_reason_name(drop_reason r);

enum class packet_kind : uint8_t {
  l4 = 0,      // IPv4/IPv6 TCP or UDP: `key` and offsets are valid
  arp,         // ARP; l3_offset points at the ARP header
  icmp6_nd,    // ICMPv6 neighbour solicitation (type 135); l3/l4 offsets valid, l4 = ICMPv6 header
  other,       // anything else that parsed (e.g. ICMP): not forwarded
};

// TCP flag bits as on the wire.
inline constexpr uint8_t tcp_fin = 0x01;
inline constexpr uint8_t tcp_syn = 0x02;
inline constexpr uint8_t tcp_rst = 0x04;
inline constexpr uint8_t tcp_psh = 0x08;
inline constexpr uint8_t tcp_ack = 0x10;

struct parsed_packet {
  flow_key key;            // src/dst address, ports (network order), proto
  uint16_t l3_offset = 0;  // start of the IP (or ARP) header
  uint16_t l4_offset = 0;  // start of the TCP/UDP (or ICMPv6) header
  uint16_t l3_length = 0;  // IP packet length from the IP header (header + payload), <= frame
  uint16_t vlan_tci = 0;   // host order, valid when has_vlan
  uint8_t ip_version = 0;  // 4 or 6
  uint8_t has_vlan = 0;
  uint8_t tcp_flags = 0;   // valid for TCP
  packet_kind kind = packet_kind::other;
  uint32_t tcp_seq = 0;    // host order
  uint32_t tcp_ack = 0;    // host order
};

// Parses `len` bytes at `frame`. Returns drop_reason::none and fills `out` on success.
// On failure `out` is unspecified. Frames longer than the IP length (Ethernet padding) are fine.
drop_reason parse_packet(const uint8_t* frame, uint32_t len, parsed_packet& out);

// parse_packet with the common case inline: untagged IPv4 without options carrying TCP, checked
// with the same bounds and producing the same result; anything else goes to parse_packet.
inline drop_reason parse_packet_fast(const uint8_t* frame, uint32_t len, parsed_packet& out) {
  auto be16 = [](const uint8_t* p) { return static_cast<uint32_t>(p[0]) << 8 | p[1]; };
  auto be32 = [](const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return __builtin_bswap32(v);
  };
  const uint8_t* ip = frame + 14;
  const uint8_t* tcp = ip + 20;
  if (len < 14 + 20 + 20 || len > 0xffff || be16(frame + 12) != 0x0800 || ip[0] != 0x45 ||
      ip[9] != 6) [[unlikely]]
    return parse_packet(frame, len, out);
  const uint32_t total = be16(ip + 2);
  const uint32_t doff = static_cast<uint32_t>(tcp[12] >> 4) * 4;
  // Length within the frame and room for a TCP header, not a fragment, a valid data offset.
  if (total > len - 14 || total < 40 || (be16(ip + 6) & 0x3fff) != 0 || doff < 20 ||
      doff > total - 20) [[unlikely]]
    return parse_packet(frame, len, out);
  uint32_t src, dst;
  std::memcpy(&src, ip + 12, 4);
  std::memcpy(&dst, ip + 16, 4);
  out.key.src = ip_address::from_v4_be(src);
  out.key.dst = ip_address::from_v4_be(dst);
  // Ports (network order), protocol and zero padding in one 64-bit store.
  uint32_t ports;
  std::memcpy(&ports, tcp, 4);
  const uint64_t tail = uint64_t{ports} | uint64_t{6} << 32;
  static_assert(offsetof(flow_key, src_port) == 32 && offsetof(flow_key, dst_port) == 34 &&
                offsetof(flow_key, proto) == 36 && sizeof(flow_key) == 40);
  std::memcpy(reinterpret_cast<unsigned char*>(&out.key) + offsetof(flow_key, src_port), &tail, 8);
  out.l3_offset = 14;
  out.l4_offset = 34;
  out.l3_length = static_cast<uint16_t>(total);
  out.vlan_tci = 0;
  out.ip_version = 4;
  out.has_vlan = 0;
  out.tcp_flags = tcp[13];
  out.kind = packet_kind::l4;
  out.tcp_seq = be32(tcp + 4);
  out.tcp_ack = be32(tcp + 8);
  return drop_reason::none;
}

}  // namespace tandem
