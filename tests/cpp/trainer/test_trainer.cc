#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "mlops/adapter.hpp"
#include "mlops/error.hpp"
#include "mlops/trainer.hpp"
#include "trainer/safetensors.hpp"
#include "blobs.hpp"

using namespace mlops;

namespace {

using test::blobs;

AdapterSpec spec(const std::string& name, Dataset ds, std::size_t hidden = 0) {
  AdapterSpec s;
  s.name = name;
  s.dataset = std::move(ds);
  s.hidden = static_cast<std::int64_t>(hidden);
  s.epochs = 5;
  s.batch_size = 32;
  s.learning_rate = 0.05;
  s.l2 = 1e-4;
  s.validation_fraction = 0.2;
  return s;
}

TrainerOptions cpu(unsigned threads = 2, std::uint64_t seed = 7) {
  TrainerOptions o;
  o.device = "cpu";
  o.threads = threads;
  o.seed = seed;
  return o;
}

std::filesystem::path temp_path(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("mlops_trainer_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

}  // namespace

TEST_CASE("softmax and MLP adapters learn separable blobs on the CPU") {
  CudaTrainer trainer(cpu());
  CHECK(trainer.device() == "cpu");
  auto results = trainer.fit({spec("soft", blobs(600, 10, 3, 1)), spec("mlp", blobs(600, 10, 3, 2), 16)});
  REQUIRE(results.size() == 2);
  for (const auto& r : results) {
    INFO(r.name);
    REQUIRE(r.history.epochs.size() == 5);
    CHECK(r.history.epochs.back().val_accuracy > 0.95);
    CHECK(r.history.epochs.back().loss < r.history.epochs.front().loss);
    CHECK(r.device == "cpu");
    CHECK(r.lineage["seed"] == 7);
  }
  CHECK(results[1].adapter.hidden() == 16);
  CHECK(results[1].adapter.tensor_names() == std::vector<std::string>{"W1", "b1", "W2", "b2"});
}

TEST_CASE("same seed gives bit-identical weights, one adapter alone equals it inside a batch") {
  std::vector<AdapterSpec> many;
  for (int i = 0; i < 12; ++i) many.push_back(spec("a" + std::to_string(i), blobs(300 + 17 * i, 8, 2 + i % 3, i), i % 2 ? 6 : 0));
  auto r1 = CudaTrainer(cpu(2)).fit(many);
  auto r2 = CudaTrainer(cpu(2)).fit(many);
  auto r3 = CudaTrainer(cpu(1)).fit({many[5]});
  for (std::size_t i = 0; i < many.size(); ++i) {
    auto w1 = r1[i].adapter.weights();
    auto w2 = r2[i].adapter.weights();
    REQUIRE(w1.size() == w2.size());
    CHECK(std::equal(w1.begin(), w1.end(), w2.begin()));
  }
  auto a = r1[5].adapter.weights();
  auto b = r3[0].adapter.weights();
  CHECK(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  const auto r4 = CudaTrainer(cpu(2, 8)).fit({many[5]});  // weights() is a view: the result must outlive it
  auto c = r4[0].adapter.weights();
  CHECK_FALSE(std::equal(a.begin(), a.end(), c.begin(), c.end()));
}

TEST_CASE("bad input is a typed error naming the adapter and the field, before training") {
  CudaTrainer trainer(cpu());
  int epochs_seen = 0;
  auto cb = [&](const std::string&, int, const EpochMetrics&) { ++epochs_seen; };
  auto good = spec("good", blobs(100, 4, 2, 3));
  auto expect = [&](AdapterSpec bad, const std::string& field, bool data_error) {
    bad.name = "bad-one";
    INFO(field);
    try {
      trainer.fit({good, bad}, cb);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find("bad-one") != std::string::npos);
      CHECK(std::string(e.what()).find(field) != std::string::npos);
      CHECK(e.id() == (data_error ? "mlops.data" : "mlops.config"));
    }
  };
  auto s = good;
  s.batch_size = 0;
  expect(s, "batch_size", false);
  s = good;
  s.learning_rate = 0;
  expect(s, "learning_rate", false);
  s = good;
  s.epochs = 0;
  expect(s, "epochs", false);
  s = good;
  s.optimizer = static_cast<Optimizer>(7);  // no such optimiser
  expect(s, "optimizer", false);
  s = good;
  s.class_weights = {1.0};
  expect(s, "class_weights", false);
  s = good;
  s.dataset = Dataset({}, 0, 4, {}, {"a", "b"});
  expect(s, "empty", true);
  s = good;
  s.dataset = Dataset({1, 2, 3, 4}, 2, 2, {0, 0}, {"a"});
  expect(s, "classes", true);
  s = good;
  s.dataset = Dataset({1, 2, 3, 4}, 2, 2, {0, 0}, {"a", "b"});
  expect(s, "single class", true);
  s = good;
  s.dataset = Dataset({1, NAN, 3, 4}, 2, 2, {0, 1}, {"a", "b"});
  expect(s, "field X", true);
  s = good;
  s.dataset = Dataset({1, 2, 3, 4}, 2, 2, {0, 5}, {"a", "b"});
  expect(s, "field y", true);
  CHECK_THROWS_AS(Dataset({1, 2, 3}, 2, 2, {0, 1}, {"a", "b"}), DataError);
  CHECK(epochs_seen == 0);
  CHECK_THROWS_AS(trainer.fit({good, good}), ConfigError);
}

TEST_CASE("device strings") {
  CHECK_THROWS_AS(CudaTrainer(TrainerOptions{"tpu"}), ConfigError);
  CHECK_THROWS_AS(CudaTrainer(TrainerOptions{"cuda:x"}), ConfigError);
  CudaTrainer autod(TrainerOptions{"auto"});
  if (autod.device() == "cpu") {
    CHECK(autod.device_reason().find("CPU") != std::string::npos);
    // Without a usable GPU, asking for one is an error that says why, never a silent fallback.
    CHECK_THROWS_AS(CudaTrainer(TrainerOptions{"cuda"}), DeviceError);
    CHECK_THROWS_AS(CudaTrainer(TrainerOptions{"cuda:1"}), DeviceError);
  } else {
    CHECK(autod.device().rfind("cuda:0 (", 0) == 0);
  }
}

TEST_CASE("early stopping keeps the best epoch, callbacks see every epoch") {
  auto s = spec("es", blobs(400, 6, 3, 9, 3.0f));
  s.epochs = 60;
  s.patience = 2;
  s.learning_rate = 0.5;
  s.optimizer = Optimizer::sgd;
  std::vector<int> seen;
  std::size_t last_done = 0, last_total = 0;
  auto r = CudaTrainer(cpu()).fit(
      {s}, [&](const std::string& n, int e, const EpochMetrics&) { CHECK(n == "es"); seen.push_back(e); },
      [&](std::size_t d, std::size_t t) { last_done = d, last_total = t; })[0];
  REQUIRE(r.history.stopped_early);
  CHECK(r.history.epochs.size() < 60);
  CHECK(seen.size() == r.history.epochs.size());
  CHECK(last_done == last_total);
  double best = 1e300;
  for (const auto& m : r.history.epochs) best = std::min(best, m.val_loss);
  CHECK(r.history.epochs[static_cast<std::size_t>(r.history.best_epoch - 1)].val_loss == best);
}

TEST_CASE("a throwing callback stops fit and is rethrown") {
  std::vector<AdapterSpec> v;
  for (int i = 0; i < 4; ++i) v.push_back(spec("x" + std::to_string(i), blobs(200, 4, 2, i)));
  CHECK_THROWS_WITH(CudaTrainer(cpu()).fit(v, [](const std::string&, int, const EpochMetrics&) {
    throw std::runtime_error("stop here");
  }),
                    "stop here");
}

TEST_CASE("adapter save/load round trip, predictions, integrity errors") {
  auto r = CudaTrainer(cpu()).fit({spec("rt", blobs(300, 5, 3, 4), 4)})[0];
  auto path = temp_path("rt.safetensors");
  r.adapter.save(path);
  auto back = Adapter::load(path);
  CHECK(back.classes() == r.adapter.classes());
  auto w0 = r.adapter.weights();
  auto w1 = back.weights();
  CHECK(std::equal(w0.begin(), w0.end(), w1.begin(), w1.end()));
  CHECK(back.lineage()["seed"] == 7);
  auto ds = blobs(300, 5, 3, 4);
  auto idx = back.predict_indices(ds.X(), ds.rows());
  auto labels = back.predict(ds.X(), ds.rows());
  std::size_t correct = 0;
  for (std::size_t i = 0; i < ds.rows(); ++i) correct += idx[i] == ds.y()[i];
  CHECK(correct > 280);
  CHECK(labels[0] == back.classes()[static_cast<std::size_t>(idx[0])]);
  CHECK_THROWS_AS((void)back.predict(std::span<const float>(ds.X()).subspan(1), ds.rows()), DataError);

  const std::string bytes = r.adapter.to_bytes();
  CHECK_THROWS_AS(Adapter::from_bytes(bytes.substr(0, bytes.size() - 3)), IntegrityError);
  CHECK_THROWS_AS(Adapter::from_bytes(bytes.substr(0, 5)), IntegrityError);
  std::string flipped = bytes;
  flipped[flipped.size() - 10] ^= 0x40;
  CHECK_THROWS_AS(Adapter::from_bytes(flipped), IntegrityError);
  std::string bad_header = bytes;
  bad_header[12] = '\x01';
  CHECK_THROWS_AS(Adapter::from_bytes(bad_header), IntegrityError);
  CHECK_THROWS_AS(Adapter::load(temp_path("missing.safetensors")), NotFoundError);
  std::filesystem::remove_all(path.parent_path());
}

TEST_CASE("params() is a deterministic flat map") {
  auto s = spec("p", blobs(50, 2, 2, 1));
  s.class_weights = {1.0, 2.5};
  auto p = s.params();
  CHECK(p.at("learning_rate") == "0.05");
  CHECK(p.at("class_weights") == "[1,2.5]");
  CHECK(p.at("optimizer") == "adam");
  CHECK(p == s.params());
  CHECK(p.count("name") == 0);
}
