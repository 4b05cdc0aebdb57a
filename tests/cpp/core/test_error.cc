#include <doctest/doctest.h>

#include <string>

#include "mlops/error.hpp"

using namespace mlops;

TEST_CASE("every error's message starts with its stable id") {
  auto check = [](const Error& e, const std::string& id) {
    CHECK(e.id() == id);
    CHECK(std::string(e.what()) == "[" + id + "] boom");
    CHECK(e.detail() == "boom");
  };
  check(ConfigError("boom"), "mlops.config");
  check(DataSourceError("boom"), "mlops.data_source");
  check(DataError("boom"), "mlops.data");
  check(TrackingError("boom"), "mlops.tracking");
  check(NotFoundError("boom"), "mlops.not_found");
  check(ConflictError("boom"), "mlops.conflict");
  check(DeviceError("boom"), "mlops.device");
  check(IntegrityError("boom"), "mlops.integrity");
  check(InternalError("boom"), "mlops.internal");
}

TEST_CASE("TrackingError carries the HTTP status and the server's error code") {
  try {
    throw TrackingError("server said no", 503, "TEMPORARILY_UNAVAILABLE");
  } catch (const Error& e) {
    auto* t = dynamic_cast<const TrackingError*>(&e);
    REQUIRE(t != nullptr);
    CHECK(t->http_status() == 503);
    CHECK(t->error_code() == "TEMPORARILY_UNAVAILABLE");
  }
}

TEST_CASE("errors are caught as std::exception") {
  CHECK_THROWS_AS(throw DataError("x"), std::runtime_error);
}
