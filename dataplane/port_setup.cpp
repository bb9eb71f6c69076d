#include "dataplane/port_setup.h"

#include <rte_ethdev.h>

#include <algorithm>

namespace tandem {

result<port_layout> setup_ports(const std::vector<std::string>& names, uint32_t workers,
                                rte_mempool* mp, uint16_t rx_desc, uint16_t tx_desc) {
  port_layout layout;
  layout.per_worker.resize(workers);
  if (names.empty()) {
    uint16_t pid;
    RTE_ETH_FOREACH_DEV(pid) layout.port_ids.push_back(pid);
  } else {
    for (const std::string& n : names) {
      uint16_t pid;
      if (rte_eth_dev_get_port_by_name(n.c_str(), &pid) != 0)
        return make_error("port " + n + ": no such DPDK device (check the --vdev/-a EAL arguments)");
      layout.port_ids.push_back(pid);
    }
  }
  if (layout.port_ids.empty()) return make_error("no DPDK ports: give --vdev or -a EAL arguments");

  for (uint16_t pid : layout.port_ids) {
    rte_eth_dev_info info{};
    if (int rc = rte_eth_dev_info_get(pid, &info); rc != 0)
      return make_error("port " + std::to_string(pid) + ": cannot read device info (" +
                        std::to_string(rc) + ")");
    const uint16_t queues = static_cast<uint16_t>(
        std::min<uint32_t>({workers, info.max_rx_queues, info.max_tx_queues}));
    if (queues == 0) return make_error("port " + std::to_string(pid) + ": device has no queues");
    rte_eth_conf conf{};
    if (queues > 1 && info.flow_type_rss_offloads != 0) {
      conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
      conf.rx_adv_conf.rss_conf.rss_hf =
          (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    if (int rc = rte_eth_dev_configure(pid, queues, queues, &conf); rc != 0)
      return make_error("port " + std::to_string(pid) + ": configure failed (" +
                        std::to_string(rc) + ")");
    uint16_t nrx = rx_desc, ntx = tx_desc;
    rte_eth_dev_adjust_nb_rx_tx_desc(pid, &nrx, &ntx);
    const int socket = rte_eth_dev_socket_id(pid);
    for (uint16_t q = 0; q < queues; ++q) {
      if (rte_eth_rx_queue_setup(pid, q, nrx, static_cast<unsigned>(socket), nullptr, mp) != 0 ||
          rte_eth_tx_queue_setup(pid, q, ntx, static_cast<unsigned>(socket), nullptr) != 0)
        return make_error("port " + std::to_string(pid) + ": queue " + std::to_string(q) +
                          " setup failed");
    }
    if (int rc = rte_eth_dev_start(pid); rc != 0)
      return make_error("port " + std::to_string(pid) + ": start failed (" + std::to_string(rc) + ")");
    rte_eth_promiscuous_enable(pid);  // VIP traffic is addressed to the VIP's MAC, which is ours
    rte_ether_addr mac{};
    rte_eth_macaddr_get(pid, &mac);
    for (uint16_t q = 0; q < queues; ++q) layout.per_worker[q].push_back(worker_port{pid, q, mac});
  }
  return layout;
}

void stop_ports(const port_layout& layout) {
  for (uint16_t pid : layout.port_ids) {
    rte_eth_dev_stop(pid);
    rte_eth_dev_close(pid);
  }
}

}  // namespace tandem
