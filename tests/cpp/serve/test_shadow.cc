// Shadow traffic: a second release scores the same rows off the response path; agreement is counted per model.
#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "mlops/serve.hpp"
#include "serve_fixture.hpp"

using nlohmann::json;
using serve_test::Client;
using serve_test::options;
using serve_test::releases;
using serve_test::sample;

namespace {

struct ShadowReleases {
  serve_test::fs::path c, d;
  std::string md5_c, md5_d;
  mlops::Adapter acme_c = serve_test::text_adapter("a", 9);  // the labels of release A's acme, other weights
};

// Release C: acme v5 (same labels as A's acme v3, other weights), globex v1 (as in A: not shadowed).
// Release D: acme v6 (another seed), so a shadow switch starts new series.
const ShadowReleases& shadow_releases() {
  static ShadowReleases s = [] {
    ShadowReleases x;
    auto root = serve_test::temp_dir("shadow");
    x.c = root / "c";
    x.d = root / "d";
    x.md5_c = serve_test::write_release(
        x.c, {{"acme", {5, x.acme_c}}, {"globex", {1, serve_test::numeric_adapter({"0", "7"})}}});
    x.md5_d = serve_test::write_release(x.d, {{"acme", {6, serve_test::text_adapter("a", 11)}}});
    return x;
  }();
  return s;
}

std::vector<std::string> sentences(std::size_t n, std::size_t salt) {
  std::vector<std::string> out;
  const char* words[] = {"refund", "late", "parcel", "broken", "invoice", "thanks", "password", "login", "card"};
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(std::string(words[(i + salt) % 9]) + " " + words[(i * 7 + salt) % 9] + " " + std::to_string(i));
  return out;
}

// The rows whose labels two adapters agree on, by predicting each directly.
std::pair<std::size_t, std::size_t> agreement(const mlops::Adapter& a, const mlops::Adapter& b,
                                              const std::vector<std::string>& t) {
  const auto la = a.predict(t), lb = b.predict(t);
  std::size_t agree = 0;
  for (std::size_t i = 0; i < t.size(); ++i) agree += la[i] == lb[i];
  return {agree, t.size() - agree};
}

std::string shadow_series(const std::string& v, const std::string& sv, const std::string& outcome) {
  return "mlops_shadow_rows_total{model=\"acme\",version=\"" + v + "\",shadow_version=\"" + sv + "\",outcome=\"" +
         outcome + "\"}";
}

// Waits until /shadow has scored `rows` rows of its one shadowed model.
json wait_for_shadow_rows(std::uint16_t port, std::uint64_t rows) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    Client c(port);
    auto j = c.request("GET", "/shadow").json();
    if ((!j["models"].empty() && j["models"][0]["rows"].get<std::uint64_t>() >= rows) ||
        std::chrono::steady_clock::now() > until)
      return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace

TEST_CASE("shadow: answers come from the served release, the shadow's agreement is counted per model and row") {
  const auto& r = releases();
  const auto& s = shadow_releases();
  auto o = options();
  o.shadow = s.c.string();
  mlops::Server server(r.a.string(), o);
  REQUIRE(server.shadow());
  CHECK(server.shadow()->md5() == s.md5_c);
  server.start();

  const auto texts = sentences(40, 1);
  const auto served = mlops::Release::load(r.a);
  const auto& acme_a = served->find("acme")->adapter;
  Client c(server.port());
  std::size_t sent = 0;
  for (std::size_t i = 0; i < texts.size(); i += 10) {
    std::vector<std::string> part(texts.begin() + static_cast<long>(i), texts.begin() + static_cast<long>(i + 10));
    auto rep = c.post("/models/acme/invocations", json{{"instances", part}});
    REQUIRE(rep.status == 200);
    CHECK(rep.headers["x-mlops-release"] == r.md5_a);
    CHECK(rep.json()["predictions"] == json(acme_a.predict(part)));  // the served model's labels, not the shadow's
    sent += part.size();
  }
  // globex has the same version in both releases: scored once, never shadowed.
  CHECK(c.post("/models/globex/invocations", json{{"instances", json::array({json::array({1, 0, 0})})}}).status == 200);

  const auto j = wait_for_shadow_rows(server.port(), sent);
  const auto [agree, disagree] = agreement(acme_a, s.acme_c, texts);
  REQUIRE(j["models"].size() == 1);
  const auto& m = j["models"][0];
  CHECK(j["release"] == r.md5_a);
  CHECK(j["shadow"] == s.md5_c);
  CHECK(m["model"] == "acme");
  CHECK(m["version"] == 3);
  CHECK(m["shadow_version"] == 5);
  CHECK(m["requests"] == 4);
  CHECK(m["rows"] == sent);
  CHECK(m["agree"] == agree);
  CHECK(m["disagree"] == disagree);
  CHECK(agree > 0);
  CHECK(disagree > 0);  // the two versions differ on some of these rows, or the test would prove little
  CHECK(j["dropped"] == 0);
  const auto metrics = server.metrics_text();
  CHECK(sample(metrics, shadow_series("3", "5", "agree")) == static_cast<double>(agree));
  CHECK(sample(metrics, shadow_series("3", "5", "disagree")) == static_cast<double>(disagree));
  CHECK(sample(metrics, "mlops_shadow_release_info{release=\"" + s.md5_c + "\"}") == 1);
  server.stop();
}

TEST_CASE("shadow: switching either release is atomic and starts the series of the new pair") {
  const auto& r = releases();
  const auto& s = shadow_releases();
  auto o = options();
  o.max_connections = 64;
  mlops::Server server(r.a.string(), o);
  server.start();
  CHECK_FALSE(server.shadow());
  const std::string token = "Authorization: Bearer s3cret-token\r\n";
  auto admin = [&](const char* route, const json& body, bool with_token = true) {
    Client a(server.port());
    return a.post(route, body, with_token ? token : std::string());
  };
  CHECK(admin("/admin/shadow", json{{"release", s.c.string()}}, false).status == 401);
  CHECK_FALSE(server.shadow());
  auto set = admin("/admin/shadow", json{{"release", s.c.string()}});
  REQUIRE(set.status == 200);
  CHECK(set.json()["shadow"] == s.md5_c);
  CHECK(set.json()["previous_shadow"].is_null());
  CHECK(set.json()["shadowed_models"] == 1);

  // Four clients score while the shadow switches C -> D -> C and back; every answer is the served model's.
  std::atomic<bool> go{true};
  std::atomic<int> wrong{0}, answered{0};
  const auto served = mlops::Release::load(r.a);
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&, t] {
      Client c(server.port());
      const auto part = sentences(5, static_cast<std::size_t>(t));
      const json expected = served->find("acme")->adapter.predict(part);
      while (go) {
        auto rep = c.post("/models/acme/invocations", json{{"instances", part}});
        if (rep.status != 200 || rep.json()["predictions"] != expected) ++wrong;
        ++answered;
      }
    });
  for (const auto* next : {&s.d, &s.c, &s.d}) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(admin("/admin/shadow", json{{"release", next->string()}}).status == 200);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  go = false;
  for (auto& t : clients) t.join();
  CHECK(wrong == 0);
  CHECK(answered > 0);

  // Only the current pair (acme 3 against 6) has a series; the C pair's was dropped with the switch.
  Client c(server.port());
  auto j = c.request("GET", "/shadow").json();
  REQUIRE(j["models"].size() == 1);
  CHECK(j["models"][0]["shadow_version"] == 6);
  auto metrics = server.metrics_text();
  CHECK(sample(metrics, shadow_series("3", "5", "agree")) == -1);
  CHECK(sample(metrics, shadow_series("3", "6", "agree")) >= 0);

  // The served release switches to B (acme v4): its pair with D (v6) starts from zero.
  CHECK(admin("/admin/release", json{{"release", r.b.string()}}).status == 200);
  j = c.request("GET", "/shadow").json();
  REQUIRE(j["models"].size() == 1);
  CHECK(j["models"][0]["version"] == 4);
  CHECK(j["models"][0]["rows"] == 0);
  CHECK(c.post("/models/acme/invocations", json{{"instances", sentences(3, 0)}}).status == 200);
  j = wait_for_shadow_rows(server.port(), 3);
  CHECK(j["models"][0]["rows"] == 3);
  CHECK(j["models"][0]["disagree"] == 3);  // B's labels are b*, D's a*: never the same

  // Clearing the shadow: nothing is shadowed any more; a bad body or an unknown release keeps the old shadow.
  CHECK(admin("/admin/shadow", json{{"release", 7}}).status == 400);
  CHECK(admin("/admin/shadow", json{{"release", (s.c / "missing").string()}}).status == 404);
  CHECK(server.shadow()->md5() == s.md5_d);
  auto cleared = admin("/admin/shadow", json{{"release", nullptr}});
  CHECK(cleared.status == 200);
  CHECK(cleared.json()["shadow"].is_null());
  CHECK_FALSE(server.shadow());
  j = c.request("GET", "/shadow").json();
  CHECK(j["shadow"].is_null());
  CHECK(j["models"].empty());
  server.stop();
}

