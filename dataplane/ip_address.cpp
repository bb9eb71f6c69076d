#include "dataplane/ip_address.h"

#include <arpa/inet.h>

#include <charconv>

namespace tandem {

bool ip_address::in_prefix(const ip_address& prefix, uint8_t len) const {
  if (is_v4() != prefix.is_v4()) return false;
  unsigned bits = is_v4() ? 96u + len : len;
  if (bits > 128) return false;
  unsigned full = bits / 8;
  if (std::memcmp(bytes, prefix.bytes, full) != 0) return false;
  unsigned rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (bytes[full] & mask) == (prefix.bytes[full] & mask);
}

std::optional<ip_address> parse_ip_address(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  if (text.find('\0') != std::string_view::npos) return std::nullopt;
  std::string s(text);
  uint8_t buf[16];
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), buf) != 1) return std::nullopt;
    return ip_address::from_v4_bytes(buf);
  }
  if (inet_pton(AF_INET6, s.c_str(), buf) != 1) return std::nullopt;
  return ip_address::from_v6(buf);
}

std::string to_string(const ip_address& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.is_v4())
    inet_ntop(AF_INET, a.bytes + 12, buf, sizeof buf);
  else
    inet_ntop(AF_INET6, a.bytes, buf, sizeof buf);
  return buf;
}

std::optional<ip_prefix> parse_ip_prefix(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = parse_ip_address(text.substr(0, slash));
  if (!addr) return std::nullopt;
  auto len_text = text.substr(slash + 1);
  unsigned len = 0;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (ec != std::errc{} || end != len_text.data() + len_text.size() || len_text.empty())
    return std::nullopt;
  if (len > (addr->is_v4() ? 32u : 128u)) return std::nullopt;
  ip_prefix p{*addr, static_cast<uint8_t>(len)};
  // Host bits must be zero: the prefix equals itself masked.
  unsigned bits = addr->is_v4() ? 96u + len : len;
  for (unsigned i = bits; i < 128; ++i)
    if (addr->bytes[i / 8] & (0x80 >> (i % 8))) return std::nullopt;
  return p;
}

std::string to_string(const ip_prefix& p) {
  return to_string(p.address) + "/" + std::to_string(p.length);
}

}  // namespace tandem
