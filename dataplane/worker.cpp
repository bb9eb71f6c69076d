#include "dataplane/worker.h"

#include <rte_ethdev.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <cstring>

#include "dataplane/flow_hash.h"
#include "dataplane/forwarder.h"
#include "dataplane/neighbor_responder.h"
#include "dataplane/tcp_reset.h"

namespace tandem {
namespace {

inline bool is_syn_only(const parsed_packet& p) {
  return p.key.proto == IPPROTO_TCP && (p.tcp_flags & (tcp_syn | tcp_ack)) == tcp_syn;
}

// The TCP state a client-side packet moves an entry to. Only the client->VIP direction passes
// through tandem (DSR), so the state machine is deliberately coarse.
inline tcp_state next_state(tcp_state s, uint8_t flags) {
  if (flags & tcp_rst) return tcp_state::closed;
  if (flags & tcp_fin) return s == tcp_state::closed ? s : tcp_state::closing;
  if (s == tcp_state::syn_seen && (flags & (tcp_ack | tcp_syn)) == tcp_ack)
    return tcp_state::established;
  return s;
}

// Next sequence number the server expects from the client after this packet, for resets.
inline uint32_t next_client_seq(const uint8_t* frame, const parsed_packet& p) {
  const uint32_t tcp_hlen = static_cast<uint32_t>(frame[p.l4_offset + 12] >> 4) * 4;
  const uint32_t payload = p.l3_length - (p.l4_offset - p.l3_offset) - tcp_hlen;
  return p.tcp_seq + payload + ((p.tcp_flags & tcp_syn) ? 1 : 0) + ((p.tcp_flags & tcp_fin) ? 1 : 0);
}

// True when the drain deadline of the entry's colour has passed for this entry (its own
// moment inside the spread window is chosen by its hash so resets do not come all at once).
inline bool flush_due(const service_entry& s, const flow_entry& e, uint32_t now_ms) {
  const colour_flush& f = s.flush[static_cast<size_t>(e.flow_colour)];
  if (f.action == drain_action::keep || e.generation >= f.before_generation) return false;
  uint32_t offset = 0;
  if (f.spread_ms != 0) offset = flow_table::hash_of(e) % f.spread_ms;
  return static_cast<int32_t>(now_ms - (f.start_ms + offset)) >= 0;
}

// Why an ARP request or neighbour solicitation got no answer: for someone else (most of them,
// on a shared segment), or malformed.
drop_reason unanswered_reason(const uint8_t* frame, const parsed_packet& p, const generation& g) {
  if (p.kind == packet_kind::arp && p.l3_length >= 28)
    return g.is_vip(ip_address::from_v4_bytes(frame + p.l3_offset + 24)) ? drop_reason::bad_arp
                                                                          : drop_reason::not_for_vip;
  if (p.kind == packet_kind::icmp6_nd && p.l3_length >= (p.l4_offset - p.l3_offset) + 24)
    return g.is_vip(ip_address::from_v6(frame + p.l4_offset + 8)) ? drop_reason::bad_arp
                                                                   : drop_reason::not_for_vip;
  return p.kind == packet_kind::other ? drop_reason::unsupported_l4 : drop_reason::bad_arp;
}

inline const backend_info* backend_at(const generation& g, uint32_t id) {
  if (id >= g.backends.size() || !g.backends[id].in_registry) return nullptr;
  return &g.backends[id];
}

}  // namespace

worker::worker(worker_options options, const generation_publisher& publisher,
               const ms_clock& clock)
    : options_(std::move(options)),
      publisher_(publisher),
      clock_(clock),
      flows_(options_.flow_table_size),
      counters_(std::make_unique<worker_counters>()),
      backend_counters_(std::make_unique<backend_counters>()),
      sample_(std::make_unique<flow_sample>()),
      bursts_{std::make_unique<burst>(), std::make_unique<burst>()} {
  for (const worker_port& p : options_.ports) ports_.push_back(port_state{p, {}, 0, 0});
}

worker::~worker() = default;

void worker::run(const std::atomic<bool>& stop) {
  rcu_reader reader(publisher_, options_.index);
  while (!stop.load(std::memory_order_relaxed)) poll_once(reader);
}

uint32_t worker::poll_once(const rcu_reader& reader) {
  const generation* gen = publisher_.acquire();
  uint32_t received = 0;
  if (gen != nullptr) {
    if (gen->number != last_generation_) on_generation(*gen);
    const uint32_t now = clock_.now();
    for (uint32_t i = 0; i < ports_.size(); ++i) received += poll_port(*gen, i, now);
    scan(*gen, now);
  }
  if (unlikely(request_seq_.load(std::memory_order_acquire) !=
               done_seq_.load(std::memory_order_relaxed)))
    serve_sample();
  bump(counters_->loops);
  // Nothing of `gen` is held past this point.
  reader.quiescent();
  return received;
}

void worker::request_sample(const flow_sample_request& r) {
  request_ = r;
  request_.limit = std::min(r.limit, max_flow_sample);
  request_seq_.fetch_add(1, std::memory_order_release);
}

bool worker::sample_ready() const {
  return done_seq_.load(std::memory_order_acquire) == request_seq_.load(std::memory_order_acquire);
}

// Scans 64 K slots per poll loop so a sample of a 1 M table costs a few short pauses.
void worker::serve_sample() {
  if (sample_pos_ == 0) {
    sample_->matched = 0;
    sample_->copied = 0;
  }
  const size_t cap = flows_.capacity();
  const size_t end = std::min(cap, sample_pos_ + 65536);
  flows_.for_each_in(sample_pos_, end, [&](const flow_entry& e) {
    if (e.service_id != request_.service_id) return;
    if (request_.colour_filter >= 0 && static_cast<int>(e.flow_colour) != request_.colour_filter)
      return;
    if (request_.backend_filter != 0xffffffffu && e.backend_id != request_.backend_filter) return;
    ++sample_->matched;
    if (sample_->copied < request_.limit) {
      sample_->keys[sample_->copied] = flows_.key_of(e);
      sample_->entries[sample_->copied++] = e;
    }
  });
  sample_pos_ = end;
  if (sample_pos_ >= cap) {
    sample_pos_ = 0;
    done_seq_.store(request_seq_.load(std::memory_order_acquire), std::memory_order_release);
  }
}

void worker::on_generation(const generation& gen) {
  flows_.set_timeouts(gen.settings.timeouts);
  // The window in which some drain flush falls due, plus time for one full-rate sweep after it.
  bool armed = false;
  for (const service_entry& s : gen.services) {
    for (const colour_flush& f : s.flush) {
      if (f.action == drain_action::keep || f.before_generation == 0) continue;
      const uint32_t until = f.start_ms + f.spread_ms + 2 * options_.sweep_ms;
      if (!armed || static_cast<int32_t>(f.start_ms - flush_from_ms_) < 0) flush_from_ms_ = f.start_ms;
      if (!armed || static_cast<int32_t>(until - flush_until_ms_) > 0) flush_until_ms_ = until;
      armed = true;
    }
  }
  if (!armed) flush_from_ms_ = flush_until_ms_ = 0;
  flush_armed_ = armed;
  last_generation_ = gen.number;
  __atomic_store_n(&counters_->generation_seen, gen.number, __ATOMIC_RELAXED);
}

void worker::drop(rte_mbuf* m, drop_reason r) {
  bump(counters_->drops[static_cast<size_t>(r)]);
  rte_pktmbuf_free(m);
}

void worker::end_flow(const flow_entry& e) {
  if (e.service_id < max_services) {
    bump(counters_->services[e.service_id][static_cast<size_t>(e.flow_colour)].live_flows, -1);
  }
  bump(backend_counters_->live_flows[e.backend_id], -1);  // backend_id < max_backends
}

// One burst in flight through the three stages (begin_burst, run_stages, finish_burst).
// Kept by the worker (not on the stack) so that starting a burst does not zero 4 KiB of arrays.
struct alignas(64) worker::burst {
  rte_mbuf* rx[burst_size];  // poll_port's receive array
  const generation* gen = nullptr;
  port_state* port = nullptr;
  rte_mbuf** pkts = nullptr;
  uint16_t n = 0;
  uint32_t now_ms = 0;
  bool check_flush = false;  // a drain flush may be due: look at each flow's deadline
  parsed_packet parsed[burst_size];
  const listener* listeners[burst_size];
  stored_flow_key keys[burst_size];  // IPv6 flows only: the full key (client, ports, VIP id)
  flow_table_key tkeys[burst_size];  // what the table compares (the client in 32 bits)
  uint32_t hashes[burst_size];       // flow_table::hash(tkeys[i])
  flow_table::probe probes[burst_size];
  // When chosen[i]: packet i's colour and backend-choice hash (choose_for_new_flow).
  bool chosen[burst_size];
  colour choice_colour[burst_size];
  uint32_t choice_hash[burst_size];
  rte_mbuf* tx[burst_size * 2];
  uint16_t ntx = 0;
  uint64_t rx_bytes = 0;
  // The listener of the previous packet: a burst is mostly for one VIP and port.
  const listener* last_listener = nullptr;
  ip_address last_dst;
  uint16_t last_port = 0;
  uint8_t last_proto = 0;
};

// A SYN into a nearly full table (a SYN flood, or a table sized too small): its colour and
// backend-choice hash now, and the Maglev entry prefetched a stage early. Inserts into full
// buckets (moves to other buckets) keep the 256 KiB Maglev table out of L2: its load was 7 %
// of SYN-only time.
[[gnu::always_inline]] inline void worker::choose_for_new_flow(burst& b, uint16_t i) {
  const parsed_packet& p = b.parsed[i];
  const listener& l = *b.listeners[i];
  const service_entry& svc = b.gen->services[l.service_index];
  const colour c = choose_colour(svc, l, p.key.src);
  b.choice_colour[i] = c;
  b.choice_hash[i] = hash_flow_key(p.key, backend_choice_seed);
  b.chosen[i] = true;
  svc.pools[static_cast<size_t>(c)]->prefetch(b.choice_hash[i]);
}

// Stage 1: parse, answer ARP/ND, find the listener, hash the key, prefetch the signature lines.
[[gnu::always_inline]] inline void worker::classify(burst& b, uint16_t i) {
  rte_mbuf* m = b.pkts[i];
  b.listeners[i] = nullptr;
  b.rx_bytes += rte_pktmbuf_pkt_len(m);
  const auto* frame = rte_pktmbuf_mtod(m, const uint8_t*);
  const drop_reason r = parse_packet_fast(frame, rte_pktmbuf_data_len(m), b.parsed[i]);
  if (unlikely(r != drop_reason::none)) {
    drop(m, r);
    b.pkts[i] = nullptr;
    return;
  }
  const parsed_packet& p = b.parsed[i];
  if (unlikely(p.kind != packet_kind::l4)) {
    bool answered = false;
    if (p.kind == packet_kind::arp) {
      answered = answer_arp(m, p, *b.gen, b.port->port.mac);
      if (answered) bump(counters_->arp_replies);
    } else if (p.kind == packet_kind::icmp6_nd) {
      answered = answer_neighbor_solicitation(m, p, *b.gen, b.port->port.mac);
      if (answered) bump(counters_->nd_replies);
    }
    if (answered)
      b.tx[b.ntx++] = m;
    else
      drop(m, unanswered_reason(frame, p, *b.gen));
    b.pkts[i] = nullptr;
    return;
  }
  const listener* l = b.last_listener;
  if (l == nullptr || p.key.dst_port != b.last_port || p.key.proto != b.last_proto ||
      !(p.key.dst == b.last_dst)) {
    l = b.gen->find_listener(p.key.dst, p.key.proto, p.key.dst_port);
    b.last_listener = l;
    b.last_dst = p.key.dst;
    b.last_port = p.key.dst_port;
    b.last_proto = p.key.proto;
  }
  if (unlikely(l == nullptr)) {
    drop(m, drop_reason::not_for_vip);
    b.pkts[i] = nullptr;
    return;
  }
  b.listeners[i] = l;
  // Remember who sends us client traffic: drain resets towards clients go back there.
  const auto* eth = reinterpret_cast<const rte_ether_hdr*>(frame);
  b.port->peer_mac = eth->src_addr;
  b.port->peer_has_vlan = p.has_vlan;
  b.port->peer_vlan = p.vlan_tci;
  // The table key from the frame in registers, hashed before it is stored. An IPv4 entry holds
  // its whole key, so only an IPv6 flow needs the full stored key (its client is checked
  // against the table's side array).
  flow_table_key tk;
  if (p.ip_version == 4) {
    uint32_t src_be;
    std::memcpy(&src_be, frame + p.l3_offset + 12, 4);
    tk = flow_table::key_for_v4(src_be, p.key.src_port, p.key.dst_port, l->vip_id);
  } else {
    const stored_key_words w = key_words(p.key.src, p.key.src_port, p.key.dst_port, l->vip_id);
    b.keys[i] = to_stored_key(w);
    tk = flow_table::key_for(w);
  }
  b.tkeys[i] = tk;
  b.hashes[i] = flow_table::hash(tk);
  b.probes[i] = flows_.probe_for(b.hashes[i]);
  flow_table::prefetch(b.probes[i]);
}

// Stage 2, once the bucket lines have arrived: an IPv6 flow's client address (the side array),
// or for a SYN into a nearly full table its backend choice (see choose_for_new_flow).
[[gnu::always_inline]] inline void worker::prefetch_flow(burst& b, uint16_t i) {
  if (b.pkts[i] == nullptr) return;
  b.chosen[i] = false;
  if (unlikely(b.tkeys[i].ipv6())) flows_.prefetch_clients(b.probes[i], b.tkeys[i]);
  if (unlikely(flows_.nearly_full()) && is_syn_only(b.parsed[i])) choose_for_new_flow(b, i);
}

// Stage 3: flow lookup, choice of colour and backend, rewrite.
[[gnu::always_inline]] inline void worker::forward(burst& b, uint16_t i) {
  rte_mbuf* m = b.pkts[i];
  if (m == nullptr) return;
  const generation& gen = *b.gen;
  const uint32_t now_ms = b.now_ms;
  const parsed_packet& p = b.parsed[i];
  const listener& l = *b.listeners[i];
  const service_entry& svc = gen.services[l.service_index];
  const bool syn = is_syn_only(p);
  const bool tcp = p.key.proto == IPPROTO_TCP;

  const stored_flow_key& key = b.keys[i];
  flow_entry* e = flows_.lookup(key, b.tkeys[i], b.probes[i], now_ms);
  if (e != nullptr) {
    bool restart = e->service_id != svc.id;
    if (b.check_flush && !restart && flush_due(svc, *e, now_ms)) {
      // The drain deadline of this flow's colour has passed.
      if (svc.flush[static_cast<size_t>(e->flow_colour)].action == drain_action::reset && tcp) {
        reset_flow(gen, svc, *e, now_ms);
        drop(m, drop_reason::drain_reset);
        return;
      }
      bump(counters_->drain_expired);
      restart = true;
    }
    if (!restart && syn &&
        (e->state == tcp_state::closing || e->state == tcp_state::closed ||
         e->flow_colour !=
             (b.chosen[i] ? b.choice_colour[i] : choose_colour(svc, l, p.key.src)))) {
      // Port reuse: a new connection must not follow the old one to a closed or draining pool.
      bump(counters_->port_reuse);
      restart = true;
    }
    if (restart) {
      end_flow(*e);
      flows_.remove(e);
      e = nullptr;
    }
  }

  const backend_info* be = nullptr;
  if (e != nullptr) {
    be = backend_at(gen, e->backend_id);
    if (unlikely(be == nullptr || !be->up)) {
      // The one exception to pinning: the backend is down (or gone). Re-hash in its colour.
      const uint32_t id = svc.pools[static_cast<size_t>(e->flow_colour)]->lookup(
          hash_flow_key(p.key, backend_choice_seed));
      const backend_info* nb = backend_at(gen, id);
      if (nb == nullptr) {
        drop(m, drop_reason::no_backend);
        return;
      }
      bump(counters_->rehashed_down);
      bump(backend_counters_->live_flows[e->backend_id], -1);
      e->backend_id = static_cast<uint16_t>(id);
      bump(backend_counters_->live_flows[id], 1);
      be = nb;
    }
    e->last_seen_ms = now_ms;
    if (tcp) {
      e->state = next_state(e->state, p.tcp_flags);
      e->client_seq = next_client_seq(rte_pktmbuf_mtod(m, const uint8_t*), p);
      if (p.tcp_flags & tcp_ack) e->client_ack = p.tcp_ack;
    }
  } else {
    // New flow: choose the colour, then the backend in that colour's Maglev table.
    const colour c = b.chosen[i] ? b.choice_colour[i] : choose_colour(svc, l, p.key.src);
    const uint32_t id = svc.pools[static_cast<size_t>(c)]->lookup(
        b.chosen[i] ? b.choice_hash[i] : hash_flow_key(p.key, backend_choice_seed));
    be = backend_at(gen, id);
    if (unlikely(be == nullptr)) {
      drop(m, drop_reason::no_backend);
      return;
    }
    // A reset for a flow we do not know is forwarded by the current choice, not tracked.
    if (!(tcp && !syn && (p.tcp_flags & tcp_rst))) {
      flow_table::insert_result ins = flows_.insert(key, b.tkeys[i], b.probes[i], now_ms);
      if (ins.evicted) end_flow(ins.displaced);
      if (likely(ins.entry != nullptr)) {
        flow_entry& ne = *ins.entry;
        ne.backend_id = static_cast<uint16_t>(id);
        ne.generation = gen.number;
        ne.service_id = svc.id;
        ne.flow_colour = c;
        if (tcp) {
          ne.state = syn ? tcp_state::syn_seen : next_state(tcp_state::established, p.tcp_flags);
          if (!syn) bump(counters_->midflow_pickups);
          ne.client_seq = next_client_seq(rte_pktmbuf_mtod(m, const uint8_t*), p);
          ne.client_ack = (p.tcp_flags & tcp_ack) ? p.tcp_ack : 0;
        } else {
          ne.state = tcp_state::udp;
          ne.client_seq = ne.client_ack = 0;
        }
        auto& sc = counters_->services[svc.id][static_cast<size_t>(c)];
        bump(sc.live_flows, 1);
        bump(sc.new_flows);
        bump(backend_counters_->live_flows[id], 1);
      }
    }
  }

  auto& sc = counters_->services[svc.id][static_cast<size_t>(be->pool)];
  bump(sc.packets);
  bump(sc.bytes, rte_pktmbuf_pkt_len(m));
  bump(backend_counters_->packets[be - gen.backends.data()]);
  const drop_reason fr =
      forward_packet(svc.mode, m, p, *be, gen.settings, b.port->port.mac, b.hashes[i]);
  if (unlikely(fr != drop_reason::none)) {
    drop(m, fr);
    return;
  }
  b.tx[b.ntx++] = m;
}

// A burst goes through three stages: classify (parse, listener, key, hash, prefetch the
// signature lines), prefetch_flow `lag` packets later (prefetch the entry the signature points
// at), then forward. The stages run as a software pipeline so each packet's misses are issued
// among other packets' work (64 prefetches in a row filled the core's miss buffers). Under load
// poll_port receives the next burst between a burst's first two stages and its forwarding, so
// its entries arrive while the port copies frames in. Packets are forwarded in arrival order,
// so flow-table updates happen in that order.
void worker::begin_burst(burst& b, const generation& gen, uint32_t port_index, rte_mbuf** pkts,
                         uint16_t n, uint32_t now_ms) {
  if (gen.number != last_generation_) on_generation(gen);
  b.gen = &gen;
  b.port = &ports_[port_index];
  b.pkts = pkts;
  b.n = n;
  b.now_ms = now_ms;
  b.check_flush = flush_armed_ && static_cast<int32_t>(now_ms - flush_from_ms_) >= 0;
  b.ntx = 0;
  b.rx_bytes = 0;
  b.last_listener = nullptr;
}

// Stages 1 and 2 for every packet of `b`, and with forward_too stage 3 `lag` packets later.
void worker::run_stages(burst& b, bool forward_too) {
  constexpr uint32_t lag = 8;
  const uint32_t n = b.n;
  const uint32_t steps = n + (forward_too ? 2 * lag : lag);
  for (uint32_t i = 0; i < n && i < 4; ++i) rte_prefetch0(rte_pktmbuf_mtod(b.pkts[i], void*));
  for (uint32_t k = 0; k < steps; ++k) {
    if (k < n) {
      if (k + 4 < n) rte_prefetch0(rte_pktmbuf_mtod(b.pkts[k + 4], void*));
      classify(b, static_cast<uint16_t>(k));
    }
    if (k >= lag && k - lag < n) prefetch_flow(b, static_cast<uint16_t>(k - lag));
    if (forward_too && k >= 2 * lag) forward(b, static_cast<uint16_t>(k - 2 * lag));
  }
}

// Stage 3 for every packet of `b` (stages 1 and 2 done), then counters and transmission.
void worker::finish_burst(burst& b, bool forward_all) {
  if (forward_all)
    for (uint16_t i = 0; i < b.n; ++i) forward(b, i);
  bump(counters_->rx_packets, b.n);
  bump(counters_->rx_bytes, b.rx_bytes);
  if (b.ntx != 0) {
    const uint16_t sent = rte_eth_tx_burst(b.port->port.port_id, b.port->port.queue, b.tx, b.ntx);
    bump(counters_->tx_packets, sent);
    for (uint16_t i = sent; i < b.ntx; ++i) drop(b.tx[i], drop_reason::tx_full);
  }
}

void worker::process_burst(const generation& gen, uint32_t port_index, rte_mbuf** pkts,
                           uint16_t n, uint32_t now_ms) {
  burst& b = *bursts_[0];
  begin_burst(b, gen, port_index, pkts, n, now_ms);
  run_stages(b, true);
  finish_burst(b, false);
}

// Up to this many bursts per port per loop, each received before the previous one is
// forwarded. All are finished before poll_once returns (and reports a quiescent state), so
// nothing of the generation is held across loops.
constexpr uint32_t max_chained_bursts = 8;

uint32_t worker::poll_port(const generation& gen, uint32_t port_index, uint32_t now_ms) {
  const worker_port& port = ports_[port_index].port;
  burst* cur = bursts_[0].get();
  burst* next = bursts_[1].get();
  uint16_t n = rte_eth_rx_burst(port.port_id, port.queue, cur->rx, burst_size);
  if (n == 0) return 0;
  begin_burst(*cur, gen, port_index, cur->rx, n, now_ms);
  if (unlikely(flows_.nearly_full())) {
    // New flows will look for victims (6 lines each, prefetch_victims): spread those misses
    // over the burst's own forwarding work rather than issuing a whole burst's in a row
    // (chaining measured x0.93 on SYN-only traffic into a full table).
    run_stages(*cur, true);
    finish_burst(*cur, false);
    return n;
  }
  uint32_t received = n;
  run_stages(*cur, false);
  for (uint32_t k = 1; k < max_chained_bursts; ++k) {
    n = rte_eth_rx_burst(port.port_id, port.queue, next->rx, burst_size);
    finish_burst(*cur, true);
    if (n == 0) return received;
    received += n;
    begin_burst(*next, gen, port_index, next->rx, n, now_ms);
    run_stages(*next, false);
    std::swap(cur, next);
  }
  finish_burst(*cur, true);
  return received;
}

void worker::send_resets(const generation& gen, const service_entry& s, const flow_entry& e) {
  if (options_.reset_pool == nullptr || ports_.empty()) return;
  port_state& port = ports_[0];
  rte_mbuf* out[2];
  uint16_t nout = 0;
  const flow_key key = gen.full_key(flows_.key_of(e));
  if (rte_mbuf* c = build_client_reset(options_.reset_pool, key, e, port.port.mac, port.peer_mac,
                                       port.peer_has_vlan ? port.peer_vlan : -1))
    out[nout++] = c;
  const backend_info* b = backend_at(gen, e.backend_id);
  parsed_packet pp;
  if (b != nullptr) {
    if (rte_mbuf* r = build_backend_reset(options_.reset_pool, key, e, pp)) {
      if (forward_packet(s.mode, r, pp, *b, gen.settings, port.port.mac,
                         flow_table::hash_of(e)) == drop_reason::none)
        out[nout++] = r;
      else
        rte_pktmbuf_free(r);
    }
  }
  const uint16_t sent = rte_eth_tx_burst(port.port.port_id, port.port.queue, out, nout);
  bump(counters_->tx_packets, sent);
  for (uint16_t i = sent; i < nout; ++i) drop(out[i], drop_reason::tx_full);
}

// Resets both ends of a draining flow, then keeps its entry as `closed` (out of the flush, with
// the short closing timeout): whatever the ends still send (a challenge ACK, a retransmission)
// goes to the old backend, which answers with its own reset, instead of being picked up as a
// new flow on the active colour.
void worker::reset_flow(const generation& gen, const service_entry& s, flow_entry& e,
                        uint32_t now_ms) {
  send_resets(gen, s, e);
  bump(counters_->drain_resets);
  e.state = tcp_state::closed;
  e.generation = s.flush[static_cast<size_t>(e.flow_colour)].before_generation;
  e.last_seen_ms = now_ms;
}

void worker::scan(const generation& gen, uint32_t now_ms) {
  // Time-based: every slot once per sweep_ms, not scan_budget slots per loop (which read several
  // entry lines per packet on a busy worker and swept a 1 M table five times a second).
  uint32_t budget = options_.scan_budget;
  const bool flushing = static_cast<int32_t>(now_ms - flush_from_ms_) >= 0 &&
                        static_cast<int32_t>(now_ms - flush_until_ms_) < 0;
  if (likely(!flushing)) {
    const uint32_t elapsed = now_ms - last_scan_ms_;
    if (elapsed != 0) {
      last_scan_ms_ = now_ms;
      const uint64_t cap = flows_.capacity();
      const uint64_t sweep = options_.sweep_ms == 0 ? 1 : options_.sweep_ms;
      scan_credit_ += (cap * std::min<uint64_t>(elapsed, sweep) + sweep - 1) / sweep;
      if (scan_credit_ > cap) scan_credit_ = cap;
    }
    if (scan_credit_ == 0) return;
    if (scan_credit_ < budget) budget = static_cast<uint32_t>(scan_credit_);
    scan_credit_ -= budget;
  }
  flows_.scan_step(budget, [&](flow_entry& e) {
    if (flows_.expired(e, now_ms)) {
      ++scan_expired_;
      end_flow(e);
      return true;
    }
    const service_entry* s = gen.service_by_id(e.service_id);
    if (s == nullptr) {
      // Its service was removed: nothing can reach this flow any more.
      ++scan_expired_;
      end_flow(e);
      return true;
    }
    if (flush_due(*s, e, now_ms)) {
      if (s->flush[static_cast<size_t>(e.flow_colour)].action == drain_action::reset &&
          e.state != tcp_state::udp) {
        reset_flow(gen, *s, e, now_ms);
        return false;
      }
      bump(counters_->drain_expired);
      end_flow(e);
      return true;
    }
    return false;
  });
  // Keep the table's own counters visible to the control thread.
  const flow_table_stats& st = flows_.stats();
  __atomic_store_n(&counters_->evictions, st.evictions, __ATOMIC_RELAXED);
  __atomic_store_n(&counters_->failed_inserts, st.failed_inserts, __ATOMIC_RELAXED);
  // Expired entries leave through the scanner or are reused by an insert.
  __atomic_store_n(&counters_->expired, scan_expired_ + st.expired, __ATOMIC_RELAXED);
}

}  // namespace tandem
