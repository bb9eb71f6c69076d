// UTC timestamps as the history, status and hooks print them (ISO 8601, second precision).
#pragma once

#include <chrono>
#include <ctime>
#include <string>

namespace tandem {

inline std::string iso_time(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace tandem
