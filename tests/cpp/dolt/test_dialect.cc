// The SQL each backend gets, as text: the Dolt sql-server dialect cannot run here, so its SQL is checked.
#include <doctest/doctest.h>

#include "dolt/dialect.hpp"
#include "dolt/uri.hpp"
#include "mlops/error.hpp"

using namespace mlops::detail;

namespace {
const std::string kDoltHash = "abcdefghijklmnopqrstuv0123456789";            // 32 base32
const std::string kLiteHash = "5a14bec6c4f1d2195e709ee2e9b1bb36966a1ee6";    // 40 hex
}  // namespace

TEST_CASE("Dolt sql-server dialect: version-control calls are CALL DOLT_* procedures") {
  Dialect d(Backend::Dolt);
  CHECK(d.call("commit", 2) == "CALL DOLT_COMMIT(?, ?)");
  CHECK(d.call("branch", 2) == "CALL DOLT_BRANCH(?, ?)");
  CHECK(d.call("checkout", 1) == "CALL DOLT_CHECKOUT(?)");
  CHECK(d.call("tag", 2) == "CALL DOLT_TAG(?, ?)");
  CHECK(d.call("add", 1) == "CALL DOLT_ADD(?)");
  CHECK(d.hashof() == "SELECT DOLT_HASHOF(?)");
  CHECK(d.active_branch() == "SELECT active_branch()");
  CHECK(d.log(5) == "SELECT commit_hash, committer, email, `date`, message FROM dolt_log LIMIT 5");
  CHECK(d.commit_by_hash() == "SELECT commit_hash, committer, email, `date`, message FROM dolt_log WHERE commit_hash = ?");
  CHECK(d.branches() == "SELECT name FROM dolt_branches ORDER BY name");
  CHECK(d.tags() == "SELECT tag_name FROM dolt_tags ORDER BY tag_name");
  CHECK(d.table_status() == "SELECT table_name FROM dolt_status WHERE table_name = ?");
}

TEST_CASE("Dolt sql-server dialect: merging is CALL DOLT_MERGE, conflicts are read from dolt_conflicts") {
  Dialect d(Backend::Dolt);
  CHECK(d.call("merge", 3) == "CALL DOLT_MERGE(?, ?, ?)");
  CHECK(d.merge_base() == "SELECT DOLT_MERGE_BASE(?, ?)");
  CHECK(d.conflicts() == "SELECT `table`, num_conflicts FROM dolt_conflicts ORDER BY `table`");
  CHECK(d.conflict_rows("iris") == "SELECT * FROM `dolt_conflicts_iris`");
  CHECK_THROWS_AS((void)d.conflict_rows("x`; DROP"), mlops::ConfigError);
  CHECK(d.status() == "SELECT table_name FROM dolt_status ORDER BY table_name");
  CHECK(d.diff_summary() == "SELECT from_table_name, to_table_name, data_change FROM DOLT_DIFF_SUMMARY(?, ?)");
  Dialect lite(Backend::DoltLite);
  CHECK(lite.call("merge", 3) == "SELECT dolt_merge(?, ?, ?)");
  CHECK(lite.merge_base() == "SELECT dolt_merge_base(?, ?)");
  CHECK(lite.conflicts() == "SELECT \"table\", num_conflicts FROM dolt_conflicts ORDER BY \"table\"");
  CHECK(lite.conflict_rows("iris") == "SELECT * FROM \"dolt_conflicts_iris\"");
}

TEST_CASE("Dolt sql-server dialect: reads at a commit use AS OF, diffs the DOLT_DIFF table function") {
  Dialect d(Backend::Dolt);
  CHECK(d.table_at("iris", kDoltHash) == "`iris` AS OF '" + kDoltHash + "'");
  CHECK(d.select({"id", "label", "f 1"}, "iris", kDoltHash, "label = ?", {"id"}) ==
        "SELECT `id`, `label`, `f 1` FROM `iris` AS OF '" + kDoltHash + "' WHERE (label = ?) ORDER BY `id`");
  CHECK(d.count("iris", kDoltHash, "") == "SELECT COUNT(*) FROM `iris` AS OF '" + kDoltHash + "'");
  CHECK(d.diff("iris", kDoltHash, kDoltHash) ==
        "SELECT * FROM DOLT_DIFF('" + kDoltHash + "', '" + kDoltHash + "', 'iris')");
  CHECK(d.primary_key("iris") == "SHOW KEYS FROM `iris` WHERE Key_name = 'PRIMARY'");
  CHECK(d.insert("iris", {"id", "x"}, true, 2) == "REPLACE INTO `iris` (`id`, `x`) VALUES (?, ?), (?, ?)");
  CHECK(d.create_table("t", {"id", "v"}, {"BIGINT", "DOUBLE"}, {"id"}) ==
        "CREATE TABLE `t` (`id` BIGINT, `v` DOUBLE, PRIMARY KEY (`id`))");
  CHECK(d.begin() == "START TRANSACTION");
}

