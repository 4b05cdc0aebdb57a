// Parsing DoltSource URIs (internal).
#pragma once

#include <string>

#include "dolt/dialect.hpp"
#include "dolt/mysql.hpp"

namespace mlops::detail {

struct SourceUri {
  Backend backend = Backend::DoltLite;  // DoltLite, or Dolt for any mysql:// URI (refined on connect)
  std::string path;                     // DoltLite: the database file
  MySqlConfig mysql;                    // mysql://
  std::string branch;                   // mysql:// ?branch=
  std::string display;                  // without secrets
};

/// @throws ConfigError naming the redacted URI and the part at fault
SourceUri parse_source_uri(const std::string& uri);

}  // namespace mlops::detail
