// Publishes table generations to the workers under RCU (rte_rcu_qsbr): one release store of
// the pointer, a grace period in which every registered worker passes a quiescent state, then
// the old generation is freed. Only the control thread publishes; workers only read.
#pragma once

#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>

#include "dataplane/generation.h"

namespace tandem {

class generation_publisher {
 public:
  // max_readers: number of worker threads that will register (thread ids 0..max_readers-1).
  explicit generation_publisher(uint32_t max_readers);
  ~generation_publisher();
  generation_publisher(const generation_publisher&) = delete;
  generation_publisher& operator=(const generation_publisher&) = delete;

  rte_rcu_qsbr* qsbr() const { return qsbr_; }

  // Reader side (workers): load once per poll loop, report quiescent at the end of the loop.
  const generation* acquire() const { return current_.load(std::memory_order_acquire); }

  // Control side: finalises `next`, swaps it in, waits for every online reader to pass a
  // quiescent state, frees the old generation. Returns the wait in microseconds.
  uint64_t publish(std::unique_ptr<generation> next);

  // The generation the control side last published (control thread only; stays valid until
  // the next publish from the same thread).
  const generation* current() const { return current_.load(std::memory_order_acquire); }

 private:
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::atomic<const generation*> current_{nullptr};
  std::mutex publish_mutex_;  // control-side only: serialises publishers
};

// RAII registration of a reader thread (a worker) with the publisher's QSBR variable.
class rcu_reader {
 public:
  rcu_reader(const generation_publisher& pub, uint32_t thread_id);
  ~rcu_reader();
  rcu_reader(const rcu_reader&) = delete;
  rcu_reader& operator=(const rcu_reader&) = delete;
  void quiescent() const { rte_rcu_qsbr_quiescent(qsbr_, id_); }

 private:
  rte_rcu_qsbr* qsbr_;
  uint32_t id_;
};

}  // namespace tandem
