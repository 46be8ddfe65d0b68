// A small HTTP/1.1 server on Boost.Beast: bounded request size, read/write timeouts, keep-alive,
// and a handler called for every well-formed request. Malformed requests get a 400 and the
// connection is closed; the server itself never stops because of a client.
//
// Limits: at most `max_connections` open connections (one more is answered 503 and closed);
// a keep-alive connection idle for `idle_timeout_seconds` is closed; GET and HEAD may carry no
// body (400); HEAD answers as GET without the body. When accept fails for lack of descriptors
// (EMFILE, ENFILE) the server pauses accepting (100 ms, doubling to 1 s) instead of spinning.
// Requests for `fast_paths` are answered on the I/O threads; every other request runs on a
// separate pool of `handler_threads`, so a slow one never delays the fast ones.
//
// Thread safety: Start/Stop from one thread; the handler is called on the server's I/O threads
// and its handler pool (concurrently) and must be thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "common/result.h"

namespace runnel::service {

struct HttpRequest {
  std::string method;
  std::string path;                           // decoded, without the query
  std::map<std::string, std::string> params;  // decoded query parameters
  std::string authorization;                  // the Authorization header, if any
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // more header fields
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string listen = "127.0.0.1:9464";  // host:port; port 0 picks a free one
  int threads = 2;
  size_t max_header_bytes = 8 << 10;
  size_t max_body_bytes = 64 << 10;
  int timeout_seconds = 10;  // to read one request, or to write its response
  int idle_timeout_seconds = 5;
  size_t max_connections = 256;
  int handler_threads = 2;
  std::vector<std::string> fast_paths = {"/livez", "/healthz", "/readyz", "/metrics"};
};

// http_listen's ADDRESS:PORT: an IP address (v4 or v6), then the port (0..65535; 0 picks a free
// one) after the last ':'. The one parser of it, for the server and for `validate`.
struct ListenAddress {
  boost::asio::ip::address address;
  uint16_t port = 0;
};
Result<ListenAddress> ParseListenAddress(std::string_view listen);

// The answer a connection gets after sending `bytes` and closing its side: the server's
// parsing, limits and error statuses without a socket (for tests and fuzzing).
HttpResponse AnswerRequest(std::string_view bytes, const HttpServerOptions& options,
                           const HttpHandler& handler);

class HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();  // stops

  // The port it listens on (useful with port 0).
  int port() const;
  void Stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace runnel::service
