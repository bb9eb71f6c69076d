#include "tests/support/eal_fixture.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace tandem::test {

void ensure_eal(const std::vector<std::string>& extra_args, const std::string& lcores) {
  static std::once_flag once;
  std::call_once(once, [&] {
    std::vector<std::string> args = {"tandem-test", "-l", lcores, "--no-huge", "-m", "512",
                                     "--no-pci", "--log-level", "lib.eal:error",
                                     "--file-prefix", "tandem-test-" + std::to_string(getpid())};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    if (rte_eal_init(static_cast<int>(argv.size()), argv.data()) < 0) {
      std::fprintf(stderr, "rte_eal_init failed: %s\n", rte_strerror(rte_errno));
      std::abort();
    }
  });
}

rte_mempool* test_mempool() {
  ensure_eal();
  static rte_mempool* mp = [] {
    rte_mempool* p = rte_pktmbuf_pool_create("tandem_test_pool", 8191, 256, 0,
                                             RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (!p) {
      std::fprintf(stderr, "mempool create failed: %s\n", rte_strerror(rte_errno));
      std::abort();
    }
    return p;
  }();
  return mp;
}

unsigned mbufs_in_use(rte_mempool* mp) { return rte_mempool_in_use_count(mp); }

}  // namespace tandem::test
