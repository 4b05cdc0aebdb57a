// A reader and writer of the safetensors format (float32 tensors and string metadata only):
// 8-byte little-endian header length N, N bytes of JSON header, then the tensor bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mlops::detail {

struct TensorView {
  std::string name;
  std::vector<std::size_t> shape;
  std::span<const float> data;  ///< product(shape) values
};

struct LoadedTensor {
  std::vector<std::size_t> shape;
  std::vector<float> data;
};

struct SafetensorsFile {
  std::map<std::string, std::string> metadata;
  std::map<std::string, LoadedTensor> tensors;
};

/// The file bytes: tensors in the given order, float32 little-endian, header padded to 8 bytes.
/// Metadata key "checksum" is added: "sha256:" + hex SHA-256 of the tensor bytes followed by every other
/// metadata entry in key order, each as key NUL value NUL.
std::string write_safetensors(const std::vector<TensorView>& tensors, std::map<std::string, std::string> metadata);

/// Parses and checks the bytes (header bounds, JSON, dtypes, shapes, offsets, checksum when present).
/// @throws IntegrityError naming `what` and what is wrong
SafetensorsFile read_safetensors(std::string_view bytes, const std::string& what);

}  // namespace mlops::detail
