// A small HTTP/1.1 server on Boost.Beast: bounded request size, read/write timeouts, keep-alive,
// and a handler called for every well-formed request. Malformed requests get a 400 and the
// connection is closed; the server itself never stops because of a client.
//
// Thread safety: Start/Stop from one thread; the handler is called on the server's I/O threads
// (concurrently when there are several) and must be thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

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
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpServerOptions {
  std::string listen = "127.0.0.1:9464";  // host:port; port 0 picks a free one
  int threads = 2;
  size_t max_header_bytes = 8 << 10;
  size_t max_body_bytes = 64 << 10;
  int timeout_seconds = 10;
};

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
