// Starts DPDK's EAL once per test binary, the way the tests need it: no hugepages, its own
// --file-prefix (so tests run in parallel), no PCI scan, and a mempool for mbufs.
#pragma once

#include <rte_mempool.h>

#include <string>
#include <vector>

namespace tandem::test {

// Initialises EAL on first call (lcores "0-1" by default, or `lcores`); aborts the test binary
// with a message if EAL cannot start. Extra arguments (e.g. --vdev) only count on first call.
void ensure_eal(const std::vector<std::string>& extra_args = {}, const std::string& lcores = "0-1");

// A process-wide pktmbuf pool (8191 mbufs, 2048-byte data room) created on first use.
rte_mempool* test_mempool();

// Number of mbufs of `mp` currently allocated (for leak checks).
unsigned mbufs_in_use(rte_mempool* mp);

}  // namespace tandem::test
