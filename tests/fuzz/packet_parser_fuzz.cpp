// Fuzz target: any frame is parsed or dropped with a reason, never over-read (under ASan), and
// the worker's inline fast path agrees with the general parser field for field.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "dataplane/packet_parser.h"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "packet_parser_fuzz: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  if (size > 0xffff) return 0;
  // An exact-size heap copy, so ASan sees a read one byte past the frame.
  std::vector<uint8_t> frame(data, data + size);
  const uint32_t len = static_cast<uint32_t>(size);
  parsed_packet slow, fast;
  std::memset(static_cast<void*>(&slow), 0xa5, sizeof slow);
  std::memset(static_cast<void*>(&fast), 0x5a, sizeof fast);
  const drop_reason r = parse_packet(frame.data(), len, slow);
  const drop_reason rf = parse_packet_fast(frame.data(), len, fast);
  check(r == rf, "parse_packet_fast and parse_packet disagree on the verdict");
  check(static_cast<size_t>(r) < static_cast<size_t>(drop_reason::not_for_vip),
        "the parser returned a reason that is not a parse error");
  if (r != drop_reason::none) return 0;

  check(size_t{slow.l3_offset} + slow.l3_length <= size, "the IP packet runs past the frame");
  check(slow.l3_offset == 14 || slow.l3_offset == 18, "unexpected L3 offset");
  check(slow.has_vlan == (slow.l3_offset == 18 ? 1 : 0), "has_vlan does not match the L3 offset");
  check((slow.key.pad[0] | slow.key.pad[1] | slow.key.pad[2]) == 0, "key padding not zero");
  if (slow.kind != packet_kind::arp) {
    check(slow.l4_offset >= slow.l3_offset + (slow.ip_version == 4 ? 20 : 40),
          "L4 header inside the IP header");
    const size_t l4_end = size_t{slow.l3_offset} + slow.l3_length;
    if (slow.kind == packet_kind::icmp6_nd) {
      check(slow.ip_version == 6, "neighbour solicitation outside IPv6");
      check(size_t{slow.l4_offset} + 24 <= l4_end, "short neighbour solicitation accepted");
    } else if (slow.kind == packet_kind::l4) {
      check(slow.key.proto == 6 || slow.key.proto == 17, "l4 packet neither TCP nor UDP");
      check(size_t{slow.l4_offset} + (slow.key.proto == 6 ? 20u : 8u) <= l4_end,
            "short L4 header accepted");
      // The worker reads the TCP data offset and sequence for drain resets.
      if (slow.key.proto == 6) {
        const size_t doff = static_cast<size_t>(frame[slow.l4_offset + 12] >> 4) * 4;
        check(doff >= 20 && slow.l4_offset + doff <= l4_end, "bad TCP data offset accepted");
      }
    }
  }

  // Field for field (the key byte for byte: its padding is part of the flow-table hash).
  check(std::memcmp(&slow.key, &fast.key, sizeof slow.key) == 0, "keys differ");
  check(slow.l3_offset == fast.l3_offset && slow.l4_offset == fast.l4_offset &&
            slow.l3_length == fast.l3_length && slow.ip_version == fast.ip_version &&
            slow.has_vlan == fast.has_vlan && slow.kind == fast.kind,
        "offsets or kind differ between the fast and the general parser");
  if (slow.has_vlan) check(slow.vlan_tci == fast.vlan_tci, "VLAN TCI differs");
  if (slow.kind == packet_kind::l4 && slow.key.proto == 6)
    check(slow.tcp_flags == fast.tcp_flags && slow.tcp_seq == fast.tcp_seq &&
              slow.tcp_ack == fast.tcp_ack,
          "TCP fields differ between the fast and the general parser");
  return 0;
}
