#include "tests/support/packet_builder.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tandem::test {
namespace {

void put16(std::vector<uint8_t>& v, size_t off, uint16_t host) {
  v[off] = static_cast<uint8_t>(host >> 8);
  v[off + 1] = static_cast<uint8_t>(host & 0xff);
}
void put32(std::vector<uint8_t>& v, size_t off, uint32_t host) {
  put16(v, off, static_cast<uint16_t>(host >> 16));
  put16(v, off + 2, static_cast<uint16_t>(host & 0xffff));
}
void put_mac(std::vector<uint8_t>& v, size_t off, const std::string& text) {
  unsigned b[6];
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
    std::abort();
  for (int i = 0; i < 6; ++i) v[off + i] = static_cast<uint8_t>(b[i]);
}

uint32_t sum_bytes(const uint8_t* d, size_t n, uint32_t acc) {
  for (size_t i = 0; i + 1 < n; i += 2) acc += static_cast<uint32_t>(d[i] << 8 | d[i + 1]);
  if (n & 1) acc += static_cast<uint32_t>(d[n - 1] << 8);
  return acc;
}

}  // namespace

uint16_t inet_checksum(const uint8_t* data, size_t len, uint32_t initial) {
  uint32_t acc = sum_bytes(data, len, initial);
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(~acc & 0xffff);
}

ip_address addr(const std::string& text) {
  auto a = parse_ip_address(text);
  if (!a) {
    std::fprintf(stderr, "bad address in test: %s\n", text.c_str());
    std::abort();
  }
  return *a;
}

std::vector<uint8_t> build_frame(const frame_spec& s) {
  const ip_address src = addr(s.src), dst = addr(s.dst);
  const bool v4 = src.is_v4();
  std::vector<uint8_t> f;
  // Ethernet
  size_t l2 = s.vlan >= 0 ? 18 : 14;
  f.resize(l2);
  put_mac(f, 0, s.dst_mac);
  put_mac(f, 6, s.src_mac);
  if (s.vlan >= 0) {
    put16(f, 12, 0x8100);
    put16(f, 14, static_cast<uint16_t>(s.vlan));
  }
  put16(f, l2 - 2, v4 ? 0x0800 : 0x86dd);

  // L4
  std::vector<uint8_t> l4;
  if (s.proto == 6) {
    l4.resize(20);
    put16(l4, 0, s.src_port);
    put16(l4, 2, s.dst_port);
    put32(l4, 4, s.seq);
    put32(l4, 8, s.ack);
    l4[12] = 5 << 4;
    l4[13] = s.tcp_flags;
    put16(l4, 14, 65535);
  } else if (s.proto == 17) {
    l4.resize(8);
    put16(l4, 0, s.src_port);
    put16(l4, 2, s.dst_port);
    put16(l4, 4, static_cast<uint16_t>(8 + s.payload.size()));
  }
  l4.insert(l4.end(), s.payload.begin(), s.payload.end());

  // Pseudo-header sum for the L4 checksum.
  uint32_t pseudo = 0;
  if (v4) {
    pseudo = sum_bytes(src.bytes + 12, 4, 0);
    pseudo = sum_bytes(dst.bytes + 12, 4, pseudo);
  } else {
    pseudo = sum_bytes(src.bytes, 16, 0);
    pseudo = sum_bytes(dst.bytes, 16, pseudo);
  }
  pseudo += s.proto;
  pseudo += static_cast<uint32_t>(l4.size());
  if (s.proto == 6) {
    put16(l4, 16, inet_checksum(l4.data(), l4.size(), pseudo));
  } else if (s.proto == 17) {
    uint16_t c = inet_checksum(l4.data(), l4.size(), pseudo);
    put16(l4, 6, c == 0 ? 0xffff : c);
  }

  if (v4) {
    size_t ihl = 20 + s.ipv4_options.size();
    std::vector<uint8_t> ip(ihl);
    ip[0] = static_cast<uint8_t>(0x40 | (ihl / 4));
    put16(ip, 2, static_cast<uint16_t>(ihl + l4.size()));
    put16(ip, 4, 0x1234);
    put16(ip, 6, s.ipv4_frag);
    ip[8] = s.ttl;
    ip[9] = s.proto;
    std::memcpy(ip.data() + 12, src.bytes + 12, 4);
    std::memcpy(ip.data() + 16, dst.bytes + 12, 4);
    if (!s.ipv4_options.empty())
      std::memcpy(ip.data() + 20, s.ipv4_options.data(), s.ipv4_options.size());
    put16(ip, 10, inet_checksum(ip.data(), ip.size()));
    f.insert(f.end(), ip.begin(), ip.end());
  } else {
    // Extension headers, chained in order, the last pointing at the L4 protocol.
    std::vector<uint8_t> ext;
    for (size_t i = 0; i < s.ipv6_ext.size(); ++i) {
      const auto& h = s.ipv6_ext[i];
      uint8_t next = i + 1 < s.ipv6_ext.size() ? s.ipv6_ext[i + 1][0] : s.proto;
      std::vector<uint8_t> body(h.begin() + 1, h.end());
      std::vector<uint8_t> hdr;
      if (h[0] == 44) {
        hdr.assign(8, 0);
        for (size_t k = 0; k < body.size() && k < 6; ++k) hdr[2 + k] = body[k];
      } else {
        size_t total = (2 + body.size() + 7) / 8 * 8;
        hdr.assign(total, 0);
        std::memcpy(hdr.data() + 2, body.data(), body.size());
        hdr[1] = static_cast<uint8_t>(total / 8 - 1);
      }
      hdr[0] = next;
      ext.insert(ext.end(), hdr.begin(), hdr.end());
    }
    std::vector<uint8_t> ip(40);
    ip[0] = 0x60;
    put16(ip, 4, static_cast<uint16_t>(ext.size() + l4.size()));
    ip[6] = s.ipv6_ext.empty() ? s.proto : s.ipv6_ext[0][0];
    ip[7] = s.ttl;
    std::memcpy(ip.data() + 8, src.bytes, 16);
    std::memcpy(ip.data() + 24, dst.bytes, 16);
    f.insert(f.end(), ip.begin(), ip.end());
    f.insert(f.end(), ext.begin(), ext.end());
  }
  f.insert(f.end(), l4.begin(), l4.end());
  if (f.size() < 60) f.resize(60, 0);  // Ethernet minimum (padding after the IP packet)
  return f;
}

rte_ether_addr mac(const char* text) {
  rte_ether_addr a{};
  if (rte_ether_unformat_addr(text, &a) != 0) ADD_FAILURE() << "bad mac " << text;
  return a;
}

rte_mbuf* to_mbuf(rte_mempool* mp, const std::vector<uint8_t>& bytes) {
  rte_mbuf* m = rte_pktmbuf_alloc(mp);
  if (!m) return nullptr;
  char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
  if (!p) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());  // an empty frame: no data pointer
  return m;
}

std::vector<uint8_t> from_mbuf(const rte_mbuf* m) {
  std::vector<uint8_t> out(rte_pktmbuf_pkt_len(m));
  rte_pktmbuf_read(m, 0, static_cast<uint32_t>(out.size()), out.data());
  // rte_pktmbuf_read returns a pointer that may be into the mbuf instead of copying.
  const void* p = rte_pktmbuf_read(m, 0, static_cast<uint32_t>(out.size()), out.data());
  if (p != out.data()) std::memcpy(out.data(), p, out.size());
  return out;
}

}  // namespace tandem::test
