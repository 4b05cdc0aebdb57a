// CSV reading for imports (internal): RFC 4180 fields, a header row, per-column type inference.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/uri.hpp"

namespace mlops::detail {

struct CsvData {
  std::vector<std::string> header;
  /// rows[r][c]; nullopt for an empty field (imported as NULL)
  std::vector<std::vector<std::optional<std::string>>> rows;
  std::vector<std::size_t> lines;  ///< 1-based line number where each row starts
  /// per column: 'i' (every value an integer), 'r' (every value a number), 't' otherwise
  std::vector<char> kinds;
};

/// A CSV source read whole: a file path, a file:// URI or an http(s) link.
struct CsvSource {
  std::string text;   ///< the file's bytes
  std::string shown;  ///< the source as messages may show it (secrets removed)
  std::string name;   ///< the file name, without query or secrets (for commit messages)
  std::string secrets_removed(std::string_view text) const;  ///< `text` without the source's secrets
  std::optional<Uri> uri;
};

/// Reads `source`: a path, file:///abs/path, or an http(s) URL (downloaded, credentials given to
/// libcurl apart from the URL).
/// @throws ConfigError for any other scheme (ftp://, s3://, ...); NotFoundError for a file that cannot
///         be opened; DataSourceError for a failed download. Messages name the redacted source.
CsvSource read_csv_source(const std::string& source);

/// Parses `text` (UTF-8, an optional BOM, LF or CRLF line ends). `what` names the source in messages.
/// @throws DataError naming `what` and the line for bad UTF-8, an unclosed quote, a ragged row, an
///         empty or duplicate header name
CsvData parse_csv(std::string_view text, const std::string& what);

/// Checks the key columns: present, no empty value, no duplicate key (line numbers in the message).
/// @throws ConfigError for a key column not in the header; DataError otherwise
void check_csv_keys(const CsvData& csv, const std::vector<std::string>& key, const std::string& what);

}  // namespace mlops::detail
