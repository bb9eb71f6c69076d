#include "dataplane/packet_parser.h"

#include <rte_byteorder.h>

#include <cstring>

namespace tandem {

namespace {

constexpr uint16_t ether_ipv4 = 0x0800;
constexpr uint16_t ether_ipv6 = 0x86dd;
constexpr uint16_t ether_arp = 0x0806;
constexpr uint16_t ether_vlan = 0x8100;

constexpr uint8_t proto_tcp = 6;
constexpr uint8_t proto_udp = 17;
constexpr uint8_t proto_icmp6 = 58;
constexpr uint8_t ext_hop_by_hop = 0;
constexpr uint8_t ext_routing = 43;
constexpr uint8_t ext_fragment = 44;
constexpr uint8_t ext_dest_opts = 60;

constexpr uint32_t eth_len = 14;
constexpr uint32_t vlan_len = 4;
constexpr uint32_t arp_ipv4_len = 28;  // ARP body for IPv4 over Ethernet
constexpr uint32_t ipv4_min_len = 20;
constexpr uint32_t ipv6_len = 40;
constexpr uint32_t tcp_min_len = 20;
constexpr uint32_t udp_len = 8;
constexpr uint32_t nd_ns_min_len = 24;  // ICMPv6 header (4) + reserved (4) + target (16)
constexpr uint8_t icmp6_neighbor_solicitation = 135;
constexpr int max_ext_headers = 8;

// Frame bytes are not aligned: load through memcpy.
inline uint16_t load_be16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return rte_be_to_cpu_16(v);
}
inline uint32_t load_be32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return rte_be_to_cpu_32(v);
}
inline uint16_t load_raw16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// `l4_len` is what the IP header says follows the IP headers, never the frame length, so
// Ethernet padding is not taken for L4 data.
inline drop_reason parse_l4(const uint8_t* q, uint32_t l4_len, uint8_t proto,
                            parsed_packet& out) {
  if (proto == proto_tcp) {
    if (l4_len < tcp_min_len) [[unlikely]]
      return drop_reason::truncated_l4;
    const uint32_t doff = static_cast<uint32_t>(q[12] >> 4) * 4;
    if (doff < tcp_min_len || doff > l4_len) [[unlikely]]
      return drop_reason::bad_l4_header;
    out.key.src_port = load_raw16(q);
    out.key.dst_port = load_raw16(q + 2);
    out.tcp_seq = load_be32(q + 4);
    out.tcp_ack = load_be32(q + 8);
    out.tcp_flags = q[13];
  } else if (proto == proto_udp) {
    if (l4_len < udp_len) [[unlikely]]
      return drop_reason::truncated_l4;
    const uint32_t ulen = load_be16(q + 4);
    if (ulen < udp_len || ulen > l4_len) [[unlikely]]
      return drop_reason::bad_l4_header;
    out.key.src_port = load_raw16(q);
    out.key.dst_port = load_raw16(q + 2);
  } else {
    return drop_reason::unsupported_l4;
  }
  out.key.proto = proto;
  out.kind = packet_kind::l4;
  return drop_reason::none;
}

}  // namespace

