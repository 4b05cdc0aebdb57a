#include "pipeline/release_lease.hpp"

#include <unistd.h>

#include <algorithm>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "core/hash.hpp"
#include "core/text.hpp"
#include "mlops/error.hpp"
#include "mlops/mlflow.hpp"

namespace mlops::detail {

namespace {

constexpr const char* kHolder = "mlops.lease.holder";
constexpr const char* kExpires = "mlops.lease.expires_ms";
constexpr const char* kReleased = "mlops.lease.released";

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string tag(const nlohmann::json& model, const char* key) {
  if (auto it = model.find("tags"); it != model.end() && it->is_array())
    for (const auto& t : *it)
      if (t.value("key", "") == key) return t.value("value", "");
  return "";
}

std::int64_t to_int(const std::string& text) {
  std::int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || v > (INT64_MAX - 9) / 10) return 0;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace

struct ReleaseLease::Generation {
  std::int64_t number = 0;
  std::string holder;
  std::int64_t expires_ms = 0;
  bool released = false;
};

std::string ReleaseLease::model_name(std::int64_t generation) const { return prefix_ + std::to_string(generation); }

namespace {

// Every generation of the lease, newest last.
template <typename G>
std::vector<G> generations(MlflowTracker& tracker, const std::string& prefix) {
  std::vector<G> out;
  std::string token;
  do {
    nlohmann::json query = {{"filter", "name LIKE '" + prefix + "%'"}, {"max_results", 1000}};
    if (!token.empty()) query["page_token"] = token;
    const auto page = tracker.call("GET", "mlflow/registered-models/search", query);
    if (auto it = page.find("registered_models"); it != page.end() && it->is_array())
      for (const auto& m : *it) {
        const std::string name = m.value("name", "");
        if (!name.starts_with(prefix)) continue;
        G g;
        g.number = to_int(name.substr(prefix.size()));
        if (g.number == 0) continue;
        g.holder = tag(m, kHolder);
        g.expires_ms = to_int(tag(m, kExpires));
        g.released = tag(m, kReleased) == "1";
        out.push_back(std::move(g));
      }
    token = page.value("next_page_token", "");
  } while (!token.empty());
  std::sort(out.begin(), out.end(), [](const G& a, const G& b) { return a.number < b.number; });
  return out;
}

}  // namespace

ReleaseLease::ReleaseLease(MlflowTracker& tracker, const std::string& experiment, std::chrono::milliseconds ttl,
                           std::chrono::milliseconds wait)
    : tracker_(tracker), experiment_(experiment) {
  prefix_ = "mlops.lease." + sha256_hex(experiment).substr(0, 16) + ".";
  std::random_device rd;
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  holder_ = std::string(host) + ":" + std::to_string(::getpid()) + ":" + std::to_string(rd()) + std::to_string(rd());
  std::mt19937 rng(rd());
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (true) {
    const auto all = generations<Generation>(tracker_, prefix_);
    const Generation* top = all.empty() ? nullptr : &all.back();
    const std::int64_t now = now_ms();
    if (top == nullptr || top->released || top->expires_ms < now) {
      const std::int64_t next = top ? top->number + 1 : 1;
      try {
        tracker_.call("POST", "mlflow/registered-models/create",
                      {{"name", model_name(next)},
                       {"description", "Lease of the release experiment " + experiment + "; managed by mlops."},
                       {"tags",
                        {{{"key", kHolder}, {"value", holder_}},
                         {{"key", kExpires}, {"value", std::to_string(now + ttl.count())}},
                         {{"key", "mlops.lease.experiment"}, {"value", experiment.substr(0, 5000)}}}}});
        generation_ = next;
      } catch (const ConflictError&) {
        // Another process made this generation first, unless the answer to our own create was lost.
        const auto again = generations<Generation>(tracker_, prefix_);
        for (const auto& g : again)
          if (g.number == next && g.holder == holder_) generation_ = next;
      }
      if (generation_ != 0) {
        // Generations before the previous one are of no further use (best effort).
        for (const auto& g : all)
          if (g.number + 1 < next) {
            try {
              tracker_.call("DELETE", "mlflow/registered-models/delete", {{"name", model_name(g.number)}});
            } catch (const Error&) {
            }
          }
        return;
      }
      continue;
    }
    if (std::chrono::steady_clock::now() >= deadline)
      throw ConflictError("another release or rollback of " + quote_for_message(experiment, 200) + " holds the lease (" +
                          quote_for_message(top->holder, 120) + ", until " + std::to_string(top->expires_ms) +
                          " ms since the epoch); run the command again when it is done");
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 400));
  }
}

void ReleaseLease::check_held() {
  const auto all = generations<Generation>(tracker_, prefix_);
  for (const auto& g : all)
    if (g.number > generation_)
      throw ConflictError("the release lease of " + quote_for_message(experiment_, 200) +
                          " expired while this command held it and " + quote_for_message(g.holder, 120) +
                          " took it: nothing is reported complete; run the command again");
}

ReleaseLease::~ReleaseLease() {
  try {
    tracker_.call("POST", "mlflow/registered-models/set-tag",
                  {{"name", model_name(generation_)}, {"key", kReleased}, {"value", "1"}});
  } catch (...) {
  }
}

}  // namespace mlops::detail
