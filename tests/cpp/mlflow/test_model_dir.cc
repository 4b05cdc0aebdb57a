// The model directory's one owner: what it writes is what it (and the Python loader) reads.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "mlflow/model_dir.hpp"
#include "mlops/config.hpp"
#include "mlops/error.hpp"

using namespace mlops;
namespace fs = std::filesystem;

TEST_CASE("model_dir: the text files name the weights, the requirements and the lineage") {
  const auto files = model_dir::text_files("model", "weights \"v1\".safetensors", std::string(64, 'a'), "run-1",
                                           {{"adapter", "a1"}});
  CHECK(files.mlmodel.find("loader_module: mlops.pyfunc\n") != std::string::npos);
  CHECK(files.mlmodel.find("weights_sha256: \"" + std::string(64, 'a') + "\"\n") != std::string::npos);
  CHECK(files.requirements == model_dir::requirements_text());
  CHECK_THROWS_AS(model_dir::text_files("model", "w", "", "r", nlohmann::json::array()), DataError);

  const fs::path dir = fs::temp_directory_path() / ("mlops-model-dir-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  CHECK_THROWS_AS(model_dir::read(dir), IntegrityError);  // no MLmodel: not a model directory
  std::ofstream(dir / model_dir::kMlmodel) << files.mlmodel;
  std::ofstream(dir / model_dir::kRequirements) << "# comment\n" << files.requirements << "\n";
  const auto read = model_dir::read(dir);
  CHECK(read.weights == "weights \"v1\".safetensors");  // a quoted name survives the round trip
  CHECK(read.requirements == std::vector<std::string>{"mlops-dolt==" MLOPS_VERSION_STRING, "numpy", "pandas"});
  CHECK(read.lineage["adapter"] == "a1");  // the lineage rides in MLmodel's metadata
  CHECK(read.lineage["run_id"] == "run-1");
  CHECK(read.lineage["weights_sha256"] == std::string(64, 'a'));
  fs::remove_all(dir);
}
