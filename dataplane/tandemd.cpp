// tandemd: the daemon. `tandemd [EAL options] -- --config FILE [options]`.
// The main lcore runs the control thread (Unix-socket server, drain bookkeeping); every other
// lcore runs one poll-mode worker.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <spdlog/spdlog.h>

#include <boost/program_options.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "control/config.h"
#include "control/control_server.h"
#include "control/controller.h"
#include "control/health_checker.h"
#include "control/hooks.h"
#include "control/metrics.h"
#include "dataplane/clock.h"
#include "dataplane/generation_publisher.h"
#include "dataplane/port_setup.h"
#include "dataplane/worker.h"

namespace {

std::atomic<bool> stop_requested{false};

void on_signal(int) { stop_requested = true; }

struct options {
  std::string config_path;
  std::string socket_override;
  std::string log_level = "info";
  size_t flow_table_size = 0;  // 0 = from the config
};

// Returns 0 to continue, or an exit code (help: 0 via `done`).
int parse_options(const std::vector<std::string>& args, options& o, bool& done) {
  namespace po = boost::program_options;
  po::options_description desc(
      "Usage: tandemd [EAL options] -- --config FILE [options]\n\n"
      "tandem's dataplane daemon: blue/green L4 load balancing on DPDK ports.\n"
      "The EAL options choose cores (-l: the first is the control thread, every other one runs a\n"
      "worker) and devices (-a PCI, --vdev net_ring0, ...). Without EAL options the config's\n"
      "dataplane.eal list is used.\n\nOptions");
  desc.add_options()("help,h", "show this help")(
      "config,c", po::value(&o.config_path)->required(), "YAML configuration file (required)")(
      "socket", po::value(&o.socket_override), "control socket path (overrides control.socket)")(
      "flow-table-size", po::value(&o.flow_table_size),
      "flow-table entries per worker (overrides dataplane.flow_table_size)")(
      "log-level", po::value(&o.log_level)->default_value("info"),
      "trace, debug, info, warn, error");
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(args).options(desc).run(), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      done = true;
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "tandemd: " << e.what() << "\n\n" << desc << "\n";
    return 2;
  }
  return 0;
}

