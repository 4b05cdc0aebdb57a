#include <doctest/doctest.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "mlops/error.hpp"
#include "mlops/serve.hpp"
#include "serve_fixture.hpp"

using nlohmann::json;
using serve_test::Client;

using serve_test::options;
using serve_test::releases;
using serve_test::texts;

TEST_CASE("a release folder loads every model with its lineage, bad folders are typed errors") {
  const auto& r = releases();
  auto rel = mlops::Release::load(r.a);
  CHECK(rel->md5() == r.md5_a);
  CHECK(rel->image() == "registry.example/adapters:" + r.md5_a);
  REQUIRE(rel->models().size() == 2);
  CHECK(rel->models()[0].name == "acme");
  CHECK(rel->find("acme")->version == 3);
  CHECK(rel->find("acme")->lineage["data_commit"] == "data-acme");
  CHECK(rel->find("nobody") == nullptr);
  CHECK_THROWS_AS(mlops::Release::load(r.a / "missing"), mlops::NotFoundError);
  auto broken = serve_test::temp_dir("broken");
  serve_test::write_release(broken, {{"x", {1, serve_test::text_adapter("x", 3)}}});
  std::ofstream(broken / "models" / "x" / "model" / "adapter.safetensors", std::ios::app) << "garbage";
  CHECK_THROWS_AS(mlops::Release::load(broken), mlops::IntegrityError);
  serve_test::fs::remove_all(broken / "models" / "x");
  CHECK_THROWS_AS(mlops::Release::load(broken), mlops::NotFoundError);
}

TEST_CASE("a release without lineage.json whose adapters carry no lineage loads with empty commits") {
  auto dir = serve_test::temp_dir("no-lineage");
  mlops::Adapter bare(8, 0, {"refund", "shipping"}, std::vector<float>(18, 0.5f),
                      mlops::Featurizer(8, 1, "body").settings(), {}, {});
  serve_test::write_release(dir, {{"acme", {2, bare}}, {"globex", {1, serve_test::text_adapter("g", 4)}}});
  serve_test::fs::remove(dir / "lineage.json");
  auto rel = mlops::Release::load(dir);
  CHECK(rel->find("acme")->lineage == json{{"version", 2}, {"data_commit", ""}, {"code_commit", ""}});
  CHECK(rel->find("globex")->lineage["data_commit"] == "c0ffeeg");
}

TEST_CASE("every route answers, predictions equal Adapter::predict, keep-alive") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  Client c(server.port());
  CHECK(c.request("GET", "/ping").status == 200);
  auto health = c.request("GET", "/health").json();
  CHECK(health["status"] == "ok");
  auto version = c.request("GET", "/version").json();
  CHECK(version["release"] == r.md5_a);
  CHECK(version["image"] == "registry.example/adapters:" + r.md5_a);
  auto models = c.request("GET", "/models").json();
  REQUIRE(models["models"].size() == 2);
  CHECK(models["models"][0]["name"] == "acme");
  CHECK(models["models"][0]["version"] == 3);
  CHECK(models["models"][0]["data_commit"] == "data-acme");
  CHECK(models["models"][0]["code_commit"] == "code-1");
  CHECK(models["models"][0]["input"] == "text");

  std::vector<std::string> t{"refund my order", "parcel lost", "hello there"};
  auto rep = c.post("/models/acme/invocations", json{{"instances", t}});
  REQUIRE(rep.status == 200);
  CHECK(rep.headers["x-mlops-release"] == r.md5_a);
  const auto expect = server.release()->find("acme")->adapter.predict(std::span<const std::string>(t));
  CHECK(rep.json()["predictions"] == json(expect));
  auto num = c.post("/models/globex/invocations", json{{"dataframe_split", {{"columns", {"f0", "f1", "f2"}}, {"data", {{0, 3, 0}}}}}});
  CHECK(num.json()["predictions"] == json::array({7}));

  auto batch = c.post("/invocations/batch", json{{"requests", {{{"model", "acme"}, {"instances", t}},
                                                               {{"model", "globex"}, {"instances", {{5, 0, 0}}}}}}});
  REQUIRE(batch.status == 200);
  CHECK(batch.json()["responses"][0]["predictions"] == json(expect));
  CHECK(batch.json()["responses"][1]["predictions"] == json::array({0}));

  auto metrics = c.request("GET", "/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.headers["content-type"].find("text/plain") == 0);
  CHECK(metrics.body.find("mlops_model_requests_total{model=\"acme\",version=\"3\"} 2") != std::string::npos);
  CHECK(metrics.body.find("mlops_http_requests_total{route=\"invocations\",code=\"200\"} 2") != std::string::npos);
  CHECK(metrics.body.find("mlops_model_latency_seconds_bucket{model=\"acme\",version=\"3\",le=\"+Inf\"} 2") != std::string::npos);
  server.stop();
}

