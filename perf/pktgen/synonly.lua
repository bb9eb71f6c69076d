-- SYN-only: every packet a new 5-tuple. Pktgen's range mode cannot set TCP flags in all
-- versions, so this profile replays a pcap made by perf/gen_pcap --syn (run.sh passes it with
-- `-s PORT:FILE`); the pcap's flows (default 4M) exceed a worker's 1M-entry table, so every
-- packet the worker sees is a new flow. Run through perf/pktgen/run.sh synonly.
local c = dofile(os.getenv("TANDEM_PKTGEN_DIR") .. "/common.lua")
pktgen.set(c.port, "rate", c.rate)
pktgen.pcap(c.port, "on")
c.run("synonly", c.duration)
