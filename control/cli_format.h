// Human-readable rendering of control-protocol results for tandemctl (the default output;
// --json prints the result as it came). Every function tolerates missing or unexpected fields
// (prints "-"), so a newer daemon never makes an older tandemctl fail.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace tandem::cli {

// Aligned columns, two spaces apart; every line starts with `indent`. Ends with '\n'.
std::string table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows,
                  const std::string& indent = "");

// A scalar as text: strings unquoted, null as "-", numbers as written, 1.50 -> "1.5".
std::string text(const nlohmann::json& v);

std::string format_status(const nlohmann::json& result);
std::string format_history(const nlohmann::json& result);
std::string format_stats(const nlohmann::json& result);
std::string format_flows(const nlohmann::json& result);
std::string format_changes(const nlohmann::json& result);  // apply and diff
std::string format_generic(const nlohmann::json& result);  // key: value, nested indented
// `tandemctl backend SERVICE [ADDR]`: the backends of both pools from a status result, with
// admin state, health, last check result and latency. `found`: some backend matched.
std::string format_backends(const nlohmann::json& status_result, const std::string& service,
                            const std::string& only_address, bool& found);

// Dispatches on the protocol command name ("switch", "status", ...).
std::string format_result(const std::string& command, const nlohmann::json& result);

// One progress line for wait-drained: "web: blue draining, 123 flows remaining".
// Sets `found` false when the service is not in the status result; `live` to the colour's
// live flows (or -1 when unknown).
std::string drain_progress(const nlohmann::json& status_result, const std::string& service,
                           const std::string& colour, bool& found, long long& live);

}  // namespace tandem::cli