TEST_CASE("shadow: a full queue skips shadowing, never the answer") {
  const auto& r = releases();
  const auto& s = shadow_releases();
  auto o = options();
  o.shadow = s.c.string();
  o.shadow_queue = 1;
  o.max_rows = 2000;
  o.max_body_bytes = 1u << 20;
  o.max_connections = 64;
  mlops::Server server(r.a.string(), o);
  server.start();
  const auto big = sentences(2000, 3);
  const json expected = mlops::Release::load(r.a)->find("acme")->adapter.predict(big);
  // Four clients send 2,000-row requests until the one shadow thread has fallen behind at least once.
  std::atomic<int> sent{0}, wrong{0};
  std::atomic<bool> go{true};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&] {
      Client c(server.port());
      while (go) {
        auto rep = c.post("/models/acme/invocations", json{{"instances", big}});
        if (rep.status != 200 || rep.json()["predictions"] != expected) ++wrong;
        ++sent;
      }
    });
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (sample(server.metrics_text(), "mlops_shadow_dropped_total") < 1 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  go = false;
  for (auto& t : clients) t.join();
  CHECK(wrong == 0);
  // Once the shadow thread has caught up, every request was shadowed or dropped, none both.
  Client c(server.port());
  json j;
  do {
    j = c.request("GET", "/shadow").json();
  } while (j["queued"] != 0 && std::chrono::steady_clock::now() < until + std::chrono::seconds(10));
  REQUIRE(j["models"].size() == 1);
  const auto shadowed = j["models"][0]["requests"].get<int>();
  CHECK(j["dropped"].get<int>() >= 1);
  CHECK(shadowed >= 1);
  CHECK(shadowed + j["dropped"].get<int>() == sent.load());
  CHECK(j["models"][0]["rows"] == shadowed * 2000);
  server.stop();
}
