// Small helpers shared by the perf/ programs (not used by the product).
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace tandem::perf {

// CPU time a thread of this process has spent running, in ns (/proc schedstat: time on CPU),
// so rates can be given per on-CPU second when other work shares the core.
inline uint64_t thread_cpu_ns(long tid) {
  const std::string path = "/proc/self/task/" + std::to_string(tid) + "/schedstat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return 0;
  unsigned long long ns = 0;
  if (std::fscanf(f, "%llu", &ns) != 1) ns = 0;
  std::fclose(f);
  return ns;
}

inline long gettid_now() { return static_cast<long>(syscall(SYS_gettid)); }

inline double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

// Splits "EAL args -- own args" (argv[0] goes to EAL). Without "--" everything is EAL's.
inline void split_args(int argc, char** argv, std::vector<std::string>& eal,
                       std::vector<std::string>& own) {
  eal.push_back(argv[0]);
  bool after = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (!after && a == "--") {
      after = true;
      continue;
    }
    (after ? own : eal).push_back(a);
  }
}

}  // namespace tandem::perf
