#include "dataplane/forwarder.h"

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include <cstring>

namespace tandem {
namespace {

constexpr uint8_t outer_ttl = 64;
constexpr uint8_t proto_ipip = 4;   // IPv4 in IP
constexpr uint8_t proto_ipv6 = 41;  // IPv6 in IP
constexpr uint8_t proto_udp = 17;

// Whole TOS / traffic-class byte of the inner packet (DSCP and ECN: RFC 6040 normal mode copies
// both, so congestion marks on the outer header can be propagated at decapsulation).
inline uint8_t inner_tos(const uint8_t* ip, uint8_t version) {
  if (version == 4) return ip[1];
  return static_cast<uint8_t>((ip[0] & 0x0f) << 4 | ip[1] >> 4);
}

// Shared by ipip and gue: `udp` selects the extra UDP header. The mbuf is assumed to be a single
// segment (the ports are configured without scatter), so all headers are contiguous.
drop_reason encapsulate(rte_mbuf* m, const parsed_packet& p, const backend_info& b,
                        const dataplane_settings& s, const rte_ether_addr& port_mac, bool udp,
                        uint32_t flow_hash) {
  const bool outer_v4 = b.address.is_v4();
  const uint16_t l2_len = p.has_vlan ? sizeof(rte_ether_hdr) + sizeof(rte_vlan_hdr)
                                     : sizeof(rte_ether_hdr);
  const uint16_t l3_len = outer_v4 ? sizeof(rte_ipv4_hdr) : sizeof(rte_ipv6_hdr);
  const uint16_t l4_len = udp ? sizeof(rte_udp_hdr) : 0;
  const uint16_t hdr_len = static_cast<uint16_t>(l2_len + l3_len + l4_len);
  const uint32_t inner_end = uint32_t{p.l3_offset} + p.l3_length;

  // Every check before the first modification: on failure the mbuf is left exactly as it was.
  // Removing the old L2 header gives back p.l3_offset bytes of headroom.
  if (rte_pktmbuf_headroom(m) + p.l3_offset < hdr_len) return drop_reason::no_headroom;
  if (inner_end > rte_pktmbuf_data_len(m)) return drop_reason::bad_ip_length;  // parser contract

  // Inner packet: the IP packet only, without Ethernet padding.
  const uint16_t inner_len = p.l3_length;
  const uint8_t* inner = rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l3_offset);
  const uint8_t inner_version = p.ip_version;
  const uint8_t tos = inner_tos(inner, inner_version);
  const uint16_t padding = static_cast<uint16_t>(rte_pktmbuf_pkt_len(m) - inner_end);
  if (padding != 0) rte_pktmbuf_trim(m, padding);
  rte_pktmbuf_adj(m, p.l3_offset);
  auto* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, hdr_len));  // fits: checked above

  // Ethernet [+ 802.1Q with the received TCI].
  auto* eth = reinterpret_cast<rte_ether_hdr*>(out);
  rte_ether_addr_copy(&s.nexthop_mac, &eth->dst_addr);
  rte_ether_addr_copy(&port_mac, &eth->src_addr);
  const uint16_t ether_type = outer_v4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6;
  if (p.has_vlan) {
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN);
    auto* vlan = reinterpret_cast<rte_vlan_hdr*>(eth + 1);
    vlan->vlan_tci = rte_cpu_to_be_16(p.vlan_tci);
    vlan->eth_proto = rte_cpu_to_be_16(ether_type);
  } else {
    eth->ether_type = rte_cpu_to_be_16(ether_type);
  }

  const uint8_t next_proto = udp ? proto_udp : (inner_version == 4 ? proto_ipip : proto_ipv6);
  uint8_t* l3 = out + l2_len;
  if (outer_v4) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
    ip->version_ihl = RTE_IPV4_VHL_DEF;
    ip->type_of_service = tos;
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(l3_len + l4_len + inner_len));
    ip->packet_id = 0;
    // DF: the path MTU problem is the backend's to solve (ICMP goes back to the tunnel source).
    ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
    ip->time_to_live = outer_ttl;
    ip->next_proto_id = next_proto;
    ip->hdr_checksum = 0;
    ip->src_addr = s.tunnel_source_v4.v4_be();
    ip->dst_addr = b.address.v4_be();
    ip->hdr_checksum = rte_ipv4_cksum(ip);
  } else {
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(l3);
    ip->vtc_flow = rte_cpu_to_be_32(6u << 28 | uint32_t{tos} << RTE_IPV6_HDR_TC_SHIFT);
    ip->payload_len = rte_cpu_to_be_16(static_cast<uint16_t>(l4_len + inner_len));
    ip->proto = next_proto;
    ip->hop_limits = outer_ttl;
    std::memcpy(ip->src_addr, s.tunnel_source_v6.bytes, 16);
    std::memcpy(ip->dst_addr, b.address.bytes, 16);
  }

  if (udp) {
    // GUE variant 1: the inner IP header follows UDP directly (its version nibble tells 4/6).
    auto* uh = reinterpret_cast<rte_udp_hdr*>(l3 + l3_len);
    uh->src_port = rte_cpu_to_be_16(static_cast<uint16_t>(49152u + flow_hash % 16384u));
    uh->dst_port = rte_cpu_to_be_16(s.gue_port);
    uh->dgram_len = rte_cpu_to_be_16(static_cast<uint16_t>(l4_len + inner_len));
    uh->dgram_cksum = 0;  // allowed over IPv4 (RFC 768); mandatory over IPv6 (below)
    if (!outer_v4)
      uh->dgram_cksum = rte_ipv6_udptcp_cksum(reinterpret_cast<const rte_ipv6_hdr*>(l3), uh);
  }

  m->l2_len = l2_len;
  m->l3_len = l3_len;
  m->l4_len = l4_len;
  return drop_reason::none;
}

}  // namespace

drop_reason encap_ipip(rte_mbuf* m, const parsed_packet& p, const backend_info& b,
                       const dataplane_settings& s, const rte_ether_addr& port_mac) {
  return encapsulate(m, p, b, s, port_mac, false, 0);
}

drop_reason encap_gue(rte_mbuf* m, const parsed_packet& p, const backend_info& b,
                      const dataplane_settings& s, const rte_ether_addr& port_mac,
                      uint32_t flow_hash) {
  return encapsulate(m, p, b, s, port_mac, true, flow_hash);
}

}  // namespace tandem
