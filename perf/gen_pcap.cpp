// gen_pcap: writes a pcap of 64-byte (60 bytes + FCS on the wire) IPv4/TCP frames towards one
// VIP, for net_pcap's infinite_rx replay in perf/bench_worker and dpdk-testpmd.
//
//   gen_pcap --out FILE --flows N [--packets P] [--syn] [--vip A] [--port P] [--dst-mac M]
//
// Steady mode (default): P packets (default N), packet i belongs to flow i mod N, flags ACK.
// Replayed in a loop, every flow is seen once per pass: no two consecutive packets share a flow
// (the worst case for flow-table locality).
// --syn: every packet is a SYN of a distinct 5-tuple (P = N); replayed through a flow table
// smaller than N, every packet is a new flow.
// Flow i: source 198.18.0.0/15 (RFC 2544 benchmark range) + i / 64000, source port
// 1024 + i % 64000; destination VIP:port. IP and TCP checksums are correct.
#include <arpa/inet.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "perf/frame.h"

namespace {

using namespace tandem;
constexpr uint32_t frame_len = perf::tcp64_len;  // 64 on the wire with the FCS
constexpr uint32_t ports_per_ip = perf::ports_per_client;

struct options {
  std::string out;
  uint64_t flows = 65536;
  uint64_t packets = 0;  // 0 = flows
  bool syn = false;
  std::string vip = "198.51.100.10";
  uint16_t port = 80;
  uint8_t dst_mac[6] = {0x02, 0x70, 0x63, 0x61, 0x70, 0x00};  // net_pcap0's MAC
  uint8_t src_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "gen_pcap: %s\nusage: gen_pcap --out FILE --flows N [--packets P] [--syn] "
               "[--vip ADDR] [--port PORT] [--dst-mac MAC]\n",
               why);
  std::exit(2);
}

bool parse_mac(const char* s, uint8_t* out) {
  unsigned b[6];
  if (std::sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
    return false;
  for (int i = 0; i < 6; ++i) out[i] = static_cast<uint8_t>(b[i]);
  return true;
}

// Fills `f` (frame_len bytes) for flow `i`.
void build(const options& o, uint32_t vip, uint64_t i, uint8_t* f) {
  perf::tcp4_spec s{};
  s.dst_mac = o.dst_mac;
  s.src_mac = o.src_mac;
  s.src_ip = perf::client_ip(i);
  s.dst_ip = vip;
  s.src_port = perf::client_port(i);
  s.dst_port = o.port;
  s.flags = o.syn ? 0x02 : 0x10;  // SYN or ACK
  s.seq = 1000;
  s.ack = o.syn ? 0 : 5000;
  s.ip_id = static_cast<uint16_t>(i);
  perf::build_tcp4(s, f);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    if (a == "--out") o.out = value();
    else if (a == "--flows") o.flows = std::strtoull(value(), nullptr, 0);
    else if (a == "--packets") o.packets = std::strtoull(value(), nullptr, 0);
    else if (a == "--syn") o.syn = true;
    else if (a == "--vip") o.vip = value();
    else if (a == "--port") o.port = static_cast<uint16_t>(std::atoi(value()));
    else if (a == "--dst-mac") {
      if (!parse_mac(value(), o.dst_mac)) usage("bad --dst-mac");
    } else if (a == "-h" || a == "--help") usage("help");
    else usage(("unknown argument " + a).c_str());
  }
  if (o.out.empty()) usage("--out is required");
  if (o.flows == 0 || o.flows > uint64_t{ports_per_ip} * 131072) usage("--flows out of range");
  if (o.packets == 0 || o.syn) o.packets = o.flows;
  in_addr vip{};
  if (inet_pton(AF_INET, o.vip.c_str(), &vip) != 1) usage("--vip must be an IPv4 address");
  const uint32_t vip_host = ntohl(vip.s_addr);

  FILE* f = std::fopen(o.out.c_str(), "wb");
  if (f == nullptr) {
    std::perror(o.out.c_str());
    return 1;
  }
  std::vector<char> buf(1 << 20);
  std::setvbuf(f, buf.data(), _IOFBF, buf.size());
  // Classic pcap, microsecond timestamps, Ethernet, host byte order (readers handle either).
  struct {
    uint32_t magic = 0xa1b2c3d4;
    uint16_t major = 2, minor = 4;
    int32_t zone = 0;
    uint32_t sigfigs = 0, snaplen = 65535, linktype = 1;
  } header;
  std::fwrite(&header, sizeof header, 1, f);
  uint8_t frame[frame_len];
  for (uint64_t p = 0; p < o.packets; ++p) {
    const uint32_t rec[4] = {static_cast<uint32_t>(p / 1000000), static_cast<uint32_t>(p % 1000000),
                             frame_len, frame_len};
    build(o, vip_host, p % o.flows, frame);
    std::fwrite(rec, sizeof rec, 1, f);
    std::fwrite(frame, frame_len, 1, f);
  }
  if (std::fclose(f) != 0) {
    std::perror(o.out.c_str());
    return 1;
  }
  std::printf("%s: %llu packets, %llu flows, %s\n", o.out.c_str(),
              static_cast<unsigned long long>(o.packets), static_cast<unsigned long long>(o.flows),
              o.syn ? "SYN" : "ACK");
  return 0;
}
