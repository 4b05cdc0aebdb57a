// The HTTP/1.1 transport of mlops::Server on Boost.Beast/Asio: keep-alive connections, deadlines, limits,
// strict framing, signals and draining. Requests are answered by handle_call (routes.cc): cheap routes on
// the I/O threads, scoring on a worker pool, release switches on one release-loading thread.
#include <condition_variable>
#include <csignal>
#include <deque>
#include <list>
#include <optional>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
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
using detail::Refusal;
using detail::Route;

namespace {
using Clock = std::chrono::steady_clock;
constexpr std::size_t kFirstRead = 8192;
// Connections past max_connections (none idle to shed) that may still ask /ping, /health, /metrics.
constexpr std::size_t kEssentialReserve = 32;
// Admin switches waiting for the release-loading thread; more get 503.
constexpr std::size_t kPendingSwitches = 4;
const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

unsigned or_cores(unsigned n) { return n ? n : std::max(1u, std::thread::hardware_concurrency()); }

std::string_view trimmed(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool same_token(std::string_view a, std::string_view b) {
  return a.size() == b.size() && beast::iequals(beast::string_view(a.data(), a.size()), beast::string_view(b.data(), b.size()));
}

// RFC 9112 §6: a request with Transfer-Encoding must end in chunked (here: be exactly chunked) and must not
// also carry Content-Length; anything else could be framed differently by a proxy in front.
std::optional<std::string> framing_error(const http::request<http::string_body>& req) {
  const auto te = req.count(http::field::transfer_encoding);
  if (te == 0) return std::nullopt;
  if (req.count(http::field::content_length)) return "a request has both Content-Length and Transfer-Encoding";
  const auto v = trimmed(std::string_view(req[http::field::transfer_encoding].data(), req[http::field::transfer_encoding].size()));
  if (te > 1 || !same_token(v, "chunked"))
    return "Transfer-Encoding " + detail::quote_for_message(v) + " is not supported (only chunked)";
  return std::nullopt;
}

std::string_view field(const http::request<http::string_body>& req, http::field f) {
  auto it = req.find(f);
  return it == req.end() ? std::string_view() : std::string_view(it->value().data(), it->value().size());
}

detail::HttpCall call_of(const http::request<http::string_body>& req) {
  return {std::string_view(req.method_string().data(), req.method_string().size()),
          std::string_view(req.target().data(), req.target().size()), field(req, http::field::content_type),
          field(req, http::field::authorization), req.body()};
}

}  // namespace

namespace detail {

HttpReply answer_bytes(std::string_view raw, ServeState& state) {
  const auto& o = state.options;
  http::request_parser<http::string_body> p;
  p.eager(true);
  p.body_limit(o.max_body_bytes);
  p.header_limit(static_cast<std::uint32_t>(o.max_header_bytes));
  beast::error_code ec;
  bool head_checked = false;
  while (!p.is_done()) {
    const auto used = p.put(net::buffer(raw.data(), raw.size()), ec);
    raw.remove_prefix(used);
    if (ec == http::error::need_more && raw.empty()) ec = http::error::partial_message;
    if (ec == http::error::need_more) ec = {};
    if (ec == http::error::body_limit) return error_reply(413, "mlops.data", "body_too_large", "body over the limit");
    if (ec == http::error::header_limit) return error_reply(431, "mlops.data", "header_too_large", "head over the limit");
    if (ec == http::error::partial_message) return error_reply(408, "mlops.data", "request_timeout", "request cut short");
    if (ec) return error_reply(400, "mlops.data", "malformed_http", "malformed HTTP request: " + ec.message());
    if (p.is_header_done() && !head_checked) {
      head_checked = true;
      if (auto bad = framing_error(p.get())) return error_reply(400, "mlops.data", "malformed_http", *bad);
      auto head = call_of(p.get());
      head.body = {};
      if (auto early = check_head(head, state)) return *early;
    }
    if (used == 0 && !p.is_done()) return error_reply(408, "mlops.data", "request_timeout", "request cut short");
  }
  return handle_call(call_of(p.get()), state);
}

}  // namespace detail

// The one thread that loads releases. Admin switches queue (a few; more are refused); SIGHUP reloads
// coalesce: however many signals arrive while one waits, one reload runs.
class SwitchWorker {
 public:
  explicit SwitchWorker(std::function<void()> reload) : reload_(std::move(reload)), thread_([this] { loop(); }) {}
  ~SwitchWorker() { stop(); }
  bool submit(std::function<void()> job) {
    std::lock_guard lock(mu_);
    if (stopping_ || jobs_.size() >= kPendingSwitches) return false;
    jobs_.push_back(std::move(job));
    cv_.notify_one();
    return true;
  }
  void request_reload() {
    std::lock_guard lock(mu_);
    reload_pending_ = true;
    cv_.notify_one();
  }
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      bool reload = false;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || reload_pending_ || !jobs_.empty(); });
        if (stopping_) {
          jobs_.clear();  // their connections are closed by the drain
          return;
        }
        if (!jobs_.empty()) {
          job = std::move(jobs_.front());
          jobs_.pop_front();
        } else {
          reload = std::exchange(reload_pending_, false);
        }
      }
      if (job) job();
      if (reload) reload_();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool reload_pending_ = false, stopping_ = false;
  std::function<void()> reload_;
  std::thread thread_;
};

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
  std::optional<net::thread_pool> scoring;  // destroyed before the io_context its jobs answer on
  std::optional<SwitchWorker> switcher;

  void accept();
  void drain();
  void wait_signal();
  bool shed_idle();
  void session_closed();
  void join_all();
};

