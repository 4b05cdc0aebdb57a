// DoltSource on embedded DoltLite, loaded from the `doltlite` wheel (DOLTLITE_LIB or the configured path).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "mlops/dolt.hpp"
#include "mlops/error.hpp"
#include "required.hpp"

namespace fs = std::filesystem;

namespace {

std::string doltlite_lib() {
  if (const char* env = std::getenv("DOLTLITE_LIB"); env && *env) return env;
#ifdef MLOPS_TEST_DOLTLITE_LIB
  return MLOPS_TEST_DOLTLITE_LIB;
#else
  return {};
#endif
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("mlops-dolt-" + std::to_string(std::random_device{}()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

bool usable() {
  const auto lib = doltlite_lib();
  return mlops::test::require_component(!lib.empty() && fs::exists(lib),
                                        "libdoltlite.so not found (set DOLTLITE_LIB or install the doltlite wheel)");
}

mlops::DoltOptions options() {
  mlops::DoltOptions o;
  o.doltlite_lib = doltlite_lib();
  o.create = true;  // every test starts from a new file
  return o;
}

}  // namespace

TEST_CASE("DoltLite: commits, pinned dataset reads, diffs with a filter, counts") {
  if (!usable()) return;
  TempDir dir;
  mlops::DoltSource src((dir.path / "d.db").string(), options());
  CHECK(src.backend() == "doltlite");
  src.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a REAL, b REAL, label TEXT)");
  for (int i = 0; i < 10; ++i)
    src.execute("INSERT INTO t VALUES (?, ?, ?, ?)",
                {std::int64_t{i}, i * 0.5, static_cast<double>(i % 3), std::string(i % 2 ? "odd" : "even")});
  const auto first = src.commit("ten rows", "Ann <ann@example.com>");
  CHECK(first.hash.size() == 40);
  CHECK(first.author == "Ann");
  CHECK(src.head().hash == first.hash);
  CHECK_THROWS_AS(src.commit("again"), mlops::ConflictError);

  src.execute("UPDATE t SET a = 100 WHERE id = 2");
  src.execute("DELETE FROM t WHERE id = 9");
  src.execute("INSERT INTO t VALUES (10, 1, 1, 'even')");
  const auto second = src.commit("change");
  CHECK(src.resolve("HEAD~1") == first.hash);
  CHECK(src.log(5).at(0).hash == second.hash);

  mlops::DatasetSpec spec;
  spec.table = "t";
  spec.label = "label";
  spec.features = {"a", "b"};
  spec.at = first.hash;
  auto ds = src.dataset(spec);
  CHECK(ds.rows() == 10);
  CHECK(ds.cols() == 2);
  CHECK(ds.classes() == std::vector<std::string>{"even", "odd"});
  CHECK(ds.X()[2 * 2] == doctest::Approx(1.0));  // id 2 at the first commit: a = 1.0
  CHECK(ds.lineage().commit == first.hash);
  CHECK(ds.lineage().query.find(first.hash) != std::string::npos);
  CHECK(ds.content_digest() == src.dataset(spec).content_digest());

  spec.at = "HEAD";
  spec.where = "id < ?";
  spec.params = {std::int64_t{5}};
  auto head_ds = src.dataset(spec);
  CHECK(head_ds.rows() == 5);
  CHECK(head_ds.X()[2 * 2] == doctest::Approx(100.0));

  auto d = src.diff(first.hash, "HEAD", "t");
  CHECK(d.added == 1);
  CHECK(d.modified == 1);
  CHECK(d.removed == 1);
  CHECK(d.rows.rows() == 3);
  auto sliced = src.diff(first.hash, "HEAD", "t", "a < ?", {50.0});
  CHECK(sliced.removed == 2);  // id 9 deleted, id 2 left the slice (a = 100)
  CHECK(sliced.added == 1);
  CHECK(sliced.modified == 0);

  CHECK(src.count("t", "", {}, first.hash) == 10);
  CHECK(src.count("t", "label = ?", {std::string("odd")}) == 4);
  CHECK_THROWS_AS(src.resolve("no-such-branch"), mlops::NotFoundError);
  spec.features = {"a", "missing"};
  CHECK_THROWS_AS(src.dataset(spec), mlops::DataError);
}

TEST_CASE("DoltLite: CSV import commits, and a bad file changes nothing") {
  if (!usable()) return;
  TempDir dir;
  mlops::DoltSource src((dir.path / "c.db").string(), options());
  const auto good = dir.path / "good.csv";
  std::ofstream(good) << "id,x,name\n1,0.5,a\n2,1.5,b\n";
  const auto c1 = src.import_csv("items", good.string(), {"id"}, "import items");
  CHECK(src.count("items") == 2);
  const auto bad = dir.path / "bad.csv";
  std::ofstream(bad) << "id,x,name\n3,0.5,c\n4,1.5\n";
  try {
    src.import_csv("items", bad.string(), {"id"}, "bad import");
    FAIL("expected DataError");
  } catch (const mlops::DataError& e) {
    CHECK(std::string(e.what()).find("line 3") != std::string::npos);
  }
  CHECK(src.head().hash == c1.hash);
  CHECK(src.count("items", "", {}, std::nullopt) == 2);
}

TEST_CASE("DoltLite: datasets reads every slice in one scan, each exactly its single-slice read") {
  if (!usable()) return;
  TempDir dir;
  mlops::DoltSource src((dir.path / "s.db").string(), options());
  src.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, c TEXT, a REAL, label INTEGER)");
  for (int i = 0; i < 60; ++i) {
    const int id = (i * 37) % 60;  // inserted out of key order
    src.execute("INSERT INTO t VALUES (?, ?, ?, ?)",
                {std::int64_t{id}, std::string("c") + std::to_string(id % 4), id * 0.25, std::int64_t{id % 3 + (id % 4)}});
  }
  const auto first = src.commit("rows");
  src.execute("UPDATE t SET c = 'c0' WHERE c = 'c1'");
  src.commit("merge c1 into c0");

  mlops::DatasetSpec spec;
  spec.table = "t";
  spec.label = "label";
  spec.features = {"a"};
  spec.at = first.hash;
  const std::vector<mlops::SqlValue> values = {std::string("c3"), std::string("c1"), std::string("none"), std::string("c0")};
  const auto many = src.datasets(spec, "c", values);
  REQUIRE(many.size() == values.size());
  std::size_t total = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    mlops::DatasetSpec one = spec;
    one.where = "c = ?";
    one.params = {values[i]};
    if (many[i].rows() == 0) {
      // An empty slice stays in the map, so one adapter without rows fails alone; its own read is refused.
      CHECK_THROWS_WITH_AS(src.dataset(one), doctest::Contains("no row matches where 'c = ?'"), mlops::DataError);
      continue;
    }
    const auto want = src.dataset(one);
    CHECK(many[i].rows() == want.rows());
    CHECK(std::equal(many[i].X().begin(), many[i].X().end(), want.X().begin(), want.X().end()));
    CHECK(std::equal(many[i].y().begin(), many[i].y().end(), want.y().begin(), want.y().end()));
    CHECK(many[i].classes() == want.classes());
    CHECK(many[i].lineage().query == want.lineage().query);
    CHECK(many[i].lineage().params == want.lineage().params);
    CHECK(many[i].content_digest() == want.content_digest());
    total += many[i].rows();
  }
  CHECK(many[2].rows() == 0);
  CHECK(total == 45);  // c0, c1 and c3 at the first commit
  CHECK(src.datasets(spec, "c", {}).empty());
  CHECK_THROWS_AS(src.datasets(spec, "c", {std::string("c0"), std::string("c0")}), mlops::ConfigError);
  spec.where = "a > 1";
  CHECK_THROWS_AS(src.datasets(spec, "c", values), mlops::ConfigError);
}

