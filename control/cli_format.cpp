#include "control/cli_format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "dataplane/ip_address.h"

namespace tandem::cli {
namespace {

using json = nlohmann::json;

const json& field(const json& obj, const char* key) {
  static const json null_value;
  if (!obj.is_object()) return null_value;
  auto it = obj.find(key);
  return it == obj.end() ? null_value : *it;
}

std::string str(const json& obj, const char* key) { return text(field(obj, key)); }

long long integer(const json& obj, const char* key, long long def = 0) {
  const json& v = field(obj, key);
  if (v.is_number_integer() || v.is_number_unsigned()) return v.get<long long>();
  if (v.is_number_float()) return static_cast<long long>(v.get<double>());
  return def;
}

double number(const json& obj, const char* key, double def = 0) {
  const json& v = field(obj, key);
  return v.is_number() ? v.get<double>() : def;
}

// 1234567 -> "1,234,567": flow and packet counts are read at a glance.
std::string count(long long n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string seconds(double s) {
  char buf[64];
  if (s >= 3600 && std::fmod(s, 3600) == 0) std::snprintf(buf, sizeof buf, "%.0fh", s / 3600);
  else if (s >= 60 && std::fmod(s, 60) == 0) std::snprintf(buf, sizeof buf, "%.0fm", s / 60);
  else if (s == std::floor(s)) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

std::string percent(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", p);
  std::string s = buf;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s + "%";
}

std::string listener(const json& vip, const json& port, const json& protocol) {
  std::string v = text(vip);
  if (v.find(':') != std::string::npos) v = "[" + v + "]";  // IPv6
  const std::string p = port.is_number() && port.get<long long>() == 0 ? "*" : text(port);
  return v + ":" + p + (protocol.is_null() ? "" : "/" + text(protocol));
}

const json& array_of(const json& result, std::initializer_list<const char*> keys) {
  if (result.is_array()) return result;
  for (const char* k : keys) {
    const json& v = field(result, k);
    if (v.is_array()) return v;
  }
  static const json empty = json::array();
  return empty;
}

void generic(std::ostringstream& out, const json& v, const std::string& indent) {
  if (v.is_object()) {
    for (const auto& [key, value] : v.items()) {
      if (value.is_object() && !value.empty()) {
        out << indent << key << ":\n";
        generic(out, value, indent + "  ");
      } else if (value.is_array() && !value.empty() &&
                 std::any_of(value.begin(), value.end(),
                             [](const json& e) { return e.is_structured(); })) {
        out << indent << key << ":\n";
        generic(out, value, indent + "  ");
      } else {
        out << indent << key << ": " << text(value) << "\n";
      }
    }
  } else if (v.is_array()) {
    for (const json& e : v) {
      if (e.is_structured()) {
        out << indent << "-\n";
        generic(out, e, indent + "  ");
      } else {
        out << indent << "- " << text(e) << "\n";
      }
    }
  } else {
    out << indent << text(v) << "\n";
  }
}

std::string with_generation(std::string line, const json& result) {
  if (!field(result, "generation").is_null()) line += " (generation " + str(result, "generation") + ")";
  return line + "\n";
}

std::string join_strings(const json& list) {
  std::string s;
  for (const json& e : list) s += (s.empty() ? "" : ", ") + text(e);
  return s.empty() ? "-" : s;
}

// HEALTH cell: the health-check state when the daemon reports one, else up/down.
std::string health_cell(const json& b) {
  const json& h = field(b, "health");
  const json& up = field(b, "up");
  std::string state = h.is_object() ? str(h, "state") : "-";
  if (state == "unknown" && field(h, "last_result").is_null())  // service without checks
    state = up.is_boolean() ? (up.get<bool>() ? "up" : "down") : "-";
  if (str(b, "state") == "maint") state += " (maint)";
  return state;
}

std::string latency_cell(const json& b) {
  const json& l = field(field(b, "health"), "latency_ms");
  if (!l.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f ms", l.get<double>());
  return buf;
}

std::string bake_line(const json& bake) {
  std::string line = str(bake, "colour") + " " + str(bake, "state") + ", " +
                     seconds(std::floor(number(bake, "elapsed_s"))) + " of " +
                     seconds(number(bake, "window_s"));
  const json& ar = field(bake, "auto_rollback");
  if (ar.is_boolean() && ar.get<bool>())
    line += ", auto-rollback below " + text(field(bake, "min_healthy")) + " healthy";
  if (!field(bake, "reason").is_null()) line += " (" + str(bake, "reason") + ")";
  return line;
}

std::string format_switch(const json& r) {
  if (field(r, "switched").is_array())
    return with_generation("switched " + join_strings(field(r, "switched")) + " to " +
                               str(r, "active"),
                           r);
  if (field(r, "rolled_back").is_array())
    return with_generation("rolled back " + join_strings(field(r, "rolled_back")), r);
  if (field(r, "service").is_null() || field(r, "active").is_null()) return format_generic(r);
  std::string line = str(r, "service") + ": " + str(r, "active") + " is active";
  if (!field(r, "draining").is_null()) {
    line += ", " + str(r, "draining") + " draining";
    std::string details;
    if (field(r, "drain_timeout_s").is_number())
      details += "timeout " + seconds(number(r, "drain_timeout_s"));
    if (!field(r, "on_drain_timeout").is_null())
      details += (details.empty() ? "" : ", ") + std::string("then ") + str(r, "on_drain_timeout");
    if (!details.empty()) line += " (" + details + ")";
  }
  if (field(r, "bake").is_object()) line += "; bake: " + bake_line(field(r, "bake"));
  return with_generation(line, r);
}

std::string format_canary(const json& r) {
  const json& c = field(r, "canary");
  if (!c.is_object()) return format_generic(r);
  const double p = number(c, "percent");
  const std::string what = p == 0 ? "canary off" : "canary " + percent(p) + " of clients -> " + str(c, "to");
  return with_generation(str(r, "service") + ": " + what, r);
}

}  // namespace

std::string text(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (d == std::floor(d) && std::fabs(d) < 1e15) return std::to_string(static_cast<long long>(d));
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", d);
    std::string s = buf;
    while (s.back() == '0') s.pop_back();
    return s;
  }
  if (v.is_number()) return v.dump();
  if (v.is_array()) {
    std::string s;
    for (const json& e : v) s += (s.empty() ? "" : ", ") + (e.is_structured() ? e.dump() : text(e));
    return s.empty() ? "-" : s;
  }
  return v.dump();
}

std::string table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows, const std::string& indent) {
  std::vector<size_t> width(header.size(), 0);
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s = indent;
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      s += cell;
      if (i + 1 < width.size()) s += std::string(width[i] - cell.size() + 2, ' ');
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
  return out.str();
}

std::string format_status(const json& result) {
  std::ostringstream out;
  const json& services = array_of(result, {"services"});
  const std::string generation = str(result, "generation");
  if (services.empty()) return "no services (generation " + generation + ")\n";
  bool first = true;
  for (const json& s : services) {
    if (!first) out << "\n";
    first = false;
    const std::string active = str(s, "active");
    const json& drain = field(s, "drain");
    const std::string draining = drain.is_object() ? str(drain, "colour") : "";

    out << str(s, "name") << "  "
        << listener(field(s, "vip"), field(s, "port"), field(s, "protocol"));
    if (!field(s, "forwarding").is_null()) out << "  forwarding " << str(s, "forwarding");
    out << "\n";
    out << "  active:      " << active;
    if (!field(s, "previous").is_null()) out << " (previous " << str(s, "previous") << ")";
    out << "\n";
    out << "  generation:  " << generation << "\n";
    const json& canary = field(s, "canary");
    const double canary_pct = number(canary, "percent");
    out << "  canary:      "
        << (canary_pct > 0 ? percent(canary_pct) + " of clients -> " + str(canary, "to") : "none")
        << "\n";
    std::string segs;
    for (const json& g : array_of(field(s, "segments"), {}))
      segs += (segs.empty() ? "" : ", ") + str(g, "cidr") + " -> " + str(g, "to");
    out << "  segments:    " << (segs.empty() ? "none" : segs) << "\n";
    const json& preview = field(s, "preview");
    if (preview.is_object()) {
      const std::string idle = active == "blue" ? "green" : active == "green" ? "blue" : "-";
      out << "  preview:     " << listener(field(preview, "vip"), field(preview, "port"), json())
          << " -> " << idle << " (the idle colour)\n";
    }

    const json& colours = field(s, "colours");
    for (const char* c : {"blue", "green"}) {
      const json& col = field(colours, c);
      std::string label = c;
      if (active == c) label += " (active)";
      else if (draining == c) label += " (draining)";
      else if (canary_pct > 0 && str(canary, "to") == c) label += " (canary)";
      else label += " (idle)";
      out << "\n  " << label << "   live flows " << count(integer(col, "live_flows"))
          << "   new flows " << count(integer(col, "new_flows")) << "\n";
      const json& backends = array_of(field(col, "backends"), {});
      if (backends.empty()) {
        out << "    (no backends)\n";
        continue;
      }
      std::vector<std::vector<std::string>> rows;
      for (const json& b : backends) {
        rows.push_back({str(b, "address"), str(b, "weight"), str(b, "state"), health_cell(b),
                        str(field(b, "health"), "last_result"), latency_cell(b),
                        count(integer(b, "live_flows"))});
      }
      out << table({"ADDRESS", "WEIGHT", "STATE", "HEALTH", "LAST CHECK", "LATENCY", "LIVE FLOWS"},
                   rows, "    ");
    }
    if (drain.is_object()) {
      out << "\n  drain: " << draining << ", " << count(integer(drain, "remaining"))
          << " flows remaining, " << seconds(std::floor(number(drain, "elapsed_s"))) << " of "
          << seconds(number(drain, "deadline_s"));
      if (field(drain, "timed_out").is_boolean() && field(drain, "timed_out").get<bool>())
        out << " (deadline passed)";
      out << ", on timeout " << str(drain, "on_timeout");
      if (number(drain, "spread_s") > 0) out << ", spread over " << seconds(number(drain, "spread_s"));
      if (!field(drain, "started").is_null()) out << ", started " << str(drain, "started");
      out << "\n";
    }
    const json& bake = field(s, "bake");
    if (bake.is_object()) out << "  bake:  " << bake_line(bake) << "\n";
  }
  return out.str();
}

std::string format_history(const json& result) {
  const json& entries = array_of(result, {"entries", "history"});
  if (entries.empty()) return "no history\n";
  std::vector<std::vector<std::string>> rows;
  for (const json& e : entries) {
    const long long uid = integer(e, "uid", -1);
    const std::string who = uid < 0 ? "tandemd" : "uid=" + str(e, "uid") + " pid=" + str(e, "pid");
    rows.push_back({str(e, "time"), str(e, "generation"), who, str(e, "command"), str(e, "change")});
  }
  return table({"TIME", "GEN", "WHO", "COMMAND", "CHANGE"}, rows);
}

std::string format_stats(const json& result) {
  std::ostringstream out;
  out << "generation " << str(result, "generation") << "\n";
  std::vector<std::vector<std::string>> rows;
  for (const json& s : array_of(field(result, "services"), {})) {
    for (const char* c : {"blue", "green"}) {
      const json& col = field(field(s, "colours"), c);
      rows.push_back({str(s, "name"), c, count(integer(col, "packets")),
                      count(integer(col, "bytes")), count(integer(col, "new_flows")),
                      count(integer(col, "live_flows"))});
    }
  }
  if (!rows.empty())
    out << "\n" << table({"SERVICE", "COLOUR", "PACKETS", "BYTES", "NEW FLOWS", "LIVE FLOWS"}, rows);
  rows.clear();
  for (const json& w : array_of(field(result, "workers"), {})) {
    std::string drops;
    const json& d = field(w, "drops");
    if (d.is_object())
      for (const auto& [reason, n] : d.items())
        drops += (drops.empty() ? "" : " ") + reason + "=" + text(n);
    rows.push_back({str(w, "worker"), count(integer(w, "rx_packets")),
                    count(integer(w, "tx_packets")), count(integer(w, "midflow_pickups")),
                    count(integer(w, "evictions")), count(integer(w, "failed_inserts")),
                    drops.empty() ? "-" : drops});
  }
  if (!rows.empty())
    out << "\n"
        << table({"WORKER", "RX PACKETS", "TX PACKETS", "MIDFLOW", "EVICTIONS", "INSERT FAILS", "DROPS"},
                 rows);
  const json& waits = field(result, "publish_wait_us");
  if (waits.is_array() && !waits.empty()) {
    std::vector<long long> v;
    for (const json& x : waits)
      if (x.is_number()) v.push_back(x.get<long long>());
    if (!v.empty()) {
      std::sort(v.begin(), v.end());
      out << "\npublish waits: " << v.size() << " recent, median " << v[v.size() / 2]
          << " us, max " << v.back() << " us\n";
    }
  }
  return out.str();
}

std::string format_flows(const json& result) {
  std::ostringstream out;
  out << str(result, "service") << ": " << count(integer(result, "live_flows")) << " live flows\n";
  std::vector<std::vector<std::string>> rows;
  for (const json& c : array_of(field(result, "counts"), {}))
    rows.push_back({str(c, "colour"), field(c, "backend").is_null() ? "all" : str(c, "backend"),
                    count(integer(c, "live_flows"))});
  if (!rows.empty()) out << table({"COLOUR", "BACKEND", "LIVE FLOWS"}, rows, "  ");
  const json& flows = field(result, "flows");
  if (flows.is_array() && !flows.empty()) {
    // Per-flow rows, whatever fields the daemon gives (the first flow's keys are the columns).
    std::vector<std::string> header;
    for (const auto& [k, v] : flows.front().items()) header.push_back(k);
    std::vector<std::vector<std::string>> frows;
    for (const json& f : flows) {
      std::vector<std::string> r;
      for (const auto& k : header) r.push_back(str(f, k.c_str()));
      frows.push_back(std::move(r));
    }
    for (auto& h : header) std::transform(h.begin(), h.end(), h.begin(), ::toupper);
    out << "\n" << table(header, frows, "  ");
  }
  if (!field(result, "detail").is_null()) out << "  (" << str(result, "detail") << ")\n";
  return out.str();
}

std::string format_changes(const json& result) {
  std::ostringstream out;
  const json& changes = array_of(result, {"changes"});
  if (changes.empty()) out << "no changes\n";
  for (const json& c : changes) out << "  " << text(c) << "\n";
  if (result.is_object()) {
    const json& dry = field(result, "dry_run");
    if (dry.is_boolean() && dry.get<bool>()) out << "dry run: nothing applied\n";
    else if (!changes.empty() && dry.is_boolean())
      out << "applied as generation " << str(result, "generation") << "\n";
  }
  return out.str();
}

std::string format_generic(const json& result) {
  std::ostringstream out;
  generic(out, result, "");
  return out.str();
}

std::string format_result(const std::string& command, const json& result) {
  try {
    if (command == "status") return format_status(result);
    if (command == "history") return format_history(result);
    if (command == "stats") return format_stats(result);
    if (command == "flows") return format_flows(result);
    if (command == "apply" || command == "diff") return format_changes(result);
    if (command == "switch" || command == "rollback" || command == "abort") return format_switch(result);
    if (command == "promote" && field(result, "bake").is_object())
      return with_generation(str(result, "service") + ": " + str(result, "active") +
                                 " stays active; bake: " + bake_line(field(result, "bake")),
                             result);
    if (command == "canary") return format_canary(result);
    if (command == "segment" && field(result, "segments").is_number())
      return with_generation(str(result, "service") + ": " + str(result, "segments") + " segment(s)", result);
    if (command == "pool" && field(result, "backends").is_number())
      return with_generation(str(result, "service") + ": " + str(result, "pool") + " pool has " +
                                 str(result, "backends") + " backend(s)",
                             result);
    if (command == "backend" && !field(result, "state").is_null())
      return with_generation(str(result, "service") + ": backend " + str(result, "address") +
                                 " is " + str(result, "state"),
                             result);
    return format_generic(result);
  } catch (const std::exception&) {
    return result.dump(2) + "\n";  // a shape this version does not know: show it as it is
  }
}

std::string format_backends(const json& status_result, const std::string& service,
                            const std::string& only_address, bool& found) {
  found = false;
  std::vector<std::vector<std::string>> rows;
  for (const json& s : array_of(status_result, {"services"})) {
    if (str(s, "name") != service) continue;
    const std::string active = str(s, "active");
    for (const char* c : {"blue", "green"}) {
      for (const json& b : array_of(field(field(field(s, "colours"), c), "backends"), {})) {
        if (!only_address.empty()) {
          const auto want = parse_ip_address(only_address);
          const auto have = parse_ip_address(str(b, "address"));
          if (!want || !have || !(*want == *have)) continue;
        }
        found = true;
        const json& h = field(b, "health");
        rows.push_back({std::string(c) + (active == c ? "*" : ""), str(b, "address"),
                        str(b, "weight"), str(b, "state"), health_cell(b), str(h, "last_result"),
                        latency_cell(b), str(h, "checked_at"), count(integer(b, "live_flows"))});
      }
    }
  }
  if (rows.empty()) return service + ": no backends\n";
  return table({"POOL", "ADDRESS", "WEIGHT", "STATE", "HEALTH", "LAST CHECK", "LATENCY", "CHECKED AT",
                "LIVE FLOWS"},
               rows);
}

std::string drain_progress(const json& status_result, const std::string& service,
                           const std::string& colour, bool& found, long long& live) {
  found = false;
  live = -1;
  for (const json& s : array_of(status_result, {"services"})) {
    if (str(s, "name") != service) continue;
    found = true;
    const json& col = field(field(s, "colours"), colour.c_str());
    if (field(col, "live_flows").is_number()) live = integer(col, "live_flows");
    const json& drain = field(s, "drain");
    std::string state = "idle";
    if (str(s, "active") == colour) state = "active";
    else if (drain.is_object() && str(drain, "colour") == colour) state = "draining";
    return service + ": " + colour + " " + state + ", " +
           (live < 0 ? std::string("unknown number of") : count(live)) +
           (live == 1 ? " flow remaining" : " flows remaining");
  }
  return service + ": not found";
}

}  // namespace tandem::cli
