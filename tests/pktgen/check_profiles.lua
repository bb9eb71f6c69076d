-- Runs tandem's Pktgen-DPDK profiles against fake_pktgen.lua and checks what they ask pktgen
-- to do: the flows they generate, the order of range set-up and start, and the tandemctl
-- commands of the cutover profile. Pktgen itself is not installed here.
--   lua5.4 tests/pktgen/check_profiles.lua perf/pktgen tests/pktgen
local profiles_dir, here = arg[1], arg[2]
assert(profiles_dir and here, "usage: check_profiles.lua PROFILES_DIR FAKE_DIR")

local failures, checks = 0, 0
local function check(ok, what)
  checks = checks + 1
  if not ok then
    failures = failures + 1
    print("FAIL: " .. what)
  end
end

local real_getenv, real_execute, real_print = os.getenv, os.execute, print

-- Runs `profile` (a file in profiles_dir, or a function) with the environment `env`.
-- Returns the recorded pktgen calls, the shell commands, the printed lines and any error.
-- stats_api picks the fake's portStats flavour ("2020" when nil; see fake_pktgen.lua).
local function run(profile, env, stats_api)
  local fake = dofile(here .. "/fake_pktgen.lua")
  fake.stats_api = stats_api or fake.stats_api
  local commands, out = {}, {}
  env = env or {}
  env.TANDEM_PKTGEN_DIR = env.TANDEM_PKTGEN_DIR or profiles_dir
  env.DURATION = env.DURATION or "3"
  _G.pktgen = fake.pktgen
  os.getenv = function(k) return env[k] end
  os.execute = function(cmd) table.insert(commands, cmd); return true, "exit", 0 end
  print = function(...) table.insert(out, table.concat(table.pack(...), " ")) end
  local ok, err = pcall(function()
    if type(profile) == "function" then profile() else dofile(profiles_dir .. "/" .. profile .. ".lua") end
  end)
  os.getenv, os.execute, print = real_getenv, real_execute, real_print
  _G.pktgen = nil
  return fake.calls, commands, out, (not ok) and tostring(err) or nil
end

local function find(calls, name, what)
  for i, c in ipairs(calls) do
    if c.name == name and (what == nil or c.args[2] == what) then return c, i end
  end
end
local function value(calls, name, what)
  local c = find(calls, name, what)
  return c and c.args[3]
