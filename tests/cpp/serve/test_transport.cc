// The server against hostile and careless clients: the admin route, connection limits, deadlines, framing.
#include <doctest/doctest.h>

#include <signal.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "mlops/error.hpp"
#include "mlops/serve.hpp"
#include "serve/routes.hpp"
#include "serve_fixture.hpp"

using nlohmann::json;
using serve_test::Client;
using serve_test::options;
using serve_test::releases;
using serve_test::sample;
using serve_test::texts;
using serve_test::wait_for_sample;

namespace {

const std::string kAuth = "Authorization: Bearer s3cret-token\r\n";

std::string metrics_of(std::uint16_t port) { return Client(port).request("GET", "/metrics").body; }

}  // namespace

TEST_CASE("the admin route checks the token before any work: wrong tokens start no thread and read no body") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  const double threads = sample(metrics_of(server.port()), "process_threads");
  REQUIRE(threads > 0);
  for (int i = 0; i < 300; ++i) {
    Client c(server.port());
    CHECK(c.post("/admin/release", json{{"release", r.b.string()}}, "Authorization: Bearer wrong\r\n").status == 401);
  }
  CHECK(sample(metrics_of(server.port()), "process_threads") == threads);
  // Refused from the head alone: a body announced but never sent is not waited for.
  Client c(server.port());
  c.send_raw("POST /admin/release HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n");
  auto early = c.read_reply();
  CHECK(early.status == 401);
  CHECK(early.json()["reason"] == "unauthorized");
  CHECK(c.closed_by_server());
  // The scheme is case-insensitive (RFC 6750).
  Client ok(server.port());
  auto rep = ok.post("/admin/release", json{{"release", r.b.string()}}, "Authorization: bearer s3cret-token\r\n");
  CHECK(rep.status == 200);
  CHECK(rep.json()["release"] == r.md5_b);
  server.stop();
}

TEST_CASE("a release whose weights are not the ones MLmodel records is refused with 422, the old one keeps serving") {
  const auto& r = releases();
  auto swapped = serve_test::temp_dir("swapped");
  serve_test::write_release(swapped, {{"acme", {5, serve_test::text_adapter("s", 7)}}});
  // Another model's weights under the same MLmodel (and the same release MD5).
  serve_test::text_adapter("evil", 9).save(swapped / "models" / "acme" / "model" / "adapter.safetensors");
  CHECK_THROWS_AS(mlops::Release::load(swapped), mlops::IntegrityError);

  mlops::Server server(r.a.string(), options());
  server.start();
  Client c(server.port());
  auto rep = c.post("/admin/release", json{{"release", swapped.string()}}, kAuth);
  CHECK(rep.status == 422);
  CHECK(rep.json()["reason"] == "integrity");
  CHECK(rep.json()["message"].get<std::string>().find("SHA-256") != std::string::npos);
  CHECK(c.request("GET", "/version").json()["release"] == r.md5_a);
  CHECK(c.post("/models/acme/invocations", texts({"refund"})).json()["predictions"][0].get<std::string>()[0] == 'a');
  CHECK(sample(c.request("GET", "/metrics").body, "mlops_release_switches_total{result=\"failed\"}") == 1);
  server.stop();
}

TEST_CASE("a resolver failure is a typed 4xx without its text, counted as a failed switch") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options(), [&](const std::string& name) -> std::filesystem::path {
    if (name == "b") return r.b;
    if (name == "a" || name == r.a.string()) return r.a;
    throw std::runtime_error("Traceback (most recent call last):\n  File \"/usr/lib/python3/site-packages/x.py\"");
  });
  server.start();
  Client c(server.port());
  auto rep = c.post("/admin/release", json{{"release", "nonesuch"}}, kAuth);
  CHECK(rep.status == 400);
  CHECK(rep.json()["error_id"] == "mlops.config");
  CHECK(rep.json()["message"].get<std::string>().find("nonesuch") != std::string::npos);
  CHECK(rep.body.find("Traceback") == std::string::npos);
  CHECK(rep.body.find("/usr/lib") == std::string::npos);
  CHECK(c.post("/admin/release", json{{"release", "b"}}, kAuth).status == 200);
  const auto m = c.request("GET", "/metrics").body;
  CHECK(sample(m, "mlops_release_switches_total{result=\"failed\"}") == 1);
  CHECK(sample(m, "mlops_release_switches_total{result=\"ok\"}") == 1);
  server.stop();
}