TEST_CASE("bad input gets MLflow's error body with the mlops reason, a 4xx, and the server keeps serving") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  auto expect = [&](int status, const std::string& reason, const std::string& method, const std::string& target,
                    const std::string& body, const std::string& headers = {}, const std::string& type = "application/json") {
    Client c(server.port());
    auto rep = c.request(method, target, body, headers, type);
    CAPTURE(target);
    CAPTURE(rep.body);
    CHECK(rep.status == status);
    auto j = json::parse(rep.body, nullptr, false);
    REQUIRE(j.is_object());
    CHECK(j["reason"] == reason);
    CHECK(j["error_code"] == (status == 404 ? "RESOURCE_DOES_NOT_EXIST" : status == 503 ? "TEMPORARILY_UNAVAILABLE" : "BAD_REQUEST"));
    CHECK(j["error_id"].get<std::string>().rfind("mlops.", 0) == 0);
    const auto message = j["message"].get<std::string>();
    CHECK(message.find("[mlops.") == 0);
    CHECK(message.find("[mlops.", 1) == std::string::npos);  // the prefix once
    return j;
  };
  expect(400, "malformed_json", "POST", "/models/acme/invocations", "{\"instances\": [");
  expect(404, "unknown_model", "POST", "/models/nobody/invocations", texts({"x"}).dump());
  expect(400, "wrong_feature_count", "POST", "/models/globex/invocations", json{{"instances", {{1, 2}}}}.dump());
  expect(400, "not_text", "POST", "/models/acme/invocations", json{{"instances", {1, 2}}}.dump());
  expect(400, "too_many_rows", "POST", "/models/acme/invocations", json{{"instances", std::vector<std::string>(51, "x")}}.dump());
  expect(400, "no_input_format", "POST", "/models/acme/invocations", "{}");
  expect(404, "unknown_route", "GET", "/nowhere", "");
  expect(405, "method_not_allowed", "GET", "/models/acme/invocations", "");
  expect(413, "body_too_large", "POST", "/models/acme/invocations", std::string(5000, ' '));
  expect(431, "header_too_large", "GET", "/ping", "", "X-Pad: " + std::string(3000, 'p') + "\r\n");
  // A wrong record key is named, never read as the text.
  auto wrong = expect(400, "missing_column", "POST", "/models/acme/invocations",
                      json{{"dataframe_records", {{{"titel", "refund"}}}}}.dump());
  CHECK(wrong["message"].get<std::string>().find("titel") != std::string::npos);
  // Only JSON and CSV bodies, parameters allowed; anything else (or nothing) is 415.
  expect(415, "unsupported_content_type", "POST", "/models/acme/invocations", "a,b", {}, "text/plain");
  expect(415, "unsupported_content_type", "POST", "/models/acme/invocations", texts({"x"}).dump(), {}, "application/jsonx");
  expect(415, "unsupported_content_type", "POST", "/invocations/batch", "model,body\nacme,x\n", {}, "text/csv");
  Client c(server.port());
  CHECK(c.request("POST", "/models/acme/invocations", texts({"x"}).dump(), {}, "Application/JSON; charset=utf-8").status == 200);
  CHECK(c.request("GET", "/ping").status == 200);
  server.stop();
}

