-- Shared settings for tandem's Pktgen-DPDK profiles (perf/pktgen/run.sh sets the environment).
-- Values come from environment variables so the same files serve every lab.
-- The `pktgen` table is built into the binary. Pktgen's helper module (Pktgen.lua, required by
-- its own scripts) is not needed and is only found when pktgen runs from its source tree.

local M = {}

local function env(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end
M.env = env

M.port      = env("PKTGEN_TX_PORT", "0")          -- the port facing tandem
M.vip       = env("VIP", "198.51.100.10")         -- service VIP (perf/configs/bench.yaml)
M.vip_port  = tonumber(env("VIP_PORT", "80"))
M.dst_mac   = env("DST_MAC", "")                  -- tandem's port MAC ("" = pktgen default)
M.rate      = tonumber(env("RATE", "100"))        -- percent of line rate
M.duration  = tonumber(env("DURATION", "30"))     -- seconds of traffic
-- Clients: 198.18.0.0/15 (RFC 2544 benchmark range). SRC_IPS addresses x SRC_PORTS ports flows.
M.src_ip_min = env("SRC_IP_MIN", "198.18.0.0")
M.src_ip_max = env("SRC_IP_MAX", "198.18.0.255")  -- 256 addresses
M.sport_min  = tonumber(env("SPORT_MIN", "1024"))
M.sport_max  = tonumber(env("SPORT_MAX", "5119")) -- 4096 ports: 256 x 4096 = 1M flows

-- 64-byte TCP towards the VIP; every range field walks its own range.
function M.setup_range()
  local p = M.port
  pktgen.stop(p)
  pktgen.set_type(p, "ipv4")
  pktgen.set_proto(p, "tcp")
  pktgen.set(p, "size", 64)
  pktgen.set(p, "rate", M.rate)
  pktgen.set(p, "count", 0)
  pktgen.set(p, "burst", 32)
  if M.dst_mac ~= "" then
    pktgen.set_mac(p, "dst", M.dst_mac)
    pktgen.range.dst_mac(p, "start", M.dst_mac)
  end
  pktgen.range.ip_proto(p, "tcp")
  pktgen.range.dst_ip(p, "start", M.vip)
  pktgen.range.dst_ip(p, "inc", "0.0.0.0")
  pktgen.range.dst_ip(p, "min", M.vip)
  pktgen.range.dst_ip(p, "max", M.vip)
  pktgen.range.dst_port(p, "start", M.vip_port)
  pktgen.range.dst_port(p, "inc", 0)
  pktgen.range.dst_port(p, "min", M.vip_port)
  pktgen.range.dst_port(p, "max", M.vip_port)
  pktgen.range.src_ip(p, "start", M.src_ip_min)
  pktgen.range.src_ip(p, "inc", "0.0.0.1")
  pktgen.range.src_ip(p, "min", M.src_ip_min)
  pktgen.range.src_ip(p, "max", M.src_ip_max)
  pktgen.range.src_port(p, "start", M.sport_min)
  pktgen.range.src_port(p, "inc", 1)
  pktgen.range.src_port(p, "min", M.sport_min)
  pktgen.range.src_port(p, "max", M.sport_max)
  pktgen.range.pkt_size(p, "start", 64)
  pktgen.range.pkt_size(p, "inc", 0)
  pktgen.range.pkt_size(p, "min", 64)
  pktgen.range.pkt_size(p, "max", 64)
  pktgen.set_range(p, "on")
end

-- Port p's cumulative counters. Pktgen's Lua API changed: older releases take a type
-- (portStats(p, "port")) and return the counters flat; newer ones take the portlist alone and
-- nest them under "curr". Each rejects the other's argument count with an error.
local function port_counters(p)
  local ok, t = pcall(pktgen.portStats, p)
  if not ok then t = pktgen.portStats(p, "port") end
  local st = t[tonumber(p)]
  return st.curr or st
end

-- Runs traffic for `seconds`, calling tick(second) once a second, then prints the counters.
function M.run(name, seconds, tick)
  local p = M.port
  pktgen.clr()
  pktgen.start(p)
  for s = 1, seconds do
    pktgen.delay(1000)
    if tick then tick(s) end
  end
  pktgen.stop(p)
  pktgen.delay(500)
  local st = port_counters(p)
  print(string.format("tandem-pktgen %s: %d s, tx %d packets (%.3f Mpps), rx %d packets",
                      name, seconds, st.opackets, st.opackets / seconds / 1e6, st.ipackets))
  print("Packets tandem forwarded or dropped: `tandemctl stats` on the tandem host.")
  if os.getenv("PKTGEN_QUIT") == "1" then pktgen.quit() end
end

return M
