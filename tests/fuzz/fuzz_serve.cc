// Feeds arbitrary bytes, as a client would send them, to the server's request parser and router
// (detail::answer_bytes: limits, strict framing, head checks, every route but a release switch) over a
// small release of a text and a numeric adapter. Any outcome but an answer with a status from 100 to 599 and
// a JSON body for every error (a crash, a sanitizer report, an exception) is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mlops/adapter.hpp"
#include "mlops/featurizer.hpp"
#include "mlops/manifest.hpp"
#include "mlops/serve.hpp"
#include "serve/routes.hpp"

namespace {

namespace fs = std::filesystem;

void write_model(const fs::path& root, const mlops::Adapter& a) {
  fs::create_directories(root);
  a.save(root / "adapter.safetensors");
  std::ofstream(root / "MLmodel") << "artifact_path: model\nflavors:\n  python_function:\n    data: adapter.safetensors\n";
}

mlops::detail::ServeState& state() {
  static mlops::detail::ServeState* s = [] {
    const auto dir = fs::temp_directory_path() / ("mlops-fuzz-serve-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    write_model(dir / "models" / "acme" / "model",
                mlops::Adapter(8, 0, {"refund", "shipping"}, std::vector<float>(18, 0.5f),
                               mlops::Featurizer(8, 1, "body").settings(), {}, {}));
    write_model(dir / "models" / "globex" / "model",
                mlops::Adapter(2, 0, {"0", "7"}, std::vector<float>(6, 0.25f), {}, {},
                               {{"features", {"f0", "f1"}}}));
    std::ofstream(dir / "manifest.json") << mlops::ReleaseManifest({{"acme", 1}, {"globex", 2}}).to_json();
    auto* st = new mlops::detail::ServeState();  // lives as long as the fuzzer
    st->options.max_body_bytes = 2048;
    st->options.max_header_bytes = 1024;
    st->options.max_rows = 64;  // admin_token stays empty: the switch route answers 403, it never loads
    st->current = mlops::Release::load(dir);
    fs::remove_all(dir);
    return st;
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto reply = mlops::detail::answer_bytes(std::string_view(reinterpret_cast<const char*>(data), size), state());
  if (reply.status < 100 || reply.status > 599) __builtin_trap();
  if (reply.status >= 400) {
    const auto body = nlohmann::json::parse(reply.body, nullptr, false);
    if (!body.is_object() || !body.contains("error_code") || !body.contains("reason")) __builtin_trap();
    if (reply.status == 405 && reply.allow.empty()) __builtin_trap();
  }
  return 0;
}
