// SPDX-License-Identifier: Apache-2.0
#include "tool/http_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "tool/tool_error.hpp"

namespace softmig::tool {
namespace {

constexpr std::size_t kMaxRequestBytes = 8192;
constexpr int kIoTimeoutSeconds = 5;

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    default: return "Internal Server Error";
  }
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;  // the client went away or timed out: nothing more to do for it
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

ListenAddress parse_listen_address(std::string_view text) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    throw ToolError(kExitUsage, fmt::format("--listen '{}': expected ADDR:PORT, e.g. 127.0.0.1:9842", text));
  }
  ListenAddress a;
  a.host = std::string(text.substr(0, colon));
  if (a.host == "localhost" || a.host.empty()) a.host = "127.0.0.1";
  const std::string_view port = text.substr(colon + 1);
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  in_addr probe{};
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    throw ToolError(kExitUsage, fmt::format("--listen '{}': the port must be a number from 0 to 65535", text));
  }
  if (inet_pton(AF_INET, a.host.c_str(), &probe) != 1) {
    throw ToolError(kExitUsage, fmt::format("--listen '{}': '{}' is not an IPv4 address", text, a.host));
  }
  a.port = static_cast<std::uint16_t>(value);
  return a;
}

bool is_loopback(const ListenAddress& a) {
  in_addr addr{};
  return inet_pton(AF_INET, a.host.c_str(), &addr) == 1 && (ntohl(addr.s_addr) >> 24U) == 127U;
}

HttpServer::HttpServer(const ListenAddress& address) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw ToolError(kExitFailure, fmt::format("cannot create a socket: {}", std::strerror(errno)));
  const int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(address.port);
  inet_pton(AF_INET, address.host.c_str(), &sa.sin_addr);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd_, 16) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw ToolError(kExitFailure, fmt::format("cannot listen on {}:{}: {}", address.host, address.port, std::strerror(err)));
  }
  socklen_t len = sizeof sa;
  getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  port_ = ntohs(sa.sin_port);
}

HttpServer::~HttpServer() {
  if (fd_ >= 0) ::close(fd_);
}

void HttpServer::serve(const HttpHandler& handler, unsigned max_requests, const std::function<bool()>& stop) {
  unsigned served = 0;
  while (!stop() && (max_requests == 0 || served < max_requests)) {
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, 200);
    if (rc <= 0) continue;  // timeout, or EINTR from a signal: check stop()
    const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    const timeval tv{kIoTimeoutSeconds, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    answer(client, handler);
    ::close(client);
    ++served;
  }
}

void HttpServer::answer(int fd, const HttpHandler& handler) {
  std::string request;
  char buf[1024];
  while (request.find("\r\n\r\n") == std::string::npos && request.find("\n\n") == std::string::npos) {
    if (request.size() >= kMaxRequestBytes) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request.append(buf, static_cast<std::size_t>(n));
  }
  HttpResponse r;
  std::string method;
  const auto line_end = request.find_first_of("\r\n");
  const std::string_view line = std::string_view(request).substr(0, line_end);
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (line_end == std::string::npos || sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0) {
    r = {request.size() >= kMaxRequestBytes ? 431 : 400, "text/plain; charset=utf-8", "bad request\n"};
  } else {
    method = std::string(line.substr(0, sp1));
    std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
    if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
    if (method != "GET" && method != "HEAD") {
      r = {405, "text/plain; charset=utf-8", "only GET and HEAD\n"};
    } else {
      try {
        r = handler(method, path);
      } catch (const std::exception& e) {
        r = {500, "text/plain; charset=utf-8", fmt::format("error: {}\n", e.what())};
      }
    }
  }
  std::string head = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n", r.status,
      reason(r.status), r.content_type, r.body.size(), r.status == 405 ? "Allow: GET, HEAD\r\n" : "");
  send_all(fd, head);
  if (method != "HEAD") send_all(fd, r.body);
  ::shutdown(fd, SHUT_WR);
}

}  // namespace softmig::tool