// One client connection: read a request (bounded in size and time), answer it, repeat while keep-alive.
struct Session : std::enable_shared_from_this<Session> {
  enum class Lane { Normal, Essential, Refused };
  Session(tcp::socket s, Server::Impl& owner, Lane l)
      : socket(std::move(s)), timer(socket.get_executor()), impl(owner), lane(l) {}
  ~Session() {
    set_idle(false);
    release_bytes();
    impl.session_closed();
  }

  tcp::socket socket;
  net::steady_timer timer;
  Server::Impl& impl;
  const Lane lane;
  beast::flat_buffer buffer;
  std::optional<http::request_parser<http::string_body>> parser;
  http::response<http::string_body> response;
  std::atomic<bool> idle{false}, shed{false};
  bool closed = false, timed_out = false, fresh = true, head_only = false;
  unsigned version = 11;
  unsigned deadline_id = 0;
  std::size_t reserved = 0;
  Clock::time_point started = Clock::now();

  const ServerOptions& options() const { return impl.state.options; }

  void start() {
    if (lane == Lane::Refused)
      return refuse(503, Refusal::TooManyConnections, "mlops.config", "too_many_connections",
                    "the server has " + std::to_string(options().max_connections) + " connections open; retry later");
    wait();
  }

  // Cancels the socket's operations after `d`; the handler that sees the cancellation finds timed_out set.
  void deadline(std::chrono::milliseconds d) {
    timed_out = false;
    const unsigned id = ++deadline_id;
    timer.expires_after(d);
    timer.async_wait([self = shared_from_this(), id](beast::error_code ec) {
      if (ec || self->closed || id != self->deadline_id) return;
      self->timed_out = true;
      beast::error_code e;
      self->socket.cancel(e);
    });
  }
  void no_deadline() {
    ++deadline_id;
    timer.cancel();
  }

