-- A stand-in for Pktgen-DPDK's `pktgen` Lua table, so tandem's profiles (perf/pktgen/*.lua) can
-- run where pktgen is not installed. Each function checks its arguments the way Pktgen-DPDK's
-- bindings (app/lpktgenlib.c: exact argument counts, "dst"/"src", start/inc/min/max, the
-- portStats table keyed by port id) do, and records the call; any name the bindings do not
-- register raises an error, so a typo in a profile fails here instead of in a lab.
local M = {}

-- portStats changed between releases. "2020": portStats(portlist, "port"|"rate"), counters flat
-- in the port's table. "2025" (the newest tree read): portStats(portlist), the cumulative
-- counters nested under "curr" (beside "ext", "sizes" and "qstats").
M.stats_api = "2020"
-- What portStats reports, so a check can tell that a profile read the right fields.
M.opackets, M.ipackets = 3000000, 2990000

local calls = {}
M.calls = calls

local function fail(name, msg)
  error(string.format("pktgen.%s: %s", name, msg), 3)
end

local function check_count(name, args, n)
  if args.n ~= n then fail(name, string.format("takes %d arguments, got %d", n, args.n)) end
end

local function check_portlist(name, v)
  if type(v) ~= "string" or (v ~= "all" and not v:match("^[%d,%-]+$")) then
    fail(name, "first argument must be a portlist string such as \"0\", got " .. tostring(v))
  end
end

local function check_ipv4(name, v)
  local a, b, c, d = tostring(v):match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a or tonumber(a) > 255 or tonumber(b) > 255 or tonumber(c) > 255 or tonumber(d) > 255 then
    fail(name, "not an IPv4 address: " .. tostring(v))
  end
end

local function check_mac(name, v)
  if not tostring(v):match("^%x%x:%x%x:%x%x:%x%x:%x%x:%x%x$") then
    fail(name, "not a MAC address: " .. tostring(v))
  end
end

local function check_int(name, v)
  if math.type(tonumber(v)) ~= "integer" then fail(name, "not an integer: " .. tostring(v)) end
end

-- Range fields take (portlist, what, value) with what one of start/inc/min/max (the bindings
-- ignore any other word silently, which is exactly the mistake worth catching).
local range_what = { start = true, inc = true, min = true, max = true,
                     increment = true, minimum = true, maximum = true }
local function range_field(field, check_value)
  return function(...)
    local args = table.pack(...)
    local name = "range." .. field
    check_count(name, args, 3)
    check_portlist(name, args[1])
    if not range_what[args[2]] then fail(name, "second argument must be start/inc/min/max") end
    check_value(name, args[3], args[2])
    table.insert(calls, { name = name, args = args })
  end
end

local function port_value(name, v, what)
  check_int(name, v)
  if what == "inc" and tonumber(v) > 64 then fail(name, "pktgen caps a port increment at 64") end
end

local function simple(name, n, check)
  return function(...)
    local args = table.pack(...)
    check_count(name, args, n)
    if n > 0 then check_portlist(name, args[1]) end
    if check then check(name, args) end
    table.insert(calls, { name = name, args = args })
  end
end

local set_keys = { count = true, size = true, rate = true, burst = true, sport = true,
                   dport = true, ttl = true, seq_cnt = true, prime = true }

local api = {
  start = simple("start", 1),
  stop = simple("stop", 1),
  clr = simple("clr", 0),
  quit = simple("quit", 0),
  delay = function(ms)
    check_int("delay", ms)
    table.insert(calls, { name = "delay", args = table.pack(ms) })
  end,
  set_type = simple("set_type", 2, function(name, a)
    if a[2] ~= "ipv4" and a[2] ~= "ipv6" and a[2] ~= "arp" then fail(name, "type " .. tostring(a[2])) end
  end),
  set_proto = simple("set_proto", 2, function(name, a)
    if a[2] ~= "tcp" and a[2] ~= "udp" and a[2] ~= "icmp" then fail(name, "proto " .. tostring(a[2])) end
  end),
  set = simple("set", 3, function(name, a)
    if not set_keys[a[2]] then fail(name, "unknown key " .. tostring(a[2])) end
    if a[2] == "rate" then
      local r = tonumber(a[3])
      if not r or r <= 0 or r > 100 then fail(name, "rate is a percentage in (0, 100]") end
    else
      check_int(name, a[3])
    end
  end),
  set_mac = simple("set_mac", 3, function(name, a)
    if a[2] ~= "dst" and a[2] ~= "src" then fail(name, "second argument must be \"dst\" or \"src\"") end
    check_mac(name, a[3])
  end),
  set_range = simple("set_range", 2, function(name, a)
    if a[2] ~= "on" and a[2] ~= "off" then fail(name, "on or off") end
  end),
  pcap = simple("pcap", 2, function(name, a)
    if a[2] ~= "on" and a[2] ~= "off" then fail(name, "on or off") end
  end),
  portStats = function(...)
    local args = table.pack(...)
    local nested = M.stats_api == "2025"
    check_count("portStats", args, nested and 1 or 2)
    check_portlist("portStats", args[1])
    if not nested and args[2] ~= "port" and args[2] ~= "rate" then
      fail("portStats", "\"port\" or \"rate\"")
    end
    table.insert(calls, { name = "portStats", args = args })
    -- One table per port id (and "n"), with the fields the bindings fill in.
    local counters = { opackets = M.opackets, ipackets = M.ipackets, obytes = 0, ibytes = 0,
                       oerrors = 0, ierrors = 0, rx_nombuf = 0, imissed = 0 }
    local t = { n = 1 }
    t[tonumber(args[1])] = nested and { curr = counters, ext = {}, sizes = {}, qstats = {} } or counters
    return t
  end,
  range = setmetatable({
    dst_mac = range_field("dst_mac", function(name, v) check_mac(name, v) end),
    src_mac = range_field("src_mac", function(name, v) check_mac(name, v) end),
    dst_ip = range_field("dst_ip", function(name, v) check_ipv4(name, v) end),
    src_ip = range_field("src_ip", function(name, v) check_ipv4(name, v) end),
    dst_port = range_field("dst_port", port_value),
    src_port = range_field("src_port", port_value),
    pkt_size = range_field("pkt_size", function(name, v) check_int(name, v) end),
    ip_proto = function(...)
      local args = table.pack(...)
      check_count("range.ip_proto", args, 2)
      check_portlist("range.ip_proto", args[1])
      if args[2] ~= "tcp" and args[2] ~= "udp" and args[2] ~= "icmp" then
        fail("range.ip_proto", "proto " .. tostring(args[2]))
      end
      table.insert(calls, { name = "range.ip_proto", args = args })
    end,
  }, { __index = function(_, k) error("pktgen.range." .. tostring(k) .. " does not exist", 2) end }),
}

M.pktgen = setmetatable(api, {
  __index = function(_, k) error("pktgen." .. tostring(k) .. " does not exist", 2) end,
})

return M