TEST_CASE("DoltLite dialect: SELECT dolt_*() functions, dolt_at_<table>() and dolt_diff_<table>()") {
  Dialect d(Backend::DoltLite);
  CHECK(d.call("commit", 3) == "SELECT dolt_commit(?, ?, ?)");
  CHECK(d.hashof() == "SELECT dolt_hashof(?)");
  CHECK(d.log(3) == "SELECT commit_hash, committer, email, date, message FROM dolt_log LIMIT 3");
  CHECK(d.table_at("iris", kLiteHash) == "\"dolt_at_iris\"('" + kLiteHash + "')");
  CHECK(d.diff("iris", kLiteHash, kLiteHash) == "SELECT * FROM \"dolt_diff_iris\"('" + kLiteHash + "', '" + kLiteHash + "')");
  CHECK(d.select({"a"}, "iris", "", "", {}) == "SELECT s.\"a\" FROM \"iris\" AS s");
  CHECK(d.insert("t", {"id"}, true, 1) == "INSERT OR REPLACE INTO \"t\" (\"id\") VALUES (?)");
  CHECK(d.insert("t", {"id"}, false, 1) == "INSERT INTO \"t\" (\"id\") VALUES (?)");
}

TEST_CASE("a MySQL server without Dolt reads only the current rows") {
  Dialect d(Backend::MySql);
  CHECK_FALSE(d.versioned());
  CHECK(d.table_at("t", "") == "`t`");
  CHECK_THROWS_AS((void)d.table_at("t", kDoltHash), mlops::DataSourceError);
}

TEST_CASE("identifiers are validated and quoted, hashes are validated before they enter SQL text") {
  Dialect lite(Backend::DoltLite), dolt(Backend::Dolt);
  CHECK_THROWS_AS(Dialect::check_table("t; DROP TABLE t"), mlops::ConfigError);
  CHECK_THROWS_AS(Dialect::check_table("1abc"), mlops::ConfigError);
  CHECK_THROWS_AS(Dialect::check_table(""), mlops::ConfigError);
  CHECK_THROWS_AS(Dialect::check_column("a\nb"), mlops::ConfigError);
  CHECK_THROWS_AS(Dialect::check_column(std::string(65, 'a')), mlops::ConfigError);
  CHECK(lite.quote("we\"ird") == "\"we\"\"ird\"");
  CHECK(dolt.quote("we`ird") == "`we``ird`");
  CHECK_THROWS_AS((void)dolt.table_at("t", "abc' OR '1'='1"), mlops::DataSourceError);
  CHECK_THROWS_AS((void)lite.diff("t", "short", kLiteHash), mlops::DataSourceError);
}

TEST_CASE("source URIs: backends, options, and no password in what is shown") {
  auto lite = parse_source_uri("doltlite:///tmp/x.db");
  CHECK(lite.backend == Backend::DoltLite);
  CHECK(lite.path == "/tmp/x.db");
  CHECK(lite.display == "doltlite:///tmp/x.db");
  CHECK(parse_source_uri("/tmp/y.db").path == "/tmp/y.db");
  CHECK(parse_source_uri("doltlite:rel.db").path.ends_with("/rel.db"));

  auto my = parse_source_uri("mysql://ann:s%40cret@db.local:3307/training?branch=dev&ssl-mode=verify_ca&ssl-ca=/ca.pem&unix_socket=/s.sock&read-timeout=7");
  CHECK(my.backend == Backend::Dolt);
  CHECK(my.mysql.user == "ann");
  CHECK(my.mysql.password == "s@cret");
  CHECK(my.mysql.host == "db.local");
  CHECK(my.mysql.port == 3307);
  CHECK(my.mysql.database == "training");
  CHECK(my.branch == "dev");
  CHECK(my.mysql.ssl_mode == "VERIFY_CA");
  CHECK(my.mysql.ssl_ca == "/ca.pem");
  CHECK(my.mysql.unix_socket == "/s.sock");
  CHECK(my.mysql.read_timeout_s == 7);
  CHECK(my.display.find("s%40cret") == std::string::npos);
  CHECK(my.display.find("cret") == std::string::npos);

  CHECK(parse_source_uri("mysql://ann@dolt.example.com/db").mysql.ssl_mode == "VERIFY_IDENTITY");
  CHECK(parse_source_uri("mysql://ann@dolt.example.com/db?ssl-mode=disabled").mysql.ssl_mode == "DISABLED");
  CHECK(parse_source_uri("mysql://ann@127.0.0.1/db").mysql.ssl_mode.empty());
  CHECK_THROWS_AS(parse_source_uri("mysql://ann@host/db?bogus=1"), mlops::ConfigError);
  CHECK_THROWS_AS(parse_source_uri("mysql://ann@host:99999/db"), mlops::ConfigError);
  CHECK_THROWS_AS(parse_source_uri("mysql://ann@host"), mlops::ConfigError);
  CHECK_THROWS_AS(parse_source_uri("postgres://x/y"), mlops::ConfigError);
  CHECK_THROWS_AS(parse_source_uri("doltlite://relative.db"), mlops::ConfigError);
  try {
    parse_source_uri("mysql://ann:hunter2@host:0/db");
    FAIL("expected ConfigError");
  } catch (const mlops::ConfigError& e) {
    CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
  }
}
