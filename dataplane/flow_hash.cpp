#include "dataplane/flow_hash.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <random>

namespace tandem {
namespace {

// The splitmix64 generator: the next word of the sequence from `x`.
uint64_t splitmix64(uint64_t& x) { return splitmix64_mix(x += 0x9e3779b97f4a7c15ull); }

flow_table_secret process_secret() {
  if (const char* env = std::getenv("TANDEM_FLOW_HASH_SEED"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    errno = 0;
    const uint64_t seed = std::strtoull(env, &end, 0);
    if (errno == 0 && *end == '\0') return make_flow_table_secret(seed);
    // Not a number: say so, and keep the secret random rather than quietly fixing one.
    std::fprintf(stderr, "tandem: ignoring TANDEM_FLOW_HASH_SEED=\"%s\": not a number\n", env);
  }
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
