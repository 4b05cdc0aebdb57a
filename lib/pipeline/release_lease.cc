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
#include "mlops/tags.hpp"

namespace mlops::detail {

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string tag(const RegisteredModel& model, const char* key) {
  const auto it = model.tags.find(key);
  return it == model.tags.end() ? "" : it->second;
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
  for (const auto& m : tracker.search_registered_models("name LIKE '" + prefix + "%'", 1000)) {
    if (!m.name.starts_with(prefix)) continue;
    G g;
    g.number = to_int(m.name.substr(prefix.size()));
    if (g.number == 0) continue;
    g.holder = tag(m, tags::kLeaseHolder);
    g.expires_ms = to_int(tag(m, tags::kLeaseExpires));
    g.released = tag(m, tags::kLeaseReleased) == "1";
    out.push_back(std::move(g));
  }
  std::sort(out.begin(), out.end(), [](const G& a, const G& b) { return a.number < b.number; });
  return out;
}

}  // namespace

ReleaseLease::ReleaseLease(MlflowTracker& tracker, const std::string& experiment, std::chrono::milliseconds ttl,
                           std::chrono::milliseconds wait)
    : tracker_(tracker), experiment_(experiment) {
  prefix_ = std::string(tags::kLeasePrefix) + sha256_hex(experiment).substr(0, 16) + ".";
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
      const bool created = tracker_.create_registered_model(
          model_name(next),
          {{tags::kLeaseHolder, holder_},
           {tags::kLeaseExpires, std::to_string(now + ttl.count())},
           {tags::kLeaseExperiment, experiment.substr(0, 5000)}},
          "Lease of the release experiment " + experiment + "; managed by mlops.");
      if (created) {
        generation_ = next;
      } else {
        // Another process made this generation first, unless the answer to our own create was lost.
        for (const auto& g : generations<Generation>(tracker_, prefix_))
          if (g.number == next && g.holder == holder_) generation_ = next;
      }
      if (generation_ != 0) {
        // Generations before the previous one are of no further use (best effort).
        for (const auto& g : all)
          if (g.number + 1 < next) {
            try {
              tracker_.delete_registered_model(model_name(g.number));
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
    tracker_.set_registered_model_tag(model_name(generation_), tags::kLeaseReleased, "1");
  } catch (...) {
  }
}

}  // namespace mlops::detail
