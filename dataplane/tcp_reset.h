// Builds the TCP resets sent when a drain deadline passes with `on_timeout: reset`: one to the
// client (from the VIP, seq = the client's last ACK) and one to the backend (as if from the
// client, seq = the client's next sequence number), so both ends see the connection end.
#pragma once

#include <rte_ether.h>
#include <rte_mbuf.h>

#include "dataplane/flow_table.h"
#include "dataplane/packet_parser.h"

namespace tandem {

// `k` is the entry's 5-tuple (generation::full_key), `e` supplies the sequence numbers.
// Client-bound reset: Ethernet from `src_mac` to `dst_mac` (+ VLAN tag when vlan >= 0).
rte_mbuf* build_client_reset(rte_mempool* mp, const flow_key& k, const flow_entry& e,
                             const rte_ether_addr& src_mac, const rte_ether_addr& dst_mac,
                             int vlan);

// Backend-bound reset as the client would send it; `parsed` describes it so the caller can hand
// it to forward_packet() like any received packet.
rte_mbuf* build_backend_reset(rte_mempool* mp, const flow_key& k, const flow_entry& e,
                              parsed_packet& parsed);

}  // namespace tandem
