// Answers address resolution for VIPs so a router or client can reach them:
// ARP requests for IPv4 VIPs and ICMPv6 neighbour solicitations for IPv6 VIPs are turned, in
// place, into replies/advertisements from the port's MAC, ready to transmit on the same port.
#pragma once

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "dataplane/generation.h"
#include "dataplane/packet_parser.h"

namespace tandem {

// p.kind == packet_kind::arp. True when `m` now holds an ARP reply to send back; false when the
// request is not for a VIP, not a request, or malformed (caller drops it as bad_arp).
bool answer_arp(rte_mbuf* m, const parsed_packet& p, const generation& g,
                const rte_ether_addr& port_mac);

// p.kind == packet_kind::icmp6_nd. True when `m` now holds a neighbour advertisement (solicited,
// override, with a target link-layer address option; ICMPv6 checksum correct) for a VIP target.
bool answer_neighbor_solicitation(rte_mbuf* m, const parsed_packet& p, const generation& g,
                                  const rte_ether_addr& port_mac);

}  // namespace tandem
