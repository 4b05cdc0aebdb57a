// Embedded DoltLite, loaded with dlopen (internal).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "dolt/connection.hpp"

namespace mlops::detail {

/// The libdoltlite.so to load: `explicit_path`, else $DOLTLITE_LIB, else the default set by
/// set_default_doltlite_library(), else next to the library holding this code (or its Python package's
/// sibling `doltlite/_lib`). @throws ConfigError when none exists
std::string find_doltlite_library(const std::string& explicit_path);

/// Opens (read_only: never creates) a DoltLite database file; `name` may carry "@rev".
/// @throws DataSourceError naming the file
std::unique_ptr<Connection> open_doltlite(const std::string& lib_path, const std::string& name, bool read_only);

}  // namespace mlops::detail
