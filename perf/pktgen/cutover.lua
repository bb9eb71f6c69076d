-- Cutover under load: the multi-flow profile at RATE while tandemctl alternates
-- `switch SERVICE --to <other colour>` and `rollback SERVICE` every SWITCH_EVERY seconds.
-- TANDEMCTL is the command (with --socket when tandem runs on this host, or e.g. an ssh
-- wrapper). Pktgen cannot see which backend each packet reached: the per-flow check is
-- perf/tandem_gen's (perf/bench_memif.py cutover); here tandem's own counters tell the story
-- (`tandemctl stats`: drops must stay 0). Run through perf/pktgen/run.sh cutover.
local c = dofile(os.getenv("TANDEM_PKTGEN_DIR") .. "/common.lua")
local ctl = c.env("TANDEMCTL", "tandemctl")
local service = c.env("SERVICE", "web")
local every = tonumber(c.env("SWITCH_EVERY", "1"))
local colour = c.env("FIRST_COLOUR", "blue")
c.setup_range()
local switches = 0
c.run("cutover", c.duration, function(s)
  if s % every ~= 0 then return end
  local cmd
  if switches % 2 == 0 then
    colour = (colour == "blue") and "green" or "blue"
    cmd = string.format("%s switch %s --to %s", ctl, service, colour)
  else
    colour = (colour == "blue") and "green" or "blue"
    cmd = string.format("%s rollback %s", ctl, service)
  end
  local ok = os.execute(cmd .. " >/dev/null")
  switches = switches + 1
  print(string.format("cutover %d s: %s -> %s", s, cmd, ok and "ok" or "FAILED"))
end)
