#include "dataplane/neighbor_responder.h"

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ip.h>

#include <cstring>

namespace tandem {
namespace {

constexpr uint8_t icmp6_proto = 58;
constexpr uint8_t icmp6_ns = 135;
constexpr uint8_t icmp6_na = 136;
constexpr uint8_t nd_hop_limit = 255;   // RFC 4861: ND packets must not have been routed
constexpr uint16_t ns_min_len = 24;     // type, code, checksum, reserved, target
constexpr uint16_t na_len = 32;         // as above + target link-layer address option (8)
constexpr uint8_t opt_target_lla = 2;
constexpr uint32_t na_solicited = 0x40000000;
constexpr uint32_t na_override = 0x20000000;

}  // namespace

bool answer_arp(rte_mbuf* m, const parsed_packet& p, const generation& g,
                const rte_ether_addr& port_mac) {
  if (uint32_t{p.l3_offset} + sizeof(rte_arp_hdr) > rte_pktmbuf_data_len(m)) return false;
  auto* arp = rte_pktmbuf_mtod_offset(m, rte_arp_hdr*, p.l3_offset);
  if (arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
      arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
      arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != 4 ||
      arp->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST))
    return false;
  rte_arp_ipv4& d = arp->arp_data;
  // A reply to a multicast/broadcast sender would flood it; such a request is malformed.
  const rte_ether_addr requester_mac = d.arp_sha;
  if (!rte_is_unicast_ether_addr(&requester_mac)) return false;
  const uint32_t vip = d.arp_tip;  // network order
  if (!g.is_vip(ip_address::from_v4_be(vip))) return false;

  // Sender (requester) becomes target; sender is now (port MAC, VIP). A probe (sender IP
  // 0.0.0.0, RFC 5227) is answered the same way, to its sender MAC, which defends the VIP.
  const uint32_t requester_ip = d.arp_sip;
  d.arp_tha = requester_mac;
  d.arp_tip = requester_ip;
  d.arp_sha = port_mac;
  d.arp_sip = vip;
  arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);

  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  eth->dst_addr = requester_mac;
  eth->src_addr = port_mac;  // VLAN tag, if any, stays: the reply leaves on the same VLAN
  return true;
}

bool answer_neighbor_solicitation(rte_mbuf* m, const parsed_packet& p, const generation& g,
                                  const rte_ether_addr& port_mac) {
  const uint32_t data_len = rte_pktmbuf_data_len(m);
  if (p.l4_offset < p.l3_offset + sizeof(rte_ipv6_hdr)) return false;
  const uint32_t icmp_len = uint32_t{p.l3_offset} + p.l3_length - p.l4_offset;
  if (uint32_t{p.l3_offset} + p.l3_length > data_len || icmp_len < ns_min_len ||
      icmp_len > 0xffff)
    return false;
  auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv6_hdr*, p.l3_offset);
  const uint8_t* icmp = rte_pktmbuf_mtod_offset(m, const uint8_t*, p.l4_offset);
  if (ip->hop_limits != nd_hop_limit || icmp[0] != icmp6_ns || icmp[1] != 0) return false;
  if (ip->src_addr[0] == 0xff) return false;  // source must not be multicast (RFC 4861 7.1.1)
  const ip_address target = ip_address::from_v6(icmp + 8);
  // IPv4 VIPs are stored IPv4-mapped: an NS for ::ffff:a.b.c.d must not claim them.
  if (target.is_v4() || !g.is_vip(target)) return false;

  static constexpr uint8_t unspecified[16] = {};
  const bool dad = std::memcmp(ip->src_addr, unspecified, 16) == 0;

  // The advertisement is always IPv6 (no extension headers) + 32 bytes of ICMPv6, so size the
  // mbuf to exactly that. Growing needs at most 8 bytes (an NS without options) of tailroom.
  const uint32_t new_len = uint32_t{p.l3_offset} + sizeof(rte_ipv6_hdr) + na_len;
  const uint32_t pkt_len = rte_pktmbuf_pkt_len(m);
  if (new_len > pkt_len) {
    if (rte_pktmbuf_append(m, static_cast<uint16_t>(new_len - pkt_len)) == nullptr) return false;
  } else if (new_len < pkt_len) {
    if (rte_pktmbuf_trim(m, static_cast<uint16_t>(pkt_len - new_len)) != 0) return false;
  }

  // Ethernet: back to the soliciting host, or to all nodes for DAD (RFC 4861 7.2.4: the
  // advertisement is multicast, 33:33:00:00:00:01 for ff02::1).
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  if (dad) {
    static constexpr rte_ether_addr all_nodes_mac = {{0x33, 0x33, 0, 0, 0, 1}};
    eth->dst_addr = all_nodes_mac;
  } else {
    eth->dst_addr = eth->src_addr;
  }
  eth->src_addr = port_mac;

  // The IPv6 header keeps its version/traffic class/flow label; if extension headers sat between
  // it and ICMPv6, the advertisement drops them (ICMPv6 moves up to directly after IPv6).
  if (dad) {
    static constexpr uint8_t all_nodes[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0,
                                              0,    0,    0, 0, 0, 0, 0, 1};
    std::memcpy(ip->dst_addr, all_nodes, 16);
  } else {
    std::memcpy(ip->dst_addr, ip->src_addr, 16);
  }
  std::memcpy(ip->src_addr, target.bytes, 16);
  ip->payload_len = rte_cpu_to_be_16(na_len);
  ip->proto = icmp6_proto;
  ip->hop_limits = nd_hop_limit;

  auto* na = reinterpret_cast<uint8_t*>(ip + 1);
  na[0] = icmp6_na;
  na[1] = 0;
  na[2] = 0;  // checksum, computed below
  na[3] = 0;
  const uint32_t flags = rte_cpu_to_be_32(dad ? na_override : na_solicited | na_override);
  std::memcpy(na + 4, &flags, 4);
  std::memcpy(na + 8, target.bytes, 16);  // memmove not needed: target already read into `target`
  na[24] = opt_target_lla;
  na[25] = 1;  // option length in units of 8 bytes
  std::memcpy(na + 26, port_mac.addr_bytes, RTE_ETHER_ADDR_LEN);
  // Same pseudo-header sum as UDP/TCP (src, dst, length, next header 58); for ICMPv6 a computed
  // 0xffff is as valid as 0x0000.
  const uint16_t cksum = rte_ipv6_udptcp_cksum(ip, na);
  std::memcpy(na + 2, &cksum, 2);
  return true;
}

}  // namespace tandem
