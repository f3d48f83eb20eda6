// SPDX-License-Identifier: Apache-2.0
/// @file cmd_metrics.cpp
/// @brief `softmig metrics`: the node's slices in Prometheus text format, on stdout, as a
///        node_exporter textfile (--textfile DIR), or served over HTTP (--listen ADDR:PORT).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "tool/atomic_file.hpp"
#include "tool/command.hpp"
#include "tool/http_server.hpp"
#include "tool/metrics_format.hpp"
#include "tool/snapshot_source.hpp"
#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

constexpr const char* kDefaultListen = "127.0.0.1:9842";
constexpr const char* kTextfileName = "softmig.prom";

struct MetricsArgs {
  SnapshotSource source;
  std::string textfile_dir;
  std::vector<std::string> listen;
  CLI::Option* listen_opt = nullptr;
  unsigned max_requests = 0;
};

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

int serve(const MetricsArgs& a) {
  const ListenAddress address = parse_listen_address(a.listen.empty() || a.listen.front().empty() ? kDefaultListen
                                                                                                   : a.listen.front());
  if (!is_loopback(address)) {
    fmt::print(stderr,
               "softmig: warning: serving on {} exposes job ids and user names to the network; prefer a loopback "
               "address behind your scraper or a firewall\n",
               address.host);
  }
  HttpServer server(address);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  fmt::print("softmig metrics: listening on http://{}:{}/metrics\n", address.host, server.port());
  std::fflush(stdout);
  server.serve(
      [&](std::string_view, std::string_view path) -> HttpResponse {
        if (path == "/metrics") return {200, std::string(kPrometheusContentType), format_prometheus(a.source.take())};
        if (path == "/") return {200, "text/plain; charset=utf-8", "softmig metrics exporter: see /metrics\n"};
        return {404, "text/plain; charset=utf-8", "not found; the metrics are at /metrics\n"};
      },
      a.max_requests, [] { return g_stop != 0; });
  return kExitOk;
}

int metrics(const MetricsArgs& a) {
  const bool listen = a.listen_opt->count() != 0;
  if (listen && !a.textfile_dir.empty()) {
    throw ToolError(kExitUsage, "metrics: give either --textfile or --listen, not both");
  }
  if (listen) return serve(a);
  const std::string text = format_prometheus(a.source.take());
  if (a.textfile_dir.empty()) {
    fmt::print("{}", text);
    return kExitOk;
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(a.textfile_dir, ec)) {
    throw ToolError(kExitFailure, fmt::format("--textfile {}: no such directory", a.textfile_dir));
  }
  // node_exporter reads *.prom files; the temporary file starts with '.' and is renamed into place.
  write_file_atomically(fmt::format("{}/{}", a.textfile_dir, kTextfileName), text, 0644);
  return kExitOk;
}

}  // namespace

Command add_metrics_command(CLI::App& parent) {
  auto args = std::make_shared<MetricsArgs>();
  CLI::App* app = parent.add_subcommand("metrics", "Export the node's slices as Prometheus metrics");
  app->add_option("--textfile", args->textfile_dir,
                  "Write DIR/softmig.prom atomically for node_exporter's textfile collector, then exit")
      ->type_name("DIR");
  args->listen_opt = app->add_option("--listen", args->listen,
                                     fmt::format("Serve http://ADDR:PORT/metrics until Ctrl-C or SIGTERM "
                                                 "(default address {}; port 0 picks a free one)",
                                                 kDefaultListen))
                         ->type_name("ADDR:PORT")
                         ->expected(0, 1);
  app->add_option("--max-requests", args->max_requests, "With --listen: exit after N requests (0 = never)")
      ->type_name("N");
  args->source.add_flags(*app);
  app->footer(
      "Without --textfile or --listen the metrics are printed on stdout.\n"
      "\n"
      "Families (labels job, gpu, user; softmig_process_memory_bytes adds pid and process_user):\n"
      "  softmig_memory_limit_bytes    gauge   memory limit (absent: no limit)\n"
      "  softmig_memory_used_bytes     gauge   bytes the job holds (allocations + driver overhead)\n"
      "  softmig_memory_peak_bytes     gauge   highest use\n"
      "  softmig_oom_refusals_total    counter allocations refused at the limit\n"
      "  softmig_sm_limit_percent      gauge   compute share (absent: unknown)\n"
      "  softmig_compute_throttled_seconds_total  counter  thread-time launches were held back by\n"
      "                                the compute share (absent: no share and never held)\n"
      "  softmig_process_memory_bytes  gauge   per live process\n"
      "  softmig_ledgers, softmig_ledger_errors  gauges: ledgers read / found but unreadable\n"
      "The delivered compute share is not exported: the library does not measure it yet.\n"
      "\n"
      "The HTTP server binds 127.0.0.1:9842 by default, answers one request at a time (GET/HEAD,\n"
      "requests up to 8 KiB, 5 s I/O timeouts) and needs no privileges beyond reading ledgers:\n"
      "run it as root to export every job.\n"
      "Examples:\n"
      "  softmig metrics --textfile /var/lib/prometheus/node-exporter   # from cron or a timer\n"
      "  softmig metrics --listen                                        # 127.0.0.1:9842\n"
      "  softmig metrics --listen 127.0.0.1:9900");
  return {app, [args] { return metrics(*args); }};
}

}  // namespace softmig::tool