TEST_CASE("DoltLite: merges fast-forward or with a commit, a conflict merges nothing and names the rows") {
  if (!usable()) return;
  TempDir dir;
  mlops::DoltSource src((dir.path / "m.db").string(), options());
  src.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)");
  src.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')");
  const auto base = src.commit("base");

  // A branch with commits of its own only: main moves forward to it.
  src.create_branch("ff");
  src.checkout("ff");
  src.execute("INSERT INTO t VALUES (4, 'd')");
  const auto ff_tip = src.commit("add 4");
  src.checkout("main");
  CHECK(src.merge_base("main", "ff") == base.hash);
  auto r = src.merge("ff");
  CHECK(r.fast_forward);
  CHECK_FALSE(r.up_to_date);
  CHECK(r.commit == ff_tip.hash);
  CHECK(src.resolve("main") == ff_tip.hash);
  CHECK(src.merge("ff").up_to_date);
  src.delete_branch("ff");
  CHECK(src.branches() == std::vector<std::string>{"main"});

  // Both sides changed different rows: a merge commit with two parents' rows.
  src.create_branch("side");
  src.checkout("side");
  src.execute("UPDATE t SET v = 'B' WHERE id = 2");
  src.commit("side edits 2");
  src.checkout("main");
  src.execute("UPDATE t SET v = 'C' WHERE id = 3");
  const auto main_tip = src.commit("main edits 3");
  r = src.merge("side", "merge side");
  CHECK_FALSE(r.fast_forward);
  CHECK(src.head().message == "merge side");
  CHECK(src.resolve("HEAD~1") == main_tip.hash);
  CHECK(src.query("SELECT v FROM t ORDER BY id").column("v").strings ==
        std::vector<std::string>{"a", "B", "C", "d"});

  // The same rows changed on both sides: nothing merged, the rows named, the working set clean.
  src.create_branch("clash");
  src.checkout("clash");
  src.execute("UPDATE t SET v = 'x' WHERE id = 1");
  src.execute("UPDATE t SET v = 'y' WHERE id = 4");
  src.commit("clash edits");
  src.checkout("main");
  src.execute("UPDATE t SET v = 'z' WHERE id IN (1, 4)");
  const auto before = src.commit("main edits 1 and 4");
  try {
    src.merge("clash");
    FAIL("the merge should have met conflicts");
  } catch (const mlops::MergeConflictError& e) {
    REQUIRE(e.conflicts().size() == 1);
    CHECK(e.conflicts()[0].table == "t");
    CHECK(e.conflicts()[0].keys == std::vector<std::string>{"id=1", "id=4"});
    CHECK(std::string(e.what()).find("id=4") != std::string::npos);
  }
  CHECK(src.resolve("main") == before.hash);
  CHECK(src.query("SELECT v FROM t WHERE id = 1").column("v").strings == std::vector<std::string>{"z"});
  CHECK_THROWS_AS(src.commit("nothing left over"), mlops::ConflictError);
  CHECK_THROWS_AS(src.delete_branch("clash"), mlops::ConflictError);  // not merged
  CHECK_THROWS_AS(src.delete_branch("main"), mlops::ConflictError);   // active
  CHECK_THROWS_AS(src.merge("nope"), mlops::NotFoundError);

  // Into another branch: the active branch stays; uncommitted changes block the merge.
  src.create_branch("feature", "clash");
  r = src.merge("feature", {}, "clash");
  CHECK(r.up_to_date);
  CHECK(src.active_branch() == "main");
  src.execute("INSERT INTO t VALUES (5, 'e')");
  CHECK_THROWS_AS(src.merge("side"), mlops::ConflictError);
  src.delete_branch("clash", true);
  CHECK(src.changed_tables("HEAD", "HEAD").empty());
  CHECK(src.changed_tables(base.hash, "HEAD") == std::vector<std::string>{"t"});
}