TEST_CASE("at the connection limit idle connections are shed first, and /health is answered") {
  const auto& r = releases();
  auto o = options();
  o.max_connections = 2;
  mlops::Server server(r.a.string(), o);
  server.start();
  // Two silent connections hold every slot: a new client still gets its answers.
  Client silent1(server.port()), silent2(server.port());
  REQUIRE(wait_for_sample(server, "mlops_connections_idle", 2));
  {
    Client fresh(server.port());
    CHECK(fresh.request("GET", "/health").status == 200);
    CHECK(fresh.post("/models/acme/invocations", texts({"refund"})).status == 200);
    CHECK(silent1.closed_by_server());  // the longest idle made room
  }
  REQUIRE(wait_for_sample(server, "mlops_connections", 1));

  // Two connections in the middle of a request (not idle) hold the slots: /health, /ping and /metrics are
  // still answered (then the connection closes); anything else gets 503.
  Client busy1(server.port());
  busy1.send_raw("GET /ping HTTP/1.1\r\n");
  Client busy2(server.port());
  busy2.send_raw("GET /ping HTTP/1.1\r\n");
  CHECK(silent2.closed_by_server());
  REQUIRE(wait_for_sample(server, "mlops_connections", 2));
  REQUIRE(wait_for_sample(server, "mlops_connections_idle", 0));
  Client health(server.port());
  auto h = health.request("GET", "/health");
  CHECK(h.status == 200);
  CHECK(h.headers["connection"] == "close");
  Client other(server.port());
  auto refused = other.request("GET", "/models");
  CHECK(refused.status == 503);
  CHECK(refused.json()["reason"] == "too_many_connections");
  const auto m = server.metrics_text();
  CHECK(sample(m, "mlops_http_refused_total{reason=\"shed\"}") == 2);
  CHECK(sample(m, "mlops_http_refused_total{reason=\"too_many_connections\"}") == 1);
  server.stop();
}

TEST_CASE("deadlines: a silent new connection is closed at the header deadline, a stalled request gets 408") {
  const auto& r = releases();
  auto o = options();
  o.header_timeout = std::chrono::milliseconds(300);
  o.idle_timeout = std::chrono::milliseconds(60000);
  mlops::Server server(r.a.string(), o);
  server.start();
  // The client gives up reading after 10 s, long before the 60 s idle timeout: a close seen here is the header
  // deadline's, and the server counts it.
  Client silent(server.port());
  CHECK(silent.closed_by_server());
  CHECK(wait_for_sample(server, "mlops_http_refused_total{reason=\"idle_timeout\"}", 1));

  // A kept-alive connection between requests waits for idle_timeout, not the header deadline.
  Client kept(server.port());
  CHECK(kept.request("GET", "/ping").status == 200);
  CHECK(kept.silent_for(700));
  CHECK(kept.request("GET", "/ping").status == 200);

  // A head that never ends (slowloris) and a body that never comes: 408, then close.
  Client slow_head(server.port());
  slow_head.send_raw("GET /ping HTTP/1.1\r\nHost: x\r\n");
  auto rep = slow_head.read_reply();
  CHECK(rep.status == 408);
  CHECK(rep.json()["reason"] == "request_timeout");
  CHECK(slow_head.closed_by_server());
  Client slow_body(server.port());
  slow_body.send_raw("POST /models/acme/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100\r\n\r\n{\"inst");
  CHECK(slow_body.read_reply().status == 408);
  CHECK(slow_body.closed_by_server());
  const auto m = metrics_of(server.port());
  CHECK(sample(m, "mlops_http_refused_total{reason=\"request_timeout\"}") == 2);
  CHECK(sample(m, "mlops_http_refused_total{reason=\"idle_timeout\"}") >= 1);
  CHECK(sample(m, "mlops_http_requests_total{route=\"other\",code=\"408\"}") == 2);
  server.stop();
}