drop_reason parse_packet(const uint8_t* frame, uint32_t len, parsed_packet& out) {
  // Offsets and lengths are 16-bit; an mbuf segment never holds more than 64 KiB anyway.
  if (len > 0xffff) [[unlikely]]
    len = 0xffff;
  out = parsed_packet{};  // every field defined on success, key.pad zero

  if (len < eth_len) [[unlikely]]
    return drop_reason::truncated_l2;
  uint32_t l3 = eth_len;
  uint16_t ether_type = load_be16(frame + 12);
  if (ether_type == ether_vlan) {
    if (len < eth_len + vlan_len) [[unlikely]]
      return drop_reason::truncated_l2;
    out.has_vlan = 1;
    out.vlan_tci = load_be16(frame + 14);
    ether_type = load_be16(frame + 16);
    l3 = eth_len + vlan_len;
  }
  const uint8_t* ip = frame + l3;
  const uint32_t avail = len - l3;  // bytes after L2, padding included
  out.l3_offset = static_cast<uint16_t>(l3);

  if (ether_type == ether_ipv4) {
    if (avail < ipv4_min_len) [[unlikely]]
      return drop_reason::truncated_l3;
    if ((ip[0] >> 4) != 4) [[unlikely]]
      return drop_reason::bad_ip_version;
    const uint32_t ihl = static_cast<uint32_t>(ip[0] & 0x0f) * 4;
    if (ihl < ipv4_min_len || ihl > avail) [[unlikely]]
      return drop_reason::bad_ihl;
    const uint32_t total = load_be16(ip + 2);
    if (total < ihl || total > avail) [[unlikely]]
      return drop_reason::bad_ip_length;
    // MF flag or a non-zero offset; DF (0x4000) is irrelevant here.
    if (load_be16(ip + 6) & 0x3fff) [[unlikely]]
      return drop_reason::fragment;
    out.ip_version = 4;
    out.l3_length = static_cast<uint16_t>(total);
    out.l4_offset = static_cast<uint16_t>(l3 + ihl);
    out.key.src = ip_address::from_v4_bytes(ip + 12);
    out.key.dst = ip_address::from_v4_bytes(ip + 16);
    return parse_l4(ip + ihl, total - ihl, ip[9], out);
  }

  if (ether_type == ether_ipv6) {
    if (avail < ipv6_len) [[unlikely]]
      return drop_reason::truncated_l3;
    if ((ip[0] >> 4) != 6) [[unlikely]]
      return drop_reason::bad_ip_version;
    const uint32_t end = ipv6_len + load_be16(ip + 4);  // relative to `ip`
    if (end > avail) [[unlikely]]
      return drop_reason::bad_ip_length;
    out.ip_version = 6;
    out.l3_length = static_cast<uint16_t>(end);
    out.key.src = ip_address::from_v6(ip + 8);
    out.key.dst = ip_address::from_v6(ip + 24);

    uint8_t next = ip[6];
    uint32_t off = ipv6_len;
    // Hop-by-hop, routing and destination options share the (next, len in 8-octet units - 1)
    // layout; each must lie within the payload. Bounded so a crafted chain cannot stall us.
    for (int n = 0; next == ext_hop_by_hop || next == ext_routing || next == ext_dest_opts;
         ++n) {
      if (n == max_ext_headers || end - off < 8) [[unlikely]]
        return drop_reason::bad_ext_header;
      const uint32_t hlen = (static_cast<uint32_t>(ip[off + 1]) + 1) * 8;
      if (hlen > end - off) [[unlikely]]
        return drop_reason::bad_ext_header;
      next = ip[off];
      off += hlen;
    }
    if (next == ext_fragment) [[unlikely]]
      return drop_reason::fragment;
    out.l4_offset = static_cast<uint16_t>(l3 + off);
    const uint32_t l4_len = end - off;
    if (next == proto_icmp6) {
      if (l4_len >= nd_ns_min_len && ip[off] == icmp6_neighbor_solicitation) {
        out.key.proto = proto_icmp6;
        out.kind = packet_kind::icmp6_nd;
        return drop_reason::none;
      }
      return drop_reason::unsupported_l4;
    }
    return parse_l4(ip + off, l4_len, next, out);
  }

  if (ether_type == ether_arp) {
    if (avail < arp_ipv4_len) [[unlikely]]
      return drop_reason::truncated_l3;
    out.l3_length = arp_ipv4_len;  // what the responder may rely on
    out.kind = packet_kind::arp;
    return drop_reason::none;
  }
  return drop_reason::unsupported_l3;
}

const char* drop_reason_name(drop_reason r) {
  static constexpr const char* names[] = {
      "none",          "truncated_l2",   "unsupported_l3", "truncated_l3", "bad_ip_version",
      "bad_ihl",       "bad_ip_length",  "bad_ext_header", "fragment",     "unsupported_l4",
      "truncated_l4",  "bad_l4_header",  "not_for_vip",    "no_backend",   "bad_arp",
      "tx_full",       "no_headroom",    "drain_reset",
  };
  static_assert(sizeof(names) / sizeof(names[0]) == static_cast<size_t>(drop_reason::count_),
                "one name per drop_reason");
  const auto i = static_cast<size_t>(r);
  return i < static_cast<size_t>(drop_reason::count_) ? names[i] : "unknown";
}

}  // namespace tandem
