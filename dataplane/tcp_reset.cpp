#include "dataplane/tcp_reset.h"

#include <rte_byteorder.h>
#include <rte_ip.h>
#include <rte_tcp.h>

#include <cstring>

namespace tandem {
namespace {

// Writes Ethernet/IP/TCP for a bare RST (+ACK) from (src, sport) to (dst, dport).
rte_mbuf* build_reset(rte_mempool* mp, const ip_address& src, const ip_address& dst,
                      uint16_t sport_be, uint16_t dport_be, uint32_t seq, uint32_t ack,
                      const rte_ether_addr& src_mac, const rte_ether_addr& dst_mac, int vlan,
                      uint16_t* l3_offset, uint16_t* l3_length) {
  rte_mbuf* m = rte_pktmbuf_alloc(mp);
  if (!m) return nullptr;
  const bool v4 = src.is_v4();
  const uint16_t l2 = vlan >= 0 ? 18 : 14;
  const uint16_t l3 = v4 ? 20 : 40;
  const uint16_t total = static_cast<uint16_t>(l2 + l3 + 20);
  auto* p = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, total));
  if (!p) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::memset(p, 0, total);
  auto* eth = reinterpret_cast<rte_ether_hdr*>(p);
  eth->dst_addr = dst_mac;
  eth->src_addr = src_mac;
  if (vlan >= 0) {
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN);
    auto* vh = reinterpret_cast<rte_vlan_hdr*>(p + 14);
    vh->vlan_tci = rte_cpu_to_be_16(static_cast<uint16_t>(vlan));
    vh->eth_proto = rte_cpu_to_be_16(v4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
  } else {
    eth->ether_type = rte_cpu_to_be_16(v4 ? RTE_ETHER_TYPE_IPV4 : RTE_ETHER_TYPE_IPV6);
  }
  auto* tcp = reinterpret_cast<rte_tcp_hdr*>(p + l2 + l3);
  tcp->src_port = sport_be;
  tcp->dst_port = dport_be;
  tcp->sent_seq = rte_cpu_to_be_32(seq);
  tcp->recv_ack = rte_cpu_to_be_32(ack);
  tcp->data_off = 5 << 4;
  tcp->tcp_flags = RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG;
  if (v4) {
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(p + l2);
    ip->version_ihl = 0x45;
    ip->total_length = rte_cpu_to_be_16(40);
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_TCP;
    ip->src_addr = src.v4_be();
    ip->dst_addr = dst.v4_be();
    ip->hdr_checksum = rte_ipv4_cksum(ip);
    tcp->cksum = rte_ipv4_udptcp_cksum(ip, tcp);
  } else {
    auto* ip = reinterpret_cast<rte_ipv6_hdr*>(p + l2);
    ip->vtc_flow = rte_cpu_to_be_32(6u << 28);
    ip->payload_len = rte_cpu_to_be_16(20);
    ip->proto = IPPROTO_TCP;
    ip->hop_limits = 64;
    std::memcpy(ip->src_addr, src.bytes, 16);
    std::memcpy(ip->dst_addr, dst.bytes, 16);
    tcp->cksum = rte_ipv6_udptcp_cksum(ip, tcp);
  }
  *l3_offset = l2;
  *l3_length = static_cast<uint16_t>(l3 + 20);
  return m;
}

}  // namespace

rte_mbuf* build_client_reset(rte_mempool* mp, const flow_key& k, const flow_entry& e,
                             const rte_ether_addr& src_mac, const rte_ether_addr& dst_mac,
                             int vlan) {
  uint16_t l3_offset, l3_length;
  return build_reset(mp, k.dst, k.src, k.dst_port, k.src_port, e.client_ack,
                     e.client_seq, src_mac, dst_mac, vlan, &l3_offset, &l3_length);
}

rte_mbuf* build_backend_reset(rte_mempool* mp, const flow_key& k, const flow_entry& e,
                              parsed_packet& parsed) {
  rte_ether_addr none{};
  parsed = parsed_packet{};
  rte_mbuf* m = build_reset(mp, k.src, k.dst, k.src_port, k.dst_port,
                            e.client_seq, e.client_ack, none, none, -1, &parsed.l3_offset,
                            &parsed.l3_length);
  if (!m) return nullptr;
  parsed.key = k;
  parsed.ip_version = k.src.is_v4() ? 4 : 6;
  parsed.l4_offset = static_cast<uint16_t>(parsed.l3_offset + (parsed.ip_version == 4 ? 20 : 40));
  parsed.tcp_flags = tcp_rst | tcp_ack;
  parsed.tcp_seq = e.client_seq;
  parsed.tcp_ack = e.client_ack;
  parsed.kind = packet_kind::l4;
  return m;
}

}  // namespace tandem