end
local function ip_number(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return ((tonumber(a) * 256 + tonumber(b)) * 256 + tonumber(c)) * 256 + tonumber(d)
end
local function count(calls, name)
  local n = 0
  for _, c in ipairs(calls) do if c.name == name then n = n + 1 end end
  return n
end

-- The fake must reject what pktgen would ignore or refuse, or these checks prove nothing.
do
  local _, _, _, err = run(function() pktgen.range.src_ip("0", "begin", "10.0.0.1") end)
  check(err and err:find("start/inc/min/max"), "fake: a range 'what' other than start/inc/min/max is an error")
  _, _, _, err = run(function() pktgen.set_ranges("0", "on") end)
  check(err and err:find("does not exist"), "fake: an unknown pktgen function is an error")
  _, _, _, err = run(function() pktgen.start(0) end)
  check(err and err:find("portlist"), "fake: a port number instead of a portlist string is an error")
  _, _, _, err = run(function() pktgen.portStats("0") end)
  check(err and err:find("takes 2 arguments"), "fake: 2020 portStats needs a type")
  _, _, _, err = run(function() pktgen.portStats("0", "port") end, nil, "2025")
  check(err and err:find("takes 1 arguments"), "fake: 2025 portStats takes the portlist alone")
end

-- multiflow: 1M flows (256 client addresses x 4096 ports) of 64-byte TCP to the VIP.
do
  local calls, _, out, err = run("multiflow")
  check(err == nil, "multiflow runs: " .. tostring(err))
  local src_min, src_max = value(calls, "range.src_ip", "min"), value(calls, "range.src_ip", "max")
  local sp_min, sp_max = value(calls, "range.src_port", "min"), value(calls, "range.src_port", "max")
  check(src_min == "198.18.0.0" and src_max == "198.18.0.255", "multiflow: clients 198.18.0.0-255")
  check(value(calls, "range.src_ip", "inc") == "0.0.0.1", "multiflow: client address steps by 1")
  check(value(calls, "range.src_port", "inc") == 1, "multiflow: client port steps by 1")
  if src_min and src_max and sp_min and sp_max then
    local flows = (ip_number(src_max) - ip_number(src_min) + 1) * (sp_max - sp_min + 1)
    check(flows == 1048576, "multiflow: 1M flows by default, got " .. flows)
  end
  for _, what in ipairs({ "start", "min", "max" }) do
    check(value(calls, "range.dst_ip", what) == "198.51.100.10", "multiflow: dst_ip " .. what .. " is the VIP")
    check(value(calls, "range.dst_port", what) == 80, "multiflow: dst_port " .. what .. " is 80")
    check(value(calls, "range.pkt_size", what) == 64, "multiflow: pkt_size " .. what .. " is 64")
  end
  check(value(calls, "range.dst_ip", "inc") == "0.0.0.0", "multiflow: one VIP")
  check(value(calls, "set", "size") == 64, "multiflow: 64-byte frames")
  check(find(calls, "range.ip_proto", "tcp") ~= nil, "multiflow: TCP")
  local _, on = find(calls, "set_range", "on")
  local _, start = find(calls, "start")
  local _, stop = find(calls, "stop")
  local last_stop = 0
  for i, c in ipairs(calls) do if c.name == "stop" then last_stop = i end end
  check(on and start and on < start, "multiflow: ranges enabled before start (pktgen refuses while sending)")
  check(start and last_stop > start, "multiflow: stops after starting")
  check(count(calls, "delay") >= 3, "multiflow: runs DURATION seconds")
  check(find(calls, "set_mac") == nil, "multiflow: no DST_MAC, pktgen's default MAC")
  check(find(calls, "quit") == nil, "multiflow: stays at the prompt without PKTGEN_QUIT")
  check(out[1] and out[1]:find("^tandem%-pktgen multiflow: 3 s"), "multiflow: prints its result line")
end

-- The result line reads the port's counters under both portStats flavours.
for _, api in ipairs({ "2020", "2025" }) do
  local _, _, out, err = run("multiflow", nil, api)
  check(err == nil, "multiflow with " .. api .. " portStats runs: " .. tostring(err))
  check(out[1] and out[1]:find("tx 3000000 packets (1.000 Mpps), rx 2990000 packets", 1, true),
        "multiflow: " .. api .. " portStats counters in the result line, got " .. tostring(out[1]))
end

-- multiflow with the lab's settings from the environment.
do
  local calls, _, _, err = run("multiflow", {
    DST_MAC = "02:00:00:00:00:01", SRC_IP_MIN = "10.1.0.0", SRC_IP_MAX = "10.1.3.255",
    SPORT_MIN = "2000", SPORT_MAX = "2999", VIP = "192.0.2.1", VIP_PORT = "443", RATE = "50",
    PKTGEN_QUIT = "1" })
  check(err == nil, "multiflow with settings runs: " .. tostring(err))
  check(value(calls, "set_mac", "dst") == "02:00:00:00:00:01", "multiflow: DST_MAC is the frames' destination")
  check(value(calls, "range.dst_mac", "start") == "02:00:00:00:00:01", "multiflow: DST_MAC in the range")
  check(value(calls, "range.src_ip", "max") == "10.1.3.255", "multiflow: SRC_IP_MAX")
  check(value(calls, "range.src_port", "min") == 2000, "multiflow: SPORT_MIN")
  check(value(calls, "range.dst_ip", "start") == "192.0.2.1", "multiflow: VIP")
  check(value(calls, "range.dst_port", "start") == 443, "multiflow: VIP_PORT")
  check(value(calls, "set", "rate") == 50, "multiflow: RATE")
  check(find(calls, "quit") ~= nil, "multiflow: PKTGEN_QUIT=1 quits")
end

-- synonly: replays the pcap given on pktgen's command line, no ranges.
do
  local calls, _, out, err = run("synonly")
  check(err == nil, "synonly runs: " .. tostring(err))
  local _, pcap = find(calls, "pcap", "on")
  local _, start = find(calls, "start")
  check(pcap and start and pcap < start, "synonly: pcap replay on before start")
  check(find(calls, "set_range", "on") == nil, "synonly: no range mode")
  check(out[1] and out[1]:find("^tandem%-pktgen synonly"), "synonly: prints its result line")
end

-- cutover: switch and rollback alternate every SWITCH_EVERY seconds while traffic runs.
do
  local calls, commands, _, err = run("cutover", { DURATION = "4", TANDEMCTL = "ctl --socket /s" })
  check(err == nil, "cutover runs: " .. tostring(err))
  local want = { "ctl --socket /s switch web --to green", "ctl --socket /s rollback web",
                 "ctl --socket /s switch web --to green", "ctl --socket /s rollback web" }
  check(#commands == #want, "cutover: one command a second, got " .. #commands)
  for i, w in ipairs(want) do
    check(commands[i] and commands[i]:find(w, 1, true) == 1, "cutover: command " .. i .. " is '" .. w .. "', got " .. tostring(commands[i]))
  end
  check(find(calls, "set_range", "on") ~= nil, "cutover: multi-flow traffic")
  calls, commands = run("cutover", { DURATION = "6", SWITCH_EVERY = "3", SERVICE = "api", FIRST_COLOUR = "green" })
  check(#commands == 2 and commands[1]:find("tandemctl switch api --to blue", 1, true) == 1,
        "cutover: SWITCH_EVERY, SERVICE and FIRST_COLOUR, got " .. tostring(commands[1]))
end

real_print(string.format("%d checks, %d failed", checks, failures))
os.exit(failures == 0 and 0 or 1)