int worker_main(void* arg) {
  static_cast<tandem::worker*>(arg)->run(stop_requested);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tandem;
  // Split "EAL options -- tandemd options" ourselves: the config may supply the EAL options.
  std::vector<std::string> eal_args{argv[0]}, own_args;
  bool after = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (!after && a == "--") {
      after = true;
      continue;
    }
    (after ? own_args : eal_args).push_back(a);
  }
  if (!after) {  // no "--": everything is ours (e.g. `tandemd --config x` with EAL in config)
    own_args.assign(eal_args.begin() + 1, eal_args.end());
    eal_args.resize(1);
  }
  options opt;
  bool done = false;
  if (int rc = parse_options(own_args, opt, done); rc != 0 || done) return rc;
  spdlog::set_level(spdlog::level::from_str(opt.log_level));

  auto cfg = config::load_config(opt.config_path);
  if (!cfg) {
    std::cerr << cfg.error_message() << "\n";
    return 1;
  }
  const config::daemon_config file_config = *cfg;
  if (!opt.socket_override.empty()) cfg->socket.path = opt.socket_override;
  if (opt.flow_table_size != 0) cfg->flow_table_size = opt.flow_table_size;
  if (eal_args.size() == 1)
    eal_args.insert(eal_args.end(), cfg->eal_args.begin(), cfg->eal_args.end());

  std::vector<char*> eal_argv;
  for (auto& a : eal_args) eal_argv.push_back(a.data());
  if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
    std::cerr << "tandemd: EAL initialisation failed: " << rte_strerror(rte_errno) << "\n";
    return 1;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  if (rte_lcore_count() < 2) {
    std::cerr << "tandemd: needs at least two lcores (e.g. -l 0-1): one control, one worker\n";
    return 1;
  }
  const uint32_t workers = rte_lcore_count() - 1;
  const unsigned nb_mbufs = std::max(8191u, workers * 16 * (1024 + 1024 + 2 * burst_size));
  rte_mempool* pool = rte_pktmbuf_pool_create("tandem_mbufs", nb_mbufs, 256, 0,
                                              RTE_MBUF_DEFAULT_BUF_SIZE, static_cast<int>(rte_socket_id()));
  if (!pool) {
    std::cerr << "tandemd: cannot create the mbuf pool: " << rte_strerror(rte_errno) << "\n";
    return 1;
  }
  auto layout = setup_ports(cfg->ports, workers, pool);
  if (!layout) {
    std::cerr << "tandemd: " << layout.error_message() << "\n";
    return 1;
  }

  {  // Everything that holds DPDK memory must be gone before rte_eal_cleanup().
    ms_clock clock;
    generation_publisher publisher(workers);
    std::vector<std::unique_ptr<worker>> pool_of_workers;
    std::vector<worker*> worker_views;
    for (uint32_t w = 0; w < workers; ++w) {
      worker_options wo;
      wo.index = w;
      wo.ports = layout->per_worker[w];
      wo.flow_table_size = cfg->flow_table_size;
      wo.reset_pool = pool;
      pool_of_workers.push_back(std::make_unique<worker>(wo, publisher, clock));
      worker_views.push_back(pool_of_workers.back().get());
    }

    // Health checks, hooks and the metrics endpoint run on threads of their own; the control
    // thread only hands them work and takes results, never waiting on a backend or a scraper.
    health_checker checker;
    hook_runner hooks;
    metrics_exchange metrics;
    controller ctl(*cfg, publisher, worker_views, clock);
    ctl.set_startup_file_config(file_config);
    ctl.attach_hooks(&hooks);
    ctl.attach_metrics(&metrics);
    if (auto st = ctl.start(); !st) {
      std::cerr << "tandemd: " << st.error_message() << "\n";
      return 1;
    }
    ctl.attach_health_checker(&checker);
    std::vector<const worker*> metric_workers(worker_views.begin(), worker_views.end());
    metrics_server metrics_http(metrics, metric_workers, clock);
    if (cfg->metrics.enabled) {
      if (auto st = metrics_http.open(cfg->metrics.address, cfg->metrics.port); !st) {
        std::cerr << "tandemd: " << st.error_message() << "\n";
        return 1;
      }
    }
    checker.start();
    hooks.start();
    control_server server(ctl, cfg->socket);
    if (auto st = server.open(); !st) {
      std::cerr << "tandemd: " << st.error_message() << "\n";
      return 1;
    }

    uint32_t w = 0;
    unsigned lcore;
    RTE_LCORE_FOREACH_WORKER(lcore) {
      if (w >= workers) break;
      rte_eal_remote_launch(worker_main, pool_of_workers[w].get(), lcore);
      ++w;
    }
    spdlog::info("tandemd running: {} worker(s), {} port(s), {} service(s), control socket {}",
                 workers, layout->port_ids.size(), cfg->services.size(), cfg->socket.path);
    if (cfg->metrics.enabled) {
      metrics_http.start();
      spdlog::info("metrics: http://{}:{}/metrics",
                   cfg->metrics.address.is_v4() ? to_string(cfg->metrics.address)
                                                 : "[" + to_string(cfg->metrics.address) + "]",
                   metrics_http.port());
    }

    while (!stop_requested) {
      server.poll_once(100);
      ctl.tick();
    }
    spdlog::info("tandemd stopping");
    metrics_http.stop();  // it reads worker counters: stop it before the workers go
    checker.stop();
    hooks.wait_idle(2000);  // let a hook of the last events finish, briefly
    hooks.stop();
    rte_eal_mp_wait_lcore();
    server.close();
    stop_ports(*layout);
    pool_of_workers.clear();
  }
  rte_eal_cleanup();
  return 0;
}