namespace {

// The ids (= feature `a`) a dataset read holds.
std::set<int> ids_of(const mlops::Dataset& d) {
  std::set<int> out;
  for (float v : d.X()) out.insert(static_cast<int>(v));
  return out;
}

}  // namespace

TEST_CASE("DoltLite: evaluation rows are held out by a hash of the key and keep their side across commits") {
  if (!usable()) return;
  TempDir dir;
  mlops::DoltSource src((dir.path / "h.db").string(), options());
  src.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, c TEXT, a REAL, label INTEGER)");
  for (int id = 0; id < 200; ++id)
    src.execute("INSERT INTO t VALUES (?, ?, ?, ?)",
                {std::int64_t{id}, std::string(id % 2 ? "x" : "y"), double(id), std::int64_t{id % 3}});
  const auto first = src.commit("rows");

  mlops::DatasetSpec spec;
  spec.table = "t";
  spec.label = "label";
  spec.features = {"a"};
  spec.at = first.hash;
  auto read = [&](mlops::HoldoutSide side, const std::string& salt, const std::string& at) {
    mlops::DatasetSpec s = spec;
    s.at = at;
    s.holdout = {side, salt, 0.25};
    return src.dataset(s);
  };
  const auto train = read(mlops::HoldoutSide::Train, "customer-1", first.hash);
  const auto eval = read(mlops::HoldoutSide::Evaluation, "customer-1", first.hash);
  const auto train_ids = ids_of(train), eval_ids = ids_of(eval);
  CHECK(train.rows() + eval.rows() == 200);
  for (int id : eval_ids) CHECK(train_ids.count(id) == 0);
  CHECK(eval.rows() > 30);  // about a quarter
  CHECK(eval.rows() < 70);
  CHECK(eval.lineage().holdout["side"] == "evaluation");
  CHECK(eval.lineage().holdout["salt"] == "customer-1");
  CHECK(src.dataset(spec).lineage().holdout.empty());
  // Another adapter holds out other rows.
  CHECK(ids_of(read(mlops::HoldoutSide::Evaluation, "customer-2", first.hash)) != eval_ids);

  // Unrelated inserts, updates of labels and features, and deletes move no row across.
  for (int id = 200; id < 260; ++id)
    src.execute("INSERT INTO t VALUES (?, 'x', ?, 1)", {std::int64_t{id}, double(id)});
  src.execute("UPDATE t SET label = 2, c = 'z' WHERE id < 50");
  src.execute("DELETE FROM t WHERE id >= 190 AND id < 200");
  const auto second = src.commit("more rows, relabelled, deleted");
  const auto eval2 = ids_of(read(mlops::HoldoutSide::Evaluation, "customer-1", second.hash));
  for (int id = 0; id < 190; ++id) CHECK_MESSAGE(eval_ids.count(id) == eval2.count(id), "row " << id);
  for (int id = 190; id < 200; ++id) CHECK(eval2.count(id) == 0);

  // One scan of many slices, each with its own salt, is each slice's own read.
  const std::vector<mlops::SqlValue> values = {std::string("x"), std::string("y")};
  mlops::DatasetSpec many_spec = spec;
  many_spec.holdout = {mlops::HoldoutSide::Evaluation, "", 0.25};
  const auto many = src.datasets(many_spec, "c", values, {"customer-1", "customer-2"});
  for (std::size_t i = 0; i < values.size(); ++i) {
    mlops::DatasetSpec one = many_spec;
    one.where = "c = ?";
    one.params = {values[i]};
    one.holdout.salt = i == 0 ? "customer-1" : "customer-2";
    const auto want = src.dataset(one);
    CHECK(many[i].content_digest() == want.content_digest());
    CHECK(many[i].lineage().holdout == want.lineage().holdout);
  }
  CHECK_THROWS_AS(src.datasets(many_spec, "c", values, {"only-one"}), mlops::ConfigError);

  // A table without a primary key cannot be split by key: a typed error naming the table.
  src.execute("CREATE TABLE nokey (a REAL, label INTEGER)");
  src.execute("INSERT INTO nokey VALUES (1.0, 1)");
  const auto third = src.commit("keyless");
  mlops::DatasetSpec keyless = spec;
  keyless.table = "nokey";
  keyless.at = third.hash;
  keyless.holdout = {mlops::HoldoutSide::Train, "customer-1", 0.2};
  CHECK_THROWS_WITH_AS(src.dataset(keyless), doctest::Contains("'nokey' has no primary key"), mlops::DataError);
  keyless.holdout = {mlops::HoldoutSide::Train, "customer-1", 1.0};
  CHECK_THROWS_AS(src.dataset(keyless), mlops::ConfigError);
}