  // Between requests: a new connection must begin within header_timeout, a kept-alive one within idle_timeout.
  void wait() {
    if (impl.draining || shed) return close();
    if (buffer.size() > 0) return read_head();
    set_idle(true);
    deadline(fresh ? options().header_timeout : options().idle_timeout);
    socket.async_read_some(buffer.prepare(kFirstRead), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
      self->set_idle(false);
      if (self->closed) return;
      if (ec || self->shed) {
        if (self->timed_out) self->impl.state.metrics.refused(Refusal::IdleTimeout);
        return self->close();
      }
      self->buffer.commit(n);
      self->read_head();
    });
  }

  // A request has begun: its head must arrive within header_timeout.
  void read_head() {
    fresh = false;
    started = Clock::now();
    parser.emplace();
    parser->body_limit(options().max_body_bytes);
    parser->header_limit(static_cast<std::uint32_t>(options().max_header_bytes));
    deadline(options().header_timeout);
    http::async_read_header(socket, buffer, *parser, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (!self->closed) self->on_head(ec);
    });
  }

  void on_head(beast::error_code ec) {
    if (ec) return read_failed(ec);
    const auto& req = parser->get();
    version = req.version() == 10 ? 10 : 11;
    head_only = req.method() == http::verb::head;
    if (auto bad = framing_error(req)) return refuse(400, Refusal::MalformedHttp, "mlops.data", "malformed_http", *bad);
    detail::HttpCall head = call_of(req);
    head.body = {};
    const auto route = detail::match_route(head.method, head.target);
    if (lane == Lane::Essential && !route.essential)
      return refuse(503, Refusal::TooManyConnections, "mlops.config", "too_many_connections",
                    "the server has " + std::to_string(options().max_connections) +
                        " connections open; only /ping, /health and /metrics are answered; retry later");
    if (auto early = detail::check_head(head, impl.state)) return finish(std::move(*early), parser->is_done());
    const std::size_t want = parser->content_length() ? static_cast<std::size_t>(*parser->content_length())
                                                      : (parser->chunked() ? options().max_body_bytes : 0);
    if (want > 0 && !reserve_bytes(want))
      return refuse(503, Refusal::Busy, "mlops.internal", "server_busy",
                    "the server is buffering too many request bodies; retry later");
    if (parser->is_done()) return on_body({});
    if (version == 11 && buffer.size() == 0 && same_token(trimmed(field(req, http::field::expect)), "100-continue")) {
      deadline(options().read_timeout);
      return net::async_write(socket, net::buffer(kContinue), [self = shared_from_this()](beast::error_code e, std::size_t) {
        if (self->closed) return;
        if (e) return self->close();
        self->read_body();
      });
    }
    read_body();
  }

  // The body must arrive whole within read_timeout.
  void read_body() {
    deadline(options().read_timeout);
    http::async_read(socket, buffer, *parser, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (!self->closed) self->on_body(ec);
    });
  }

  void read_failed(beast::error_code ec) {
    const auto& o = options();
    if (ec == http::error::body_limit)
      return refuse(413, Refusal::BodyTooLarge, "mlops.data", "body_too_large",
                    "the body is over the limit of " + std::to_string(o.max_body_bytes) + " bytes");
    if (ec == http::error::header_limit)
      return refuse(431, Refusal::HeaderTooLarge, "mlops.data", "header_too_large",
                    "the request head is over the limit of " + std::to_string(o.max_header_bytes) + " bytes");
    if (timed_out)
      return refuse(408, Refusal::RequestTimeout, "mlops.data", "request_timeout",
                    "the request did not arrive whole in time (head " + std::to_string(o.header_timeout.count()) +
                        " ms, body " + std::to_string(o.read_timeout.count()) + " ms)");
    if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == net::error::eof ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset)
      return close();  // the client went away
    refuse(400, Refusal::MalformedHttp, "mlops.data", "malformed_http", "malformed HTTP request: " + ec.message());
  }

  void on_body(beast::error_code ec) {
    if (ec) return read_failed(ec);
    no_deadline();
    auto req = std::make_shared<http::request<http::string_body>>(parser->release());
    const bool keep = req->keep_alive() && lane == Lane::Normal;
    const auto call = call_of(*req);
    const auto route = detail::match_route(call.method, call.target);
    if (route.work == detail::Work::Inline) return finish(detail::handle_call(call, impl.state), keep);
    // Off the I/O threads; the answer comes back on this connection's strand.
    auto job = [self = shared_from_this(), req, keep, guard = net::make_work_guard(impl.ioc)]() mutable {
      auto rep = detail::handle_call(call_of(*req), self->impl.state);
      net::post(self->socket.get_executor(), [self, rep = std::move(rep), keep]() mutable { self->finish(std::move(rep), keep); });
      guard.reset();
    };
    if (route.work == detail::Work::Scoring) return net::post(*impl.scoring, std::move(job));
    if (!impl.switcher->submit(std::move(job)))
      refuse(503, Refusal::Busy, "mlops.internal", "switch_busy", "release switches are queued already; retry later");
  }

  void refuse(int status, Refusal r, const std::string& id, const std::string& reason, const std::string& message) {
    impl.state.metrics.refused(r);
    finish(detail::error_reply(status, id, reason, message), false);
  }

  // Writes the answer (within read_timeout); records the request from its first byte to its last byte out.
  void finish(HttpReply rep, bool keep_alive) {
    response = {};
    response.version(version);
    response.result(static_cast<unsigned>(rep.status));
    response.set(http::field::server, "mlops");
    response.set(http::field::content_type, rep.content_type);
    if (!rep.release.empty()) response.set("X-Mlops-Release", rep.release);
    if (!rep.allow.empty()) response.set(http::field::allow, rep.allow);
    response.keep_alive(keep_alive && !impl.draining && !shed);
    if (head_only) {
      response.content_length(rep.body.size());  // what GET would send; no body follows (RFC 9110 §9.3.2)
    } else {
      response.body() = std::move(rep.body);
      response.prepare_payload();
    }
    deadline(options().read_timeout);
    http::async_write(socket, response, [self = shared_from_this(), route = rep.route, status = rep.status](
                                            beast::error_code ec, std::size_t) {
      self->no_deadline();
      self->impl.state.metrics.request(route, status, std::chrono::duration<double>(Clock::now() - self->started).count());
      self->release_bytes();
      if (ec && self->timed_out) self->impl.state.metrics.refused(Refusal::WriteTimeout);
      if (ec || !self->response.keep_alive()) return self->close();
      self->head_only = false;
      self->wait();
    });
  }

  bool reserve_bytes(std::size_t n) {
    const auto before = impl.state.buffered_bytes.fetch_add(n);
    if (before + n > options().max_buffered_bytes) {
      impl.state.buffered_bytes.fetch_sub(n);
      return false;
    }
    reserved = n;
    return true;
  }
  void set_idle(bool now) {
    if (idle.exchange(now) != now) {
      if (now) ++impl.state.idle_connections;
      else --impl.state.idle_connections;
    }
  }
  void release_bytes() { impl.state.buffered_bytes.fetch_sub(std::exchange(reserved, 0)); }

  void close() {
    if (closed) return;
    closed = true;
    no_deadline();
    beast::error_code ec;
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
  }

  // On this session's strand when the server drains or sheds it: an idle connection closes now; one in the
  // middle of a request finishes it and answers with Connection: close.
  void close_if_idle() {
    if (idle) close();
  }
};

