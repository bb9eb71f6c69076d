// Generation swaps under rte_rcu_qsbr: readers never see a freed generation (this binary is
// also built with AddressSanitizer as unit_generation_rcu_asan), and publish() really waits
// for every reader to pass a quiescent state.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "dataplane/generation_publisher.h"
#include "tests/support/eal_fixture.h"

namespace tandem {
namespace {

// A generation whose content is a function of its number, so a reader can check it whole.
std::unique_ptr<generation> make_generation(uint32_t n) {
  auto g = std::make_unique<generation>();
  g->number = n;
  std::vector<maglev_table::member> members;
  for (uint32_t b = 0; b < 4 + n % 5; ++b) {
    members.push_back({b, 1, 1000u + b});
    backend_info bi;
    bi.in_registry = 1;
    bi.service_id = static_cast<uint16_t>(n % 7);
    g->backends.push_back(bi);
  }
  service_entry s;
  s.id = static_cast<uint16_t>(n % 7);
  s.port = static_cast<uint16_t>(n);
  s.pools[0] = std::make_shared<const maglev_table>(*maglev_table::build(members, 1009));
  g->services.push_back(std::move(s));
  g->listeners.push_back(listener{ip_address::from_v4_be(0x0a000001), 6, static_cast<uint16_t>(n), 0, 0});
  return g;
}

TEST(GenerationRcu, ReadersNeverSeeAFreedOrTornGeneration) {
  test::ensure_eal();
  constexpr uint32_t readers = 3;
  generation_publisher pub(readers);
  pub.publish(make_generation(1));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> checks{0}, errors{0};
  std::atomic<uint32_t> started{0};
  std::vector<std::thread> threads;
  for (uint32_t r = 0; r < readers; ++r) {
    threads.emplace_back([&, r] {
      rcu_reader reader(pub, r);
      started.fetch_add(1);
      uint32_t last = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const generation* g = pub.acquire();
        // Everything a worker would touch, checked against the number.
        bool ok = g->number >= last && g->services.size() == 1 &&
                  g->services[0].port == static_cast<uint16_t>(g->number) &&
                  g->backends.size() == 4 + g->number % 5 && g->listeners.size() == 1;
        for (uint32_t h = 0; ok && h < 64; ++h)
          ok = g->services[0].pools[0]->lookup(h * 0x9e3779b9u) < g->backends.size();
        last = g->number;
        if (!ok) errors.fetch_add(1);
        checks.fetch_add(1, std::memory_order_relaxed);
        reader.quiescent();
        std::this_thread::yield();  // 2 cores, 4 threads: let the publisher run
      }
    });
  }
  // Publishing before the readers registered would test nothing (and finish with 0 checks on
  // a loaded machine).
  while (started.load() < readers) std::this_thread::yield();
  for (uint32_t n = 2; n <= 400; ++n) pub.publish(make_generation(n));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_GT(checks.load(), 400u);
  EXPECT_EQ(pub.current()->number, 400u);
}

TEST(GenerationRcu, PublishWaitsForAReaderThatHoldsTheOldGeneration) {
  test::ensure_eal();
  generation_publisher pub(1);
  pub.publish(make_generation(1));
  std::promise<void> holding;
  std::atomic<bool> release{false};
  std::atomic<uint32_t> seen_after{0};
  std::thread reader_thread([&] {
    rcu_reader reader(pub, 0);
    const generation* g = pub.acquire();
    holding.set_value();
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    seen_after = g->number;  // still valid: publish() must not have freed it
    reader.quiescent();
  });
  holding.get_future().wait();
  auto published = std::async(std::launch::async, [&] { pub.publish(make_generation(2)); });
  EXPECT_EQ(published.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
      << "publish returned while a reader still held the old generation";
  release = true;
  published.get();
  reader_thread.join();
  EXPECT_EQ(seen_after.load(), 1u);
  EXPECT_EQ(pub.current()->number, 2u);
}

TEST(GenerationRcu, ListenerLookupPrefersExactPortThenAnyPort) {
  generation g;
  const ip_address vip = ip_address::from_v4_be(0x0a000001);
  g.services.resize(2);
  g.listeners.push_back(listener{vip, 6, 80, 0, 0});
  g.listeners.push_back(listener{vip, 6, 0, 1, 0});
  g.listeners.push_back(listener{vip, 17, 53, 1, 1});
  g.finalize();
  auto be = [](uint16_t p) { return static_cast<uint16_t>(p >> 8 | p << 8); };
  ASSERT_NE(g.find_listener(vip, 6, be(80)), nullptr);
  EXPECT_EQ(g.find_listener(vip, 6, be(80))->service_index, 0);
  EXPECT_EQ(g.find_listener(vip, 6, be(443))->service_index, 1);
  EXPECT_EQ(g.find_listener(vip, 17, be(53))->preview, 1);
  EXPECT_EQ(g.find_listener(vip, 17, be(54)), nullptr);
  EXPECT_EQ(g.find_listener(ip_address::from_v4_be(0x0a000002), 6, be(80)), nullptr);
  EXPECT_TRUE(g.is_vip(vip));
  EXPECT_FALSE(g.is_vip(ip_address::from_v4_be(0x0a000002)));
}

}  // namespace
}  // namespace tandem
