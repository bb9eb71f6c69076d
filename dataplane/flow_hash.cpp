#include "dataplane/flow_hash.h"

#include <cstdlib>
#include <random>

namespace tandem {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

flow_table_secret process_secret() {
  if (const char* env = std::getenv("TANDEM_FLOW_HASH_SEED"); env != nullptr && *env != '\0')
    return make_flow_table_secret(std::strtoull(env, nullptr, 0));
  std::random_device rd;
  return make_flow_table_secret(uint64_t{rd()} << 32 | rd());
}

}  // namespace

flow_table_secret make_flow_table_secret(uint64_t seed) {
  flow_table_secret s{};
  for (uint64_t& w : s.bucket) w = splitmix64(seed);
  for (uint64_t& w : s.digest) w = splitmix64(seed);
  return s;
}

const flow_table_secret process_flow_table_secret = process_secret();

}  // namespace tandem
