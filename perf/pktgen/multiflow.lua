-- Multi-flow 64-byte TCP (ACK) towards the VIP: SRC_IP_MIN..SRC_IP_MAX x SPORT_MIN..SPORT_MAX
-- flows (default 256 x 4096 = 1M), the steady-state case of perf/bench_throughput.py.
-- Run through perf/pktgen/run.sh multiflow.
local c = dofile(os.getenv("TANDEM_PKTGEN_DIR") .. "/common.lua")
c.setup_range()
c.run("multiflow", c.duration)