TEST_CASE("MLflow scoring compatibility: text/csv, /invocations with one model, one answer per batch request") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  Client c(server.port());
  const std::vector<std::string> t{"refund my order", "parcel, \"lost\"", "hello"};
  const auto want = json(server.release()->find("acme")->adapter.predict(std::span<const std::string>(t)));
  const std::string csv = "id,body\r\n1,refund my order\r\n2,\"parcel, \"\"lost\"\"\"\r\n3,hello\r\n";
  for (const char* type : {"text/csv", "text/csv; charset=utf-8"}) {
    auto rep = c.request("POST", "/models/acme/invocations", csv, {}, type);
    CAPTURE(rep.body);
    REQUIRE(rep.status == 200);
    CHECK(rep.json()["predictions"] == want);
  }
  auto num = c.request("POST", "/models/globex/invocations", "f2,f1,f0\n0,3,0\n0,0,5\n", {}, "text/csv");
  CHECK(num.json()["predictions"] == json::array({7, 0}));
  auto bad_csv = c.request("POST", "/models/globex/invocations", "f0,f1,f2\n1,x,3\n", {}, "text/csv");
  CHECK(bad_csv.status == 400);
  CHECK(bad_csv.json()["reason"] == "not_numeric");

  // Two models: /invocations points to the per-model route.
  auto two = c.post("/invocations", texts({"x"}));
  CHECK(two.status == 404);
  CHECK(two.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST");
  CHECK(two.json()["message"].get<std::string>().find("/models/<name>/invocations") != std::string::npos);

  // A batch answers each request on its own: an unknown model fails only its own entry.
  auto batch = c.post("/invocations/batch", json{{"requests", {{{"model", "nobody"}, {"instances", {"x"}}},
                                                               {{"model", "acme"}, {"instances", t}},
                                                               {{"model", "globex"}, {"instances", {"text"}}}}}});
  REQUIRE(batch.status == 200);
  const auto batch_json = batch.json();
  const auto& answers = batch_json["responses"];
  REQUIRE(answers.size() == 3);
  CHECK(answers[0]["model"] == "nobody");
  CHECK(answers[0]["status"] == 404);
  CHECK(answers[0]["error_code"] == "RESOURCE_DOES_NOT_EXIST");
  CHECK(answers[0]["reason"] == "unknown_model");
  CHECK(answers[1]["predictions"] == want);
  CHECK(answers[2]["reason"] == "not_numeric");
  CHECK(answers[2]["message"].get<std::string>().find("[mlops.", 1) == std::string::npos);
  server.stop();

  mlops::Server one(r.b.string(), options());
  one.start();
  Client c1(one.port());
  auto only = c1.post("/invocations", json{{"dataframe_split", {{"columns", {"body"}}, {"data", {{"refund"}}}}}});
  REQUIRE(only.status == 200);
  CHECK(only.json()["predictions"][0].get<std::string>()[0] == 'b');
  one.stop();
}

TEST_CASE("the admin route needs the token, a switch and a rollback change /version") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  Client c(server.port());
  const json body{{"release", r.b.string()}};
  // Refused from the head alone, before the body is read: the answer closes the connection.
  for (const std::string auth : {"", "Authorization: Bearer wrong\r\n", "Authorization: Basic s3cret-token\r\n"}) {
    Client refused(server.port());
    auto rep = refused.post("/admin/release", body, auth);
    CHECK(rep.status == 401);
    CHECK(rep.headers["connection"] == "close");
  }
  CHECK(c.request("GET", "/version").json()["release"] == r.md5_a);
  auto ok = c.post("/admin/release", body, "Authorization: Bearer s3cret-token\r\n");
  REQUIRE(ok.status == 200);
  CHECK(ok.json()["previous"] == r.md5_a);
  CHECK(ok.json()["release"] == r.md5_b);
  CHECK(c.request("GET", "/version").json()["release"] == r.md5_b);
  CHECK(c.post("/models/globex/invocations", json{{"instances", {{1, 2, 3}}}}).status == 404);  // not in B
  auto missing = c.post("/admin/release", json{{"release", "/no/such/folder"}}, "Authorization: Bearer s3cret-token\r\n");
  CHECK(missing.status == 404);
  CHECK(c.request("GET", "/version").json()["release"] == r.md5_b);  // a failed switch keeps the release
  auto back = c.post("/admin/release", json{{"release", r.a.string()}}, "Authorization: Bearer s3cret-token\r\n");
  CHECK(back.json()["release"] == r.md5_a);
  CHECK(server.metrics_text().find("mlops_release_switches_total{result=\"ok\"} 2") != std::string::npos);
  server.stop();

  auto o = options();
  o.admin_token.clear();
  mlops::Server closed(r.a.string(), o);
  closed.start();
  Client c2(closed.port());
  auto refused = c2.post("/admin/release", body, "Authorization: Bearer anything\r\n");
  CHECK(refused.status == 403);
  CHECK(refused.json()["reason"] == "admin_disabled");
  closed.stop();
}

