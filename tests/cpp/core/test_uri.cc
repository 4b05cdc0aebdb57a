#include <doctest/doctest.h>

#include <random>
#include <string>

#include "core/uri.hpp"

using namespace mlops;
using detail::redact_uri;
using detail::Uri;

TEST_CASE("redact_uri removes credentials and secret query values") {
  CHECK(redact_uri("mysql://bob:s3cret@db:3306/x") == "mysql://***@db:3306/x");
  CHECK(redact_uri("https://h/x.csv?token=abc&gid=0") == "https://h/x.csv?token=***&gid=0");
  CHECK(redact_uri("https://h/p?a=1&Signature=zz") == "https://h/p?a=1&Signature=***");
  CHECK(redact_uri("https://b.s3.amazonaws.com/k.csv?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff&X-Amz-Expires=60") ==
        "https://b.s3.amazonaws.com/k.csv?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60");
  CHECK(redact_uri("https://h/p?sv=2020&sig=abc%3D") == "https://h/p?sv=2020&sig=***");
  CHECK(redact_uri("https://h/cb#access_token=zz&state=1") == "https://h/cb#access_token=***&state=1");
  CHECK(redact_uri("http://127.0.0.1:5000/api") == "http://127.0.0.1:5000/api");
  CHECK(redact_uri("/tmp/data.csv") == "/tmp/data.csv");
  CHECK(redact_uri("doltlite:x.db") == "doltlite:x.db");
  CHECK(redact_uri("9bad://user:pw@h") == "9bad://***");
}

TEST_CASE("the userinfo ends at the last '@': delimiters in a password stay secret and out of the host") {
  for (const std::string pw : {"S3cr3t#PW", "S3cr3t/PW", "S3cr3t?PW", "a@b@c", "x:y:z", "100%sure", "%zz%4"}) {
    CAPTURE(pw);
    const std::string text = "mysql://root:" + pw + "@db.example:3307/training?branch=main";
    const auto u = Uri::parse(text);
    REQUIRE(u);
    CHECK(u->user == "root");
    CHECK(u->password == pw);
    CHECK(u->host == "db.example");
    CHECK(u->port == "3307");
    CHECK(u->path == "/training");
    CHECK(u->query == "branch=main");
    CHECK(u->redacted() == "mysql://***@db.example:3307/training?branch=main");
    CHECK(u->without_userinfo() == "mysql://db.example:3307/training?branch=main");
  }
}

TEST_CASE("Uri parts: IPv6 hosts, no userinfo, file names, schemes") {
  auto u = Uri::parse("HTTPS://[::1]:8443/a/b%20c.csv?x=1#f");
  REQUIRE(u);
  CHECK(u->scheme == "https");
  CHECK(u->host == "[::1]");
  CHECK(u->port == "8443");
  CHECK_FALSE(u->has_userinfo);
  CHECK(u->file_name() == "b c.csv");
  CHECK(u->fragment == "f");
  u = Uri::parse("ftp://user:pw@files.example/x.csv");
  REQUIRE(u);
  CHECK(u->scheme == "ftp");
  CHECK(u->redacted() == "ftp://***@files.example/x.csv");
  CHECK_FALSE(Uri::parse("relative/path.csv"));
  CHECK_FALSE(Uri::parse("doltlite:file.db"));
  CHECK(detail::percent_decode("a%40b%zz%4") == "a@b%zz%4");
}

TEST_CASE("scrub removes a URI's secrets, as written and decoded, from a foreign message") {
  const auto u = Uri::parse("https://me:p%40ssw0rd@h/x.csv?token=T0ken%2Bvalue&gid=0");
  REQUIRE(u);
  CHECK(u->scrub("denied for p@ssw0rd and p%40ssw0rd; token T0ken+value") == "denied for *** and ***; token ***");
}

TEST_CASE("random secrets over the printable range never survive redaction") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> ch(0x20, 0x7e), len(8, 40);
  const std::string marker = "Qz";  // so that a secret is never a substring of the rest by chance
  for (int i = 0; i < 20000; ++i) {
    std::string pw = marker;
    for (int n = len(rng); n > 0; --n) pw += static_cast<char>(ch(rng));
    for (const std::string& text : {"mysql://u:" + pw + "@h:1/db", "https://u:" + pw + "@h/x.csv?gid=0",
                                    "http://" + pw + "@h/x"}) {
      const std::string shown = redact_uri(text);
      CAPTURE(text);
      CHECK(shown.find(pw) == std::string::npos);
      CHECK(shown.find("Qz") == std::string::npos);
    }
  }
}
