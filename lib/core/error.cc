#include "mlops/error.hpp"

namespace mlops {

Error::Error(std::string id, const std::string& message)
    : std::runtime_error("[" + id + "] " + message), id_(std::move(id)) {}

std::string_view Error::detail() const noexcept {
  std::string_view all(what());
  return all.substr(id_.size() + 3);
}

}  // namespace mlops
