#include "service/http_server.h"

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

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServerOptions& options, const HttpHandler& handler)
      : stream_(std::move(socket)), options_(options), handler_(handler) {}

  void Run() { Read(); }

 private:
  void Read() {
    parser_.emplace();
    LimitParser(options_, &*parser_);
    stream_.expires_after(std::chrono::seconds(options_.timeout_seconds));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted) {
      return Close();
    }
    http::request<http::string_body> req;
    if (!ec) req = parser_->release();
    const bool keep_alive = !ec && req.keep_alive();
    HttpResponse out = Respond(handler_, ec, req);
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(out.status), 11);
    res->set(http::field::server, "runnel");
    res->set(http::field::content_type, out.content_type);
    res->keep_alive(keep_alive);
    res->body() = std::move(out.body);
    res->prepare_payload();
    stream_.expires_after(std::chrono::seconds(options_.timeout_seconds));
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res, keep_alive](beast::error_code wec, size_t) {
                        if (wec || !keep_alive) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{16 << 10};
  std::optional<http::request_parser<http::string_body>> parser_;
  const HttpServerOptions& options_;
  const HttpHandler& handler_;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::vector<std::thread> threads;

  void Accept() {
    acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) std::make_shared<Session>(std::move(socket), options, handler)->Run();
      Accept();
    });
  }
};

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                      HttpHandler handler) {
  const size_t colon = options.listen.rfind(':');
  if (colon == std::string::npos) {
    return Status::InvalidArgument(fmt::format("http_listen '{}': want host:port", options.listen));
  }
  beast::error_code ec;
  const auto address = asio::ip::make_address(options.listen.substr(0, colon), ec);
  if (ec)
    return Status::InvalidArgument(
        fmt::format("http_listen '{}': {}", options.listen, ec.message()));
  int port = 0;
  try {
    port = std::stoi(options.listen.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535) return Status::InvalidArgument("http_listen: bad port");
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->handler = std::move(handler);
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Status::Unavailable(fmt::format("listen on {}: {}", impl->options.listen, ec.message()));
  impl->Accept();
  for (int i = 0; i < std::max(1, impl->options.threads); ++i) {
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
