#include "service/http_server.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>

#include <fmt/format.h>
#include <simdjson.h>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <boost/url.hpp>

#include "common/logging.h"

namespace runnel::service {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

HttpResponse Route(const HttpHandler& handler, const http::request<http::string_body>& req) {
  HttpRequest r;
  r.method = std::string(req.method_string());
  auto target =
      boost::urls::parse_origin_form(std::string_view(req.target().data(), req.target().size()));
  if (!target) return {400, "text/plain; charset=utf-8", "bad request target\n"};
  r.path = target->path();
  for (const auto& p : target->params()) r.params[p.key] = p.has_value ? p.value : "";
  // Names and values the API echoes into JSON must be text: %-escapes may decode to anything.
  auto text = [](const std::string& s) { return simdjson::validate_utf8(s.data(), s.size()); };
  bool valid = text(r.path);
  for (const auto& [k, v] : r.params) valid = valid && text(k) && text(v);
  if (!valid) return {400, "text/plain; charset=utf-8", "bad request target: not UTF-8\n"};
  if (auto it = req.find(http::field::authorization); it != req.end()) {
    r.authorization = std::string(it->value());
  }
  return handler(r);
}

// What a connection gets for a request the parser ended with `ec`: an error status for a
// malformed or oversized request, else the handler's answer (500 if it throws).
HttpResponse Respond(const HttpHandler& handler, beast::error_code ec,
                     const http::request<http::string_body>& req) {
  if (ec) {
    return {ec == http::error::header_limit || ec == http::error::body_limit ? 431 : 400,
            "text/plain; charset=utf-8", fmt::format("bad request: {}\n", ec.message())};
  }
  const bool bodiless = req.method() == http::verb::get || req.method() == http::verb::head;
  if (bodiless && (!req.body().empty() || req.chunked())) {
    return {400, "text/plain; charset=utf-8", "bad request: GET and HEAD take no body\n"};
  }
  try {
    return Route(handler, req);
  } catch (const std::exception& e) {
    Logger("http")->error("handler threw: {}", e.what());
    return {500, "text/plain; charset=utf-8", "internal error\n"};
  }
}

void LimitParser(const HttpServerOptions& options, http::request_parser<http::string_body>* p) {
  p->header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
  p->body_limit(options.max_body_bytes);
}

// What every connection shares: the options, the handler, the pool for slow requests, and
// the count of open connections.
struct Shared {
  Shared(HttpServerOptions o, HttpHandler h)
      : options(std::move(o)),
        handler(std::move(h)),
        pool(static_cast<size_t>(std::max(1, options.handler_threads))) {}
  const HttpServerOptions options;
  const HttpHandler handler;
  asio::thread_pool pool;
  std::atomic<size_t> open{0};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Shared* shared) : stream_(std::move(socket)), shared_(shared) {
    ++shared_->open;
  }
  ~Session() { --shared_->open; }

  void Run() { Read(/*first=*/true); }

 private:
  void Read(bool first) {
    parser_.emplace();
    LimitParser(shared_->options, &*parser_);
    stream_.expires_after(std::chrono::seconds(first ? shared_->options.timeout_seconds
                                                     : shared_->options.idle_timeout_seconds));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return Close();
    }
    auto req = std::make_shared<http::request<http::string_body>>();
    if (!ec) *req = parser_->release();
    const bool keep_alive = !ec && req->keep_alive();
    const bool head = !ec && req->method() == http::verb::head;
    if (ec || IsFast(*req)) {
      return Write(Respond(shared_->handler, ec, *req), keep_alive, head);
    }
    // Off the I/O threads; the answer comes back to this connection's strand.
    asio::post(shared_->pool, [self = shared_from_this(), req, keep_alive, head] {
      HttpResponse out = Respond(self->shared_->handler, {}, *req);
      asio::post(self->stream_.get_executor(),
                 [self, out = std::move(out), keep_alive, head]() mutable {
                   self->Write(std::move(out), keep_alive, head);
                 });
    });
  }

  bool IsFast(const http::request<http::string_body>& req) const {
    const std::string_view target(req.target().data(), req.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    const auto& fast = shared_->options.fast_paths;
    return std::find(fast.begin(), fast.end(), path) != fast.end();
  }

  void Write(HttpResponse out, bool keep_alive, bool head) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(out.status), 11);
    res->set(http::field::server, "runnel");
    res->set(http::field::content_type, out.content_type);
    for (const auto& [name, value] : out.headers) res->set(name, value);
    res->keep_alive(keep_alive);
    if (head) {
      res->content_length(out.body.size());  // what GET would send, without the body
    } else {
      res->body() = std::move(out.body);
      res->prepare_payload();
    }
    stream_.expires_after(std::chrono::seconds(shared_->options.timeout_seconds));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep_alive](beast::error_code wec, size_t) {
                        if (wec || !keep_alive) return self->Close();
                        self->Read(/*first=*/false);
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{16 << 10};
  std::optional<http::request_parser<http::string_body>> parser_;
  Shared* const shared_;
};

