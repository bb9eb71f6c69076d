// The control protocol between tandemctl and tandemd: one JSON object per line each way.
//
//   request:  {"version":1,"command":"<name>","args":{...}}
//   response: {"version":1,"ok":true,"result":{...}}
//             {"version":1,"ok":false,"error":"<message naming the field>","code":"<code>"}
//
// Codes: bad_request (the request itself is wrong: JSON, version, command, argument types or
// formats), not_found (unknown service or backend), conflict (already in that state), invalid
// (a well-formed change the controller or the config validation refused), internal.
// Commands and their arguments are documented in docs/cli.md.
//
// The small validators below are inline so tandemctl can check arguments locally with exactly
// the daemon's rules without linking the controller.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "dataplane/flow_table.h"
#include "dataplane/ip_address.h"
#include "dataplane/result.h"

namespace tandem {

class controller;
struct actor;

inline constexpr int protocol_version = 1;
inline constexpr size_t max_request_bytes = size_t{1} << 20;  // one request line, without '\n'

// What handle_request saw, for the server's audit log.
struct request_info {
  std::string command;         // empty when the request could not be parsed that far
  bool changes_state = false;  // a command that may change the running state (not dry runs)
  bool ok = false;
};

// Handles one request line (without the newline). Never throws: every failure, including an
// exception from the controller, becomes an error response.
nlohmann::json handle_request(controller& ctl, const std::string& line, const actor& who,
                              request_info* info = nullptr);

nlohmann::json ok_response(nlohmann::json result);
nlohmann::json error_response(std::string_view code, std::string message);

// One response line with its '\n'. Invalid UTF-8 (e.g. echoed from a bad request) is replaced,
// never thrown.
std::string encode_line(const nlohmann::json& j);

// "blue" / "green".
inline std::optional<colour> parse_colour_name(std::string_view s) {
  if (s == "blue") return colour::blue;
  if (s == "green") return colour::green;
  return std::nullopt;
}

// A percentage 0..100 with at most two decimals -> basis points 0..10000.
inline result<uint32_t> percent_to_basis_points(double percent) {
  if (!std::isfinite(percent) || percent < 0.0 || percent > 100.0)
    return make_error("must be between 0 and 100");
  const double scaled = percent * 100.0;
  const double rounded = std::round(scaled);
  if (std::fabs(scaled - rounded) > 1e-6) return make_error("at most 2 decimals are allowed");
  return static_cast<uint32_t>(rounded);
}

// Explains why `text` is not a prefix; for a prefix with host bits set, suggests the network.
inline std::string explain_bad_prefix(std::string_view text) {
  const std::string quoted = "'" + std::string(text) + "'";
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos)
    return quoted + " is not a CIDR prefix: use e.g. 10.0.0.0/8 or 2001:db8::/32";
  const auto addr = parse_ip_address(text.substr(0, slash));
  const std::string_view len_text = text.substr(slash + 1);
  unsigned len = 0;
  bool len_ok = !len_text.empty() && len_text.size() <= 3;
  for (char ch : len_text) {
    if (ch < '0' || ch > '9') len_ok = false;
    else len = len * 10 + static_cast<unsigned>(ch - '0');
  }
  if (!addr) return quoted + " is not a CIDR prefix: bad address";
  const unsigned width = addr->is_v4() ? 32 : 128;
  if (!len_ok || len > width)
    return quoted + " is not a CIDR prefix: length must be 0.." + std::to_string(width);
  ip_address net = *addr;
  const unsigned first = addr->is_v4() ? 96 : 0;  // IPv4 is stored IPv4-mapped
  for (unsigned bit = first + len; bit < 128; ++bit)
    net.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  if (net == *addr) return quoted + " is not a CIDR prefix: use e.g. 10.0.0.0/8";
  return quoted + " has host bits set: did you mean " + to_string(net) + "/" +
         std::to_string(len) + "?";
}

}  // namespace tandem