void Server::Impl::session_closed() {
  if (--state.connections == 0 && draining) net::post(control, [this] { drain_timer.cancel(); });
}

// Makes room at the connection limit: the longest-open idle connection is closed (it had sent nothing, or
// waits between requests). False when none is idle.
bool Server::Impl::shed_idle() {
  std::lock_guard lock(sessions_mu);
  for (auto& w : sessions) {
    auto s = w.lock();
    if (!s || !s->idle || s->shed.exchange(true)) continue;
    state.metrics.refused(Refusal::Shed);
    net::post(s->socket.get_executor(), [s] { s->close_if_idle(); });
    return true;
  }
  return false;
}

void Server::Impl::accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || draining) return;
      // Out of descriptors and the like: try again (the client saw a reset).
      return accept();
    }
    if (draining) return;
    const std::size_t open = state.connections.fetch_add(1) + 1, max = state.options.max_connections;
    auto lane = Session::Lane::Normal;
    if (open > max && !shed_idle()) lane = open <= max + kEssentialReserve ? Session::Lane::Essential : Session::Lane::Refused;
    auto s = std::make_shared<Session>(std::move(socket), *this, lane);
    {
      std::lock_guard lock(sessions_mu);
      sessions.remove_if([](const std::weak_ptr<Session>& w) { return w.expired(); });
      sessions.push_back(s);
    }
    net::dispatch(s->socket.get_executor(), [s] { s->start(); });
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
    if (auto s = w.lock()) net::post(s->socket.get_executor(), [s] { s->close_if_idle(); });
}

void Server::Impl::wait_signal() {
  signals->async_wait([this](beast::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      switcher->request_reload();
      return wait_signal();
    }
    drain();
  });
}

void Server::Impl::join_all() {
  for (auto& t : threads)
    if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
  threads.clear();
  if (scoring) scoring->join();
  if (switcher) switcher->stop();
  if (state.shadow) state.shadow->stop();
}

Server::Server(const std::string& release, ServerOptions options, ReleaseResolver resolver)
    : impl_(std::make_unique<Impl>()) {
  auto& st = impl_->state;
  st.options = std::move(options);
  st.resolver = std::move(resolver);
  st.initial = release;
  st.current = Release::load(st.resolver ? st.resolver(release) : std::filesystem::path(release));
  st.shadow = std::make_unique<detail::Shadow>(st.options.shadow_queue);
  st.initial_shadow = st.options.shadow;
  if (!st.initial_shadow.empty()) st.shadow->set(st.load(st.initial_shadow), *st.current);
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
  impl_->scoring.emplace(or_cores(st.options.workers));
  impl_->switcher.emplace([&st] {
    try {
      (void)st.switch_to(st.initial);
      if (!st.initial_shadow.empty()) (void)st.switch_shadow(st.initial_shadow);
    } catch (const std::exception&) {
      // counted as a failed switch; the old release keeps serving
    }
  });
}

Server::~Server() {
  try {
    stop();
  } catch (...) {
  }
  impl_->join_all();
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
  const unsigned n = or_cores(impl_->state.options.threads);
  for (unsigned i = 0; i < n; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

void Server::run() {
  if (impl_->running.exchange(true)) throw ConfigError("server already started");
  impl_->signals.emplace(impl_->control, SIGTERM, SIGINT, SIGHUP);
  impl_->wait_signal();
  impl_->accept();
  const unsigned n = or_cores(impl_->state.options.threads);
  for (unsigned i = 1; i < n; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  impl_->join_all();
}

void Server::stop() {
  if (!impl_->running) return;
  impl_->drain();
  impl_->join_all();
}

std::shared_ptr<const Release> Server::switch_to(const std::string& release) { return impl_->state.switch_to(release); }

std::shared_ptr<const Release> Server::reload() {
  auto rel = switch_to(impl_->state.initial);
  if (!impl_->state.initial_shadow.empty()) (void)impl_->state.switch_shadow(impl_->state.initial_shadow);
  return rel;
}

std::shared_ptr<const Release> Server::switch_shadow(const std::string& release) {
  return impl_->state.switch_shadow(release);
}

std::shared_ptr<const Release> Server::shadow() const { return impl_->state.shadow->release(); }

std::string Server::metrics_text() const { return impl_->state.metrics_text(); }

}  // namespace mlops