// A connection over the cap: a 503 written without waiting (a new socket's send buffer is
// empty), then closed.
void Refuse(tcp::socket socket) {
  static const std::string kBusy = [] {
    constexpr std::string_view kBody = "too many connections: retry later\n";
    return fmt::format(
        "HTTP/1.1 503 Service Unavailable\r\nServer: runnel\r\nContent-Type: text/plain; "
        "charset=utf-8\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{}",
        kBody.size(), kBody);
  }();
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  socket.write_some(asio::buffer(kBusy.data(), kBusy.size()), ignored);
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(HttpServerOptions options, HttpHandler handler)
      : shared(std::move(options), std::move(handler)) {}
  Shared shared;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  asio::steady_timer pause{io};
  std::chrono::milliseconds backoff{0};
  std::vector<std::thread> threads;

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec == asio::error::no_descriptors || ec.value() == ENFILE || ec.value() == ENOBUFS ||
          ec.value() == ENOMEM) {
        // Out of descriptors: retrying at once would spin. Pause, longer while it lasts.
        backoff = std::min(std::chrono::milliseconds(1000),
                           std::max(std::chrono::milliseconds(100), backoff * 2));
        Logger("http")->warn("accept: {}; pausing accepts for {} ms", ec.message(),
                             backoff.count());
        pause.expires_after(backoff);
        pause.async_wait([this](beast::error_code wec) {
          if (wec != asio::error::operation_aborted) Accept();
        });
        return;
      }
      backoff = std::chrono::milliseconds(0);
      if (!ec) {
        if (shared.open.load() >= shared.options.max_connections) {
          Refuse(std::move(socket));
        } else {
          std::make_shared<Session>(std::move(socket), &shared)->Run();
        }
      }
      Accept();
    });
  }
};

Result<ListenAddress> ParseListenAddress(std::string_view listen) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Status::InvalidArgument(fmt::format("http_listen '{}': want ADDRESS:PORT", listen));
  }
  beast::error_code ec;
  ListenAddress out;
  out.address = asio::ip::make_address(listen.substr(0, colon), ec);
  if (ec) return Status::InvalidArgument(fmt::format("http_listen '{}': {}", listen, ec.message()));
  const std::string_view port = listen.substr(colon + 1);
  auto [end, pec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
  if (pec != std::errc() || end != port.data() + port.size()) {
    return Status::InvalidArgument(fmt::format("http_listen '{}': bad port", listen));
  }
  return out;
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                      HttpHandler handler) {
  ASSIGN_OR_RETURN(const ListenAddress listen, ParseListenAddress(options.listen));
  beast::error_code ec;
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  const tcp::endpoint endpoint(listen.address, listen.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::Unavailable(
        fmt::format("listen on {}: {}", impl->shared.options.listen, ec.message()));
  impl->Accept();
  for (int i = 0; i < std::max(1, impl->shared.options.threads); ++i) {
    impl->threads.emplace_back([raw = impl.get()] { raw->io.run(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

int HttpServer::port() const { return impl_->acceptor.local_endpoint().port(); }

void HttpServer::Stop() {
  if (impl_->threads.empty()) return;
  impl_->io.stop();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->shared.pool.join();  // requests in the pool finish; their answers are dropped
}

HttpResponse AnswerRequest(std::string_view bytes, const HttpServerOptions& options,
                           const HttpHandler& handler) {
  http::request_parser<http::string_body> parser;
  LimitParser(options, &parser);
  beast::error_code ec;
  while (!bytes.empty() && !ec && !parser.is_done()) {
    const size_t used = parser.put(asio::buffer(bytes.data(), bytes.size()), ec);
    if (ec == http::error::need_more) {
      ec = {};
      if (used == 0) break;  // the rest is an incomplete piece: the connection would wait
    }
    bytes.remove_prefix(used);
  }
  if (!ec && !parser.is_done()) parser.put_eof(ec);  // the client closed its side
  http::request<http::string_body> req;
  if (!ec) req = parser.release();
  return Respond(handler, ec, req);
}

}  // namespace runnel::service
