// File helpers shared by every concern (internal).
#pragma once

#include <filesystem>
#include <string_view>

namespace mlops::detail {

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never a part:
/// a temporary file in the same folder, fsync, rename over `path`, fsync of the folder.
/// @throws ConfigError naming the path and the system error; the temporary file is removed.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

}  // namespace mlops::detail