TEST_CASE("strict framing (RFC 9112): a Transfer-Encoding other than chunked, or with Content-Length, is 400 and close") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  const std::string smuggled = "GET /version HTTP/1.1\r\nHost: x\r\n\r\n";
  for (const std::string te : {"Transfer-Encoding: gzip\r\n", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                               "Transfer-Encoding: identity\r\n"}) {
    CAPTURE(te);
    Client c(server.port());
    c.send_raw("POST /models/acme/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + te + "\r\n" +
               smuggled);
    auto rep = c.read_reply();
    CHECK(rep.status == 400);
    CHECK(rep.json()["reason"] == "malformed_http");
    CHECK(c.closed_by_server());  // the hidden request is never answered
  }
  // Chunked alone is fine.
  Client c(server.port());
  const std::string body = texts({"refund"}).dump();
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size());
  c.send_raw("POST /models/acme/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Transfer-Encoding: chunked\r\n\r\n" + std::string(size) + "\r\n" + body + "\r\n0\r\n\r\n");
  CHECK(c.read_reply().status == 200);
  CHECK(sample(metrics_of(server.port()), "mlops_http_refused_total{reason=\"malformed_http\"}") == 3);
  server.stop();
}

TEST_CASE("HEAD answers without a body, 405 names the allowed methods, Expect: 100-continue is answered") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  Client c(server.port());
  const auto get = c.request("GET", "/health");
  c.expect_head_reply(true);
  auto head = c.request("HEAD", "/health");
  c.expect_head_reply(false);
  CHECK(head.status == 200);
  CHECK(head.headers["content-length"] == std::to_string(get.body.size()));
  // Nothing follows the head: the next answer on the connection is read correctly.
  auto version = c.request("GET", "/version");
  CHECK(version.status == 200);
  CHECK(version.json()["release"] == r.md5_a);

  auto wrong = c.request("GET", "/models/acme/invocations");
  CHECK(wrong.status == 405);
  CHECK(wrong.headers["allow"] == "POST");
  auto post_health = c.request("POST", "/health", "{}");
  CHECK(post_health.status == 405);
  CHECK(post_health.headers["allow"] == "GET, HEAD");

  // The body is asked for with 100 Continue, after the head passed its checks.
  Client cont(server.port());
  const std::string body = texts({"refund"}).dump();
  cont.send_raw("POST /models/acme/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Expect: 100-continue\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n");
  CHECK(cont.read_reply().status == 100);
  cont.send_raw(body);
  CHECK(cont.read_reply().status == 200);
  // A body over the limit is refused before the client sends it.
  Client big(server.port());
  big.send_raw("POST /models/acme/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
               "Content-Length: 100000\r\n\r\n");
  CHECK(big.read_reply().status == 413);
  server.stop();
}

TEST_CASE("transport refusals are counted, bodies buffered by all connections together are bounded") {
  const auto& r = releases();
  auto o = options();
  o.max_buffered_bytes = 3000;
  mlops::Server server(r.a.string(), o);
  server.start();
  // One request holds 2000 bytes (its body has not all arrived); the next one's 2000 would pass 3000: 503.
  Client holder(server.port());
  holder.send_raw("POST /models/acme/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: 2000\r\n\r\n{");
  REQUIRE(wait_for_sample(server, "mlops_http_buffered_bytes", 2000));
  Client second(server.port());
  auto busy = second.request("POST", "/models/acme/invocations", texts({"x"}).dump() + std::string(2000, ' '));
  CHECK(busy.status == 503);
  CHECK(busy.json()["reason"] == "server_busy");
  Client small(server.port());
  CHECK(small.post("/models/acme/invocations", texts({"x"})).status == 200);

  CHECK(Client(server.port()).request("POST", "/models/acme/invocations", std::string(5000, ' ')).status == 413);
  CHECK(Client(server.port()).request("GET", "/ping", "", "X-Pad: " + std::string(3000, 'p') + "\r\n").status == 431);
  Client junk(server.port());
  junk.send_raw("NOT HTTP AT ALL\r\n\r\n");
  CHECK(junk.read_reply().status == 400);
  const auto m = metrics_of(server.port());
  CHECK(sample(m, "mlops_http_refused_total{reason=\"busy\"}") == 1);
  CHECK(sample(m, "mlops_http_refused_total{reason=\"body_too_large\"}") == 1);
  CHECK(sample(m, "mlops_http_refused_total{reason=\"header_too_large\"}") == 1);
  CHECK(sample(m, "mlops_http_refused_total{reason=\"malformed_http\"}") == 1);
  CHECK(sample(m, "mlops_http_requests_total{route=\"other\",code=\"413\"}") == 1);
  CHECK(sample(m, "mlops_http_requests_total{route=\"other\",code=\"503\"}") == 1);
  CHECK(sample(m, "process_open_fds") > 0);
  CHECK(sample(m, "process_resident_memory_bytes") > 0);
  server.stop();
}

