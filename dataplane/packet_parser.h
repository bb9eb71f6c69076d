// Bounds-checked parsing of one received frame into what the worker needs: the flow key,
// header offsets for rewriting, TCP flags and sequence numbers. Never reads past `len`.
#pragma once

#include <cstdint>

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

}  // namespace tandem