TEST_CASE("switching under concurrent load: no failed request, each answer from the release it was sent to") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  server.start();
  // Even: no switch under way, release A after an even number of switches (epoch/2), B after an odd one;
  // odd: a switch is under way and either release may answer.
  std::atomic<int> epoch{0};
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0}, failures{0}, mismatches{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&] {
      Client c(server.port());
      const json body = texts({"where is my refund", "parcel"});
      while (!stop) {
        const int before = epoch.load();
        auto rep = c.post("/models/acme/invocations", body);
        const int after = epoch.load();
        if (rep.status != 200) {
          ++failures;
          continue;
        }
        ++answered;
        const char prefix = rep.json()["predictions"][0].get<std::string>()[0];
        const bool from_a = prefix == 'a';
        if (from_a != (rep.headers["x-mlops-release"] == r.md5_a)) ++mismatches;
        // Sent and answered within one epoch: it must come from that epoch's release.
        if (before == after && before % 2 == 0 && from_a != ((before / 2) % 2 == 0)) ++mismatches;
      }
    });
  // Each release serves a few answers before the next switch: waited for, not timed.
  for (int i = 0; i < 10; ++i) {
    const int target = answered.load() + 4;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (answered.load() < target && failures.load() == 0 && std::chrono::steady_clock::now() < give_up)
      std::this_thread::yield();
    REQUIRE(answered.load() >= target);
    ++epoch;
    server.switch_to(i % 2 == 0 ? r.b.string() : r.a.string());
    ++epoch;
  }
  stop = true;
  for (auto& t : clients) t.join();
  CHECK(failures == 0);
  CHECK(mismatches == 0);
  server.stop();
}

TEST_CASE("SIGTERM drains: the request in flight is answered, idle connections close, run() returns") {
  const auto& r = releases();
  mlops::Server server(r.a.string(), options());
  std::atomic<bool> returned{false};
  std::thread runner([&] {
    server.run();
    returned = true;
  });
  for (int i = 0; i < 200 && server.port() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Client idle(server.port()), busy(server.port());
  CHECK(idle.request("GET", "/ping").status == 200);
  CHECK(busy.request("GET", "/ping").status == 200);
  const std::string body = texts({"refund"}).dump();
  busy.send_raw("POST /models/acme/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\n\r\n" + body.substr(0, 5));
  // SIGTERM once the server has the request's head (its body is reserved), so the request is in flight.
  for (bool started = false; !started;) {
    Client probe(server.port());
    const std::string metrics = probe.request("GET", "/metrics").body;
    started = metrics.find("\nmlops_http_buffered_bytes " + std::to_string(body.size()) + "\n") != std::string::npos;
  }
  ::kill(::getpid(), SIGTERM);
  CHECK(idle.closed_by_server());  // blocks until the server closes it
  CHECK_FALSE(returned.load());
  busy.send_raw(body.substr(5));
  auto rep = busy.read_reply();
  CHECK(rep.status == 200);
  CHECK(rep.headers["connection"] == "close");
  runner.join();
  CHECK(returned.load());
}
