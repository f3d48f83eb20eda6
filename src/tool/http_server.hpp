// SPDX-License-Identifier: Apache-2.0
/// @file http_server.hpp
/// @brief The smallest HTTP/1.x server that serves a metrics page: IPv4, one connection at a
///        time, GET and HEAD only, requests of at most 8 KiB read within 5 s, answers with
///        "Connection: close". Enough for a Prometheus scraper; nothing else is meant to use it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace softmig::tool {

struct ListenAddress {
  std::string host;        ///< dotted IPv4 address
  std::uint16_t port = 0;  ///< 0: an ephemeral port
};

/// Parses "ADDR:PORT" ("localhost" means 127.0.0.1). Throws ToolError (exit 2) if malformed.
ListenAddress parse_listen_address(std::string_view text);

/// True for 127.0.0.0/8.
bool is_loopback(const ListenAddress& a);

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

/// Answers one request line's method and path (query string removed).
using HttpHandler = std::function<HttpResponse(std::string_view method, std::string_view path)>;

class HttpServer {
 public:
  /// Binds and listens. Throws ToolError (exit 1) if the address cannot be used.
  explicit HttpServer(const ListenAddress& address);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// The port actually bound (the ephemeral one if 0 was asked for).
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

  /// Serves connections one at a time until `stop()` returns true (checked every 200 ms) or,
  /// if max_requests > 0, that many requests have been answered.
  void serve(const HttpHandler& handler, unsigned max_requests, const std::function<bool()>& stop);

 private:
  void answer(int fd, const HttpHandler& handler);
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace softmig::tool
