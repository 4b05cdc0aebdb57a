#include "dolt/csv.hpp"

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <unordered_map>

#include "core/text.hpp"
#include "http/http.hpp"
#include "mlops/error.hpp"

namespace mlops::detail {

namespace {

// A leading '+' is allowed once and not before a sign ("+-5" is text: stoll and the SQL side refuse it).
const char* after_plus(std::string_view s) {
  if (s.empty() || s[0] != '+') return s.data();
  return s.size() > 1 && (s[1] == '-' || s[1] == '+') ? nullptr : s.data() + 1;
}

bool is_int(std::string_view s) {
  std::int64_t v = 0;
  const char* b = after_plus(s);
  if (b == nullptr) return false;
  auto [end, ec] = std::from_chars(b, s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size() && b != end;
}

bool is_real(std::string_view s) {
  double v = 0;
  const char* b = after_plus(s);
  if (b == nullptr) return false;
  auto [end, ec] = std::from_chars(b, s.data() + s.size(), v, std::chars_format::general);
  return ec == std::errc() && end == s.data() + s.size() && b != end;
}

std::string read_file(const std::string& path, const std::string& shown) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw NotFoundError("CSV file " + shown + " cannot be opened");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string CsvSource::secrets_removed(std::string_view message) const {
  return uri ? uri->scrub(message) : std::string(message);
}

CsvSource read_csv_source(const std::string& source) {
  CsvSource out;
  out.uri = Uri::parse(source);
  if (!out.uri) {
    out.shown = quote_for_message(source, 300);
    out.name = std::filesystem::path(source).filename().string();
    out.text = read_file(source, out.shown);
    return out;
  }
  const Uri& u = *out.uri;
  out.shown = u.redacted();
  out.name = u.file_name();
  if (u.scheme == "file") {
    if (u.has_userinfo || (!u.host.empty() && u.host != "localhost") || u.has_query)
      throw ConfigError("CSV source " + out.shown + ": a file:// URI takes a local path only (file:///abs/file.csv)");
    out.text = read_file(percent_decode(u.path), out.shown);
  } else if (u.scheme == "http" || u.scheme == "https") {
    auto tmp = std::filesystem::temp_directory_path() /
               ("mlops-import-" + std::to_string(std::random_device{}()) + ".csv");
    // TLS is verified against the system's CAs, or the PEM bundle SSL_CERT_FILE names (OpenSSL's variable).
    TlsOptions tls;
    if (const char* ca = std::getenv("SSL_CERT_FILE"); ca != nullptr && *ca != '\0') tls.ca_path = ca;
    http_download(source, tmp, tls);
    try {
      out.text = read_file(tmp.string(), out.shown);
    } catch (...) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw;
    }
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
  } else {
    throw ConfigError("CSV source " + out.shown + ": scheme " + quote_for_message(u.scheme) +
                      " is not supported (use a file path, file://, http:// or https://)");
  }
  return out;
}

CsvData parse_csv(std::string_view text, const std::string& what) {
  CsvData out;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  std::size_t i = 0, line = 1;
  const std::size_t n = text.size();
  std::vector<std::optional<std::string>> record;
  bool header_done = false;
  while (i < n) {
    const std::size_t record_line = line;
    record.clear();
    // One record: fields until an unquoted line end or the end of the text.
    while (true) {
      std::string field;
      bool quoted = false;
      if (i < n && text[i] == '"') {
        quoted = true;
        ++i;
        while (true) {
          if (i >= n) throw DataError(what + ", line " + std::to_string(record_line) + ": a quoted field is not closed");
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n') ++line;
          field += c;
          ++i;
        }
        if (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r')
          throw DataError(what + ", line " + std::to_string(line) + ": text after a closing quote");
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          if (text[i] == '"')
            throw DataError(what + ", line " + std::to_string(line) + ": a quote inside an unquoted field");
          field += text[i++];
        }
      }
      if (auto why = utf8_error(field))
        throw DataError(what + ", line " + std::to_string(line) + ": field " + std::to_string(record.size() + 1) +
                        " is not valid UTF-8 (" + *why + ")");
      if (field.empty() && !quoted) record.emplace_back(std::nullopt);
      else record.emplace_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < n && text[i] == '\r') ++i;
      if (i < n && text[i] == '\n') ++i;
      ++line;
      break;
    }
    if (record.size() == 1 && !record[0]) continue;  // a blank line
    if (!header_done) {
      std::unordered_map<std::string, std::size_t> seen;
      for (std::size_t c = 0; c < record.size(); ++c) {
        if (!record[c] || record[c]->empty())
          throw DataError(what + ", line " + std::to_string(record_line) + ": header column " + std::to_string(c + 1) + " is empty");
        if (!seen.emplace(*record[c], c).second)
          throw DataError(what + ", line " + std::to_string(record_line) + ": header column " +
                          quote_for_message(*record[c]) + " appears twice");
        out.header.push_back(*record[c]);
      }
      header_done = true;
      continue;
    }
    if (record.size() != out.header.size())
      throw DataError(what + ", line " + std::to_string(record_line) + ": " + std::to_string(record.size()) +
                      " fields, but the header has " + std::to_string(out.header.size()));
    out.rows.push_back(record);
    out.lines.push_back(record_line);
  }
  if (!header_done) throw DataError(what + " is empty (no header row)");
  out.kinds.assign(out.header.size(), 'i');
  for (const auto& row : out.rows)
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (!row[c] || out.kinds[c] == 't') continue;
      if (out.kinds[c] == 'i' && !is_int(*row[c])) out.kinds[c] = 'r';
      if (out.kinds[c] == 'r' && !is_real(*row[c])) out.kinds[c] = 't';
    }
  return out;
}

void check_csv_keys(const CsvData& csv, const std::vector<std::string>& key, const std::string& what) {
  std::vector<std::size_t> idx;
  for (const auto& k : key) {
    std::size_t c = 0;
    while (c < csv.header.size() && csv.header[c] != k) ++c;
    if (c == csv.header.size())
      throw ConfigError("primary key column " + quote_for_message(k) + " is not in the header of " + what);
    idx.push_back(c);
  }
  std::unordered_map<std::string, std::size_t> seen;
  for (std::size_t r = 0; r < csv.rows.size(); ++r) {
    std::string composite;
    for (std::size_t c : idx) {
      const auto& v = csv.rows[r][c];
      if (!v)
        throw DataError(what + ", line " + std::to_string(csv.lines[r]) + ": primary key column " +
                        quote_for_message(csv.header[c]) + " is empty");
      // Integer keys compare as numbers ("007" and "7" are one key).
      std::string norm = *v;
      if (csv.kinds[c] == 'i') norm = std::to_string(std::strtoll(v->c_str(), nullptr, 10));
      composite += std::to_string(norm.size()) + ":" + norm;
    }
    auto [it, fresh] = seen.emplace(composite, csv.lines[r]);
    if (!fresh)
      throw DataError(what + ", line " + std::to_string(csv.lines[r]) + ": duplicate primary key (first at line " +
                      std::to_string(it->second) + ")");
  }
}

}  // namespace mlops::detail
