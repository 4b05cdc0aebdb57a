// The HTTP/1.1 transport of mlops::Server on Boost.Beast/Asio: keep-alive connections, limits, timeouts,
// signals and draining. Requests are answered by handle_call (routes.cc).
#include <csignal>
#include <list>
#include <optional>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/text.hpp"
#include "mlops/error.hpp"
#include "mlops/serve.hpp"
#include "serve/routes.hpp"

namespace mlops {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using detail::HttpReply;

namespace {
constexpr std::size_t kFirstRead = 8192;
}

struct Session;

struct Server::Impl {
  detail::ServeState state;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  net::strand<net::io_context::executor_type> control{net::make_strand(ioc)};
  net::steady_timer drain_timer{control};
  std::optional<net::signal_set> signals;
  std::atomic<bool> draining{false};
  std::atomic<bool> running{false};
  std::vector<std::thread> threads;
  std::mutex sessions_mu;
  std::list<std::weak_ptr<Session>> sessions;
  std::mutex workers_mu;
  std::vector<std::thread> workers;  // release loads off the I/O threads

  void accept();
  void drain();
  void wait_signal();
  void background(std::function<void()> fn) {
    std::lock_guard lock(workers_mu);
    workers.emplace_back(std::move(fn));
  }
  void join_workers() {
    std::vector<std::thread> w;
    {
      std::lock_guard lock(workers_mu);
      w.swap(workers);
    }
    for (auto& t : w) t.join();
  }
  void session_closed();
};

// One client connection: read a request (bounded in size and time), answer it, repeat while keep-alive.
struct Session : std::enable_shared_from_this<Session> {
  Session(tcp::socket socket, Server::Impl& owner) : stream(std::move(socket)), impl(owner) {}
  ~Session() { impl.session_closed(); }

  beast::tcp_stream stream;
  Server::Impl& impl;
  beast::flat_buffer buffer;
  std::optional<http::request_parser<http::string_body>> parser;
  http::response<http::string_body> response;
  bool idle = false;
  bool closed = false;

  void start(bool over_limit) {
    if (over_limit) {
      reply(detail::error_reply(503, "mlops.config", "too_many_connections",
                                "the server has " + std::to_string(impl.state.options.max_connections) +
                                    " connections open; retry later"),
            11, false);
      return;
    }
    wait();
  }

  // Idle between requests: closed after idle_timeout, or at once when the server drains.
  void wait() {
    if (impl.draining) return close();
    if (buffer.size() > 0) return read();
    idle = true;
    stream.expires_after(impl.state.options.idle_timeout);
    stream.async_read_some(buffer.prepare(kFirstRead), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->idle = false;
      if (ec) return self->close();
      self->buffer.commit(n);
      self->read();
    });
  }

  // A request has started: all of it must arrive within read_timeout.
  void read() {
    parser.emplace();
    parser->body_limit(impl.state.options.max_body_bytes);
    parser->header_limit(static_cast<std::uint32_t>(impl.state.options.max_header_bytes));
    stream.expires_after(impl.state.options.read_timeout);
    http::async_read(stream, buffer, *parser, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    const auto& o = impl.state.options;
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset || ec == net::error::eof)
      return close();
    if (ec == http::error::body_limit)
      return reply(detail::error_reply(413, "mlops.data", "body_too_large",
                                       "the body is over the limit of " + std::to_string(o.max_body_bytes) + " bytes"),
                   11, false);
    if (ec == http::error::header_limit)
      return reply(detail::error_reply(431, "mlops.data", "header_too_large",
                                       "the request head is over the limit of " + std::to_string(o.max_header_bytes) +
                                           " bytes"),
                   11, false);
    if (ec)
      return reply(detail::error_reply(400, "mlops.data", "malformed_http", "malformed HTTP request: " + ec.message()),
                   11, false);
    auto req = parser->release();
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    stream.expires_never();
    auto header = [&](http::field f) {
      auto it = req.find(f);
      return it == req.end() ? std::string_view() : std::string_view(it->value().data(), it->value().size());
    };
    detail::HttpCall call{std::string_view(req.method_string().data(), req.method_string().size()),
                          std::string_view(req.target().data(), req.target().size()), header(http::field::content_type),
                          header(http::field::authorization), req.body()};
    if (detail::is_admin_call(call)) {
      // Loading a release may take seconds: off the I/O threads; the answer comes back on this strand.
      auto guard = net::make_work_guard(impl.ioc);
      auto owned = std::make_shared<http::request<http::string_body>>(std::move(req));
      impl.background([self = shared_from_this(), owned, guard, version, keep_alive]() mutable {
        auto& r = *owned;
        detail::HttpCall c{std::string_view(r.method_string().data(), r.method_string().size()),
                           std::string_view(r.target().data(), r.target().size()), {}, {}, r.body()};
        if (auto it = r.find(http::field::content_type); it != r.end())
          c.content_type = std::string_view(it->value().data(), it->value().size());
        if (auto it = r.find(http::field::authorization); it != r.end())
          c.authorization = std::string_view(it->value().data(), it->value().size());
        auto rep = detail::handle_call(c, self->impl.state);
        net::post(self->stream.get_executor(), [self, rep = std::move(rep), version, keep_alive]() mutable {
          self->reply(std::move(rep), version, keep_alive);
        });
        guard.reset();
      });
      return;
    }
    reply(detail::handle_call(call, impl.state), version, keep_alive);
  }

