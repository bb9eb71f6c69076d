// Configures DPDK ports for the workers: one RX and one TX queue per worker per port (fewer when
// the device has fewer queues), RSS over IP and L4 ports when there are several.
#pragma once

#include <rte_mempool.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dataplane/result.h"
#include "dataplane/worker.h"

namespace tandem {

struct port_layout {
  std::vector<uint16_t> port_ids;
  std::vector<std::vector<worker_port>> per_worker;  // [worker] -> its (port, queue) pairs
};

// names: DPDK device names (empty = every available port). Starts the ports.
result<port_layout> setup_ports(const std::vector<std::string>& names, uint32_t workers,
                                rte_mempool* mp, uint16_t rx_desc = 1024, uint16_t tx_desc = 1024);
void stop_ports(const port_layout& layout);

}  // namespace tandem
