#include <doctest/doctest.h>

#include <filesystem>
#include <unistd.h>

#include "http/http.hpp"
#include "mlops/error.hpp"

using namespace mlops;

TEST_CASE("http_download refuses other schemes and reports failures without secrets, leaving no file") {
  namespace fs = std::filesystem;
  const fs::path dest = fs::temp_directory_path() / ("mlops-dl-" + std::to_string(::getpid()));
  CHECK_THROWS_AS(detail::http_download("file:///etc/passwd", dest), ConfigError);
  try {
    // Port 9 on loopback: nothing listens there.
    detail::http_download("http://user:hunter2@127.0.0.1:9/data.csv?token=t0k", dest, {}, 5);
    FAIL("expected a DataSourceError");
  } catch (const DataSourceError& e) {
    const std::string what = e.what();
    CHECK(what.find("hunter2") == std::string::npos);
    CHECK(what.find("t0k") == std::string::npos);
    CHECK(what.find("127.0.0.1:9") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dest));
}