TEST_CASE("per-model series carry the version and go when a switch drops the model") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  Client c(server.port());
  CHECK(c.post("/models/acme/invocations", texts({"x"})).status == 200);
  CHECK(c.post("/models/globex/invocations", json{{"instances", {{1, 2, 3}}}}).status == 200);
  auto m = c.request("GET", "/metrics").body;
  CHECK(sample(m, "mlops_model_requests_total{model=\"acme\",version=\"3\"}") == 1);
  CHECK(sample(m, "mlops_model_requests_total{model=\"globex\",version=\"1\"}") == 1);
  CHECK(c.post("/admin/release", json{{"release", r.b.string()}}, kAuth).status == 200);
  CHECK(c.post("/models/acme/invocations", texts({"x"})).status == 200);
  m = c.request("GET", "/metrics").body;
  CHECK(m.find("model=\"globex\"") == std::string::npos);
  CHECK(m.find("version=\"3\"") == std::string::npos);
  CHECK(sample(m, "mlops_model_requests_total{model=\"acme\",version=\"4\"}") == 1);
  server.stop();
}

TEST_CASE("the parser and router without a socket (the fuzz target's way in) answer as a connection does") {
  const auto& r = releases();
  mlops::detail::ServeState st;
  st.options = options();
  st.current = mlops::Release::load(r.a);
  auto answer = [&](const std::string& raw) { return mlops::detail::answer_bytes(raw, st); };
  CHECK(answer("GET /health HTTP/1.1\r\nHost: x\r\n\r\n").status == 200);
  CHECK(answer("GET /health HTTP/1.1\r\nHost: x\r\n").status == 408);
  CHECK(answer("POST /models/acme/invocations HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").status == 400);
  CHECK(answer("POST /admin/release HTTP/1.1\r\nContent-Length: 900\r\n\r\n").status == 401);
  const std::string body = texts({"refund"}).dump();
  auto ok = answer("POST /models/acme/invocations HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body);
  CHECK(ok.status == 200);
  CHECK(answer("\x01\x02 nonsense\r\n\r\n").status == 400);
}

TEST_CASE("SIGHUP reloads on the one release-loading thread: a burst of signals starts no thread") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  std::thread runner([&] { server.run(); });
  Client c(server.port());
  REQUIRE(c.request("GET", "/ping").status == 200);  // run() has its signal handlers once it answers
  const double threads = sample(server.metrics_text(), "process_threads");
  for (int i = 0; i < 50; ++i) ::kill(::getpid(), SIGHUP);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (sample(server.metrics_text(), "mlops_release_switches_total{result=\"ok\"}") < 1 &&
         std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const auto m = server.metrics_text();
  CHECK(sample(m, "mlops_release_switches_total{result=\"ok\"}") >= 1);
  CHECK(sample(m, "process_threads") == threads);
  CHECK(c.request("GET", "/version").json()["release"] == r.md5_a);
  ::kill(::getpid(), SIGTERM);
  runner.join();
}
