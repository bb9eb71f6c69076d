// Fuzz target: any config text is either accepted as a config that validates, or refused with
// an error message that names the file; nothing escapes as an exception or a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "control/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  if (size > 64 * 1024) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = config::parse_config(text, "fuzz.yaml");
  if (!parsed.ok()) {
    if (parsed.error_message().rfind("fuzz.yaml", 0) != 0) {
      std::fprintf(stderr, "config_fuzz: error does not name the file: %s\n",
                       parsed.error_message().c_str());
      std::abort();
    }
    return 0;
  }
  // parse_config promises a validated config.
  const auto again = config::validate(*parsed);
  if (!again.ok()) {
    std::fprintf(stderr, "config_fuzz: parse_config accepted a config that validate() refuses: %s\n",
                     again.error_message().c_str());
    std::abort();
  }
  return 0;
}