  void reply(HttpReply rep, unsigned version, bool keep_alive) {
    response = {};
    response.version(version);
    response.result(static_cast<unsigned>(rep.status));
    response.set(http::field::server, "mlops");
    response.set(http::field::content_type, rep.content_type);
    if (!rep.release.empty()) response.set("X-Mlops-Release", rep.release);
    response.body() = std::move(rep.body);
    response.keep_alive(keep_alive && !impl.draining);
    response.prepare_payload();
    stream.expires_after(impl.state.options.read_timeout);
    http::async_write(stream, response, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec || !self->response.keep_alive()) return self->close();
      self->wait();
    });
  }

  void close() {
    if (closed) return;
    closed = true;
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
  }

  // Called on this session's strand when the server drains: an idle connection closes now; one in the
  // middle of a request finishes it and answers with Connection: close.
  void on_drain() {
    if (idle) {
      beast::error_code ec;
      stream.socket().cancel(ec);
      close();
    }
  }
};

void Server::Impl::session_closed() {
  if (--state.connections == 0 && draining) net::post(control, [this] { drain_timer.cancel(); });
}

void Server::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || draining) return;
      // Out of descriptors and the like: try again (the client saw a reset).
      return accept();
    }
    if (draining) return;
    const bool over = state.connections.fetch_add(1) >= state.options.max_connections;
    auto s = std::make_shared<Session>(std::move(socket), *this);
    {
      std::lock_guard lock(sessions_mu);
      sessions.remove_if([](const std::weak_ptr<Session>& w) { return w.expired(); });
      sessions.push_back(s);
    }
    net::dispatch(s->stream.get_executor(), [s, over] { s->start(over); });
    accept();
  });
}

void Server::Impl::drain() {
  if (draining.exchange(true)) return;
  net::post(control, [this] {
    beast::error_code ec;
    acceptor.close(ec);
    if (signals) signals->cancel(ec);
    if (state.connections.load() > 0) {
      drain_timer.expires_after(state.options.drain_timeout);
      drain_timer.async_wait([this](beast::error_code e) {
        if (!e) ioc.stop();  // requests still running past the drain timeout are cut off
      });
    }
  });
  std::lock_guard lock(sessions_mu);
  for (auto& w : sessions)
    if (auto s = w.lock()) net::post(s->stream.get_executor(), [s] { s->on_drain(); });
}

void Server::Impl::wait_signal() {
  signals->async_wait([this](beast::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      auto guard = net::make_work_guard(ioc);
      background([this, guard]() mutable {
        try {
          (void)state.switch_to(state.initial);
          state.metrics.release_switch(true);
        } catch (const std::exception&) {
          state.metrics.release_switch(false);  // the old release keeps serving
        }
        guard.reset();
      });
      return wait_signal();
    }
    drain();
  });
}

Server::Server(const std::string& release, ServerOptions options, ReleaseResolver resolver)
    : impl_(std::make_unique<Impl>()) {
  auto& st = impl_->state;
  st.options = std::move(options);
  st.resolver = std::move(resolver);
  st.initial = release;
  st.current = Release::load(st.resolver ? st.resolver(release) : std::filesystem::path(release));
  beast::error_code ec;
  const auto addr = net::ip::make_address(st.options.host, ec);
  if (ec) throw ConfigError("server host " + detail::quote_for_message(st.options.host) + " is not an IP address");
  tcp::endpoint ep(addr, st.options.port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw ConfigError("cannot listen on " + st.options.host + ":" + std::to_string(st.options.port) + ": " + ec.message());
}

Server::~Server() {
  try {
    stop();
  } catch (...) {
  }
}

std::uint16_t Server::port() const noexcept {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

std::shared_ptr<const Release> Server::release() const { return impl_->state.release(); }

void Server::start() {
  if (impl_->running.exchange(true)) throw ConfigError("server already started");
  impl_->accept();
  unsigned n = impl_->state.options.threads ? impl_->state.options.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < n; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

void Server::run() {
  if (impl_->running.exchange(true)) throw ConfigError("server already started");
  impl_->signals.emplace(impl_->control, SIGTERM, SIGINT, SIGHUP);
  impl_->wait_signal();
  impl_->accept();
  unsigned n = impl_->state.options.threads ? impl_->state.options.threads : std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 1; i < n; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->join_workers();
}

void Server::stop() {
  if (!impl_->running) return;
  impl_->drain();
  for (auto& t : impl_->threads)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  impl_->threads.clear();
  impl_->join_workers();
}

std::shared_ptr<const Release> Server::switch_to(const std::string& release) {
  try {
    auto r = impl_->state.switch_to(release);
    impl_->state.metrics.release_switch(true);
    return r;
  } catch (...) {
    impl_->state.metrics.release_switch(false);
    throw;
  }
}

std::shared_ptr<const Release> Server::reload() { return switch_to(impl_->state.initial); }

std::string Server::metrics_text() const {
  auto rel = impl_->state.release();
  return impl_->state.metrics.text(rel->md5(), impl_->state.options.image.empty() ? rel->image() : impl_->state.options.image,
                                   rel->models().size(), impl_->state.connections.load());
}

}  // namespace mlops
