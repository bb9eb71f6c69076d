// Rewrites a parsed packet in its mbuf for the chosen backend, in one of three modes:
//  - l2:   direct server return on the same L2: destination MAC := backend MAC,
//          source MAC := port MAC; IP packet untouched.
//  - ipip: outer IPv4 (proto 4 / 41) or IPv6 (next header 4 / 41) to the backend, source from
//          settings.tunnel_source_v4/v6, TTL/hop limit 64, Ethernet to settings.nexthop_mac.
//  - gue:  as ipip plus an outer UDP header (destination settings.gue_port, source port from
//          the flow hash for ECMP entropy, in 49152..65535), GUE variant 1 (the inner IP packet
//          directly after UDP). UDP checksum 0 over IPv4, computed over IPv6.
// An 802.1Q tag on the received frame is kept on the sent frame. Ethernet padding after the IP
// packet is trimmed before encapsulation. Checksums of every header written are correct.
#pragma once

#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstdint>

#include "dataplane/generation.h"
#include "dataplane/packet_parser.h"

namespace tandem {

// Returns drop_reason::none, or no_headroom when the outer headers do not fit (mbuf untouched).
// l2 is inline: it is two MAC stores, and the worker's common case.
inline drop_reason forward_l2(rte_mbuf* m, const parsed_packet& /*p*/, const backend_info& b,
                              const rte_ether_addr& port_mac) {
  auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
  rte_ether_addr_copy(&b.mac, &eth->dst_addr);
  rte_ether_addr_copy(&port_mac, &eth->src_addr);
  return drop_reason::none;
}
drop_reason encap_ipip(rte_mbuf* m, const parsed_packet& p, const backend_info& b,
                       const dataplane_settings& s, const rte_ether_addr& port_mac);
drop_reason encap_gue(rte_mbuf* m, const parsed_packet& p, const backend_info& b,
                      const dataplane_settings& s, const rte_ether_addr& port_mac,
                      uint32_t flow_hash);

inline drop_reason forward_packet(forwarding_mode mode, rte_mbuf* m, const parsed_packet& p,
                                  const backend_info& b, const dataplane_settings& s,
                                  const rte_ether_addr& port_mac, uint32_t flow_hash) {
  switch (mode) {
    case forwarding_mode::l2: return forward_l2(m, p, b, port_mac);
    case forwarding_mode::ipip: return encap_ipip(m, p, b, s, port_mac);
    case forwarding_mode::gue: return encap_gue(m, p, b, s, port_mac, flow_hash);
  }
  return drop_reason::no_backend;
}

}  // namespace tandem
