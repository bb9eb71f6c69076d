#include "dataplane/generation_publisher.h"

#include <rte_cycles.h>
#include <rte_malloc.h>

#include <cstdio>
#include <cstdlib>
#include <new>

namespace tandem {

generation_publisher::generation_publisher(uint32_t max_readers) {
  if (max_readers == 0) max_readers = 1;
  size_t sz = rte_rcu_qsbr_get_memsize(max_readers);
  // The QSBR variable is polled by workers on every loop: cache-aligned, from DPDK memory.
  qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("tandem_qsbr", sz, RTE_CACHE_LINE_SIZE));
  if (!qsbr_ || rte_rcu_qsbr_init(qsbr_, max_readers) != 0) {
    std::fprintf(stderr, "tandem: cannot initialise rte_rcu_qsbr for %u readers\n", max_readers);
    std::abort();
  }
}

generation_publisher::~generation_publisher() {
  delete current_.exchange(nullptr);
  rte_free(qsbr_);
}

uint64_t generation_publisher::publish(std::unique_ptr<generation> next) {
  std::lock_guard lock(publish_mutex_);
  next->finalize();
  const generation* old = current_.exchange(next.release(), std::memory_order_acq_rel);
  const uint64_t start = rte_get_tsc_cycles();
  // Blocks until every online reader has reported quiescent after the exchange above: no
  // worker can still hold `old`.
  rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
  const uint64_t waited = rte_get_tsc_cycles() - start;
  delete old;
  return waited * 1'000'000 / rte_get_tsc_hz();
}

rcu_reader::rcu_reader(const generation_publisher& pub, uint32_t thread_id)
    : qsbr_(pub.qsbr()), id_(thread_id) {
  rte_rcu_qsbr_thread_register(qsbr_, id_);
  rte_rcu_qsbr_thread_online(qsbr_, id_);
}

rcu_reader::~rcu_reader() {
  rte_rcu_qsbr_thread_offline(qsbr_, id_);
  rte_rcu_qsbr_thread_unregister(qsbr_, id_);
}

}  // namespace tandem
