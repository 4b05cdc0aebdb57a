#include "mlops/manifest.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/fs.hpp"
#include "core/hash.hpp"
#include "core/text.hpp"
#include "mlops/error.hpp"

namespace mlops {

namespace {

// Appends `s` as a JSON string the way Python's json.dumps(ensure_ascii=False) does. Names were
// validated (no control characters), so only '"' and '\\' need escaping.
void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace

std::optional<std::string> model_name_problem(std::string_view name) {
  if (name.find_first_not_of(' ') == std::string_view::npos) return "name is empty";
  if (name.size() > ReleaseManifest::kMaxNameBytes)
    return "name is " + std::to_string(name.size()) + " bytes, at most " +
           std::to_string(ReleaseManifest::kMaxNameBytes) + " allowed (a file name's limit)";
  if (auto bad = detail::utf8_error(name)) return "name is not valid UTF-8 (" + *bad + ")";
  if (auto pos = detail::find_control_character(name))
    return "name has a control character at byte " + std::to_string(*pos);
  if (auto pos = name.find_first_of("/:\\\""); pos != std::string_view::npos)
    return "name has " + detail::quote_for_message(name.substr(pos, 1)) +
           " (model names cannot hold '/', ':', '\\' or '\"')";
  if (name == "." || name.starts_with("..")) return "name is '.' or starts with '..' (it would name another path)";
  return std::nullopt;
}

void validate_manifest_entry(std::string_view name, std::int64_t version) {
  const std::string shown = detail::quote_for_message(name);
  if (name.empty()) throw DataError("manifest entry with an empty model name");
  if (auto why = model_name_problem(name)) throw DataError("manifest entry " + shown + ": " + *why);
  if (version < 1)
    throw DataError("manifest entry " + shown + ": version " + std::to_string(version) +
                    " is not an integer >= 1");
}

ReleaseManifest::ReleaseManifest() { seal(); }

ReleaseManifest::ReleaseManifest(Entries entries) : entries_(std::move(entries)) {
  for (const auto& [name, version] : entries_) validate_manifest_entry(name, version);
  seal();
}

void ReleaseManifest::seal() {
  // std::map orders std::string bytewise as unsigned char, which for valid UTF-8 is code point order:
  // the order Python's sort_keys gives.
  json_.clear();
  json_.push_back('{');
  bool first = true;
  for (const auto& [name, version] : entries_) {
    if (!first) json_.push_back(',');
    first = false;
    append_json_string(json_, name);
    json_.push_back(':');
    json_ += std::to_string(version);
  }
  json_.push_back('}');
  md5_ = detail::md5_hex(json_);
  sha256_ = detail::sha256_hex(json_);
}

bool ReleaseManifest::contains(std::string_view name) const { return entries_.find(std::string(name)) != entries_.end(); }

std::int64_t ReleaseManifest::at(std::string_view name) const {
  auto it = entries_.find(std::string(name));
  if (it == entries_.end()) throw NotFoundError("model " + detail::quote_for_message(name) + " is not in the manifest");
  return it->second;
}

ReleaseManifest ReleaseManifest::with_version(const std::string& name, std::int64_t version) const {
  Entries e = entries_;
  e[name] = version;
  return ReleaseManifest(std::move(e));
}

ReleaseManifest ReleaseManifest::without(std::string_view name) const {
  Entries e = entries_;
  if (e.erase(std::string(name)) == 0)
    throw NotFoundError("model " + detail::quote_for_message(name) + " is not in the manifest");
  return ReleaseManifest(std::move(e));
}

// ---- Parsing -------------------------------------------------------------------------------------------

namespace {

// A SAX handler that accepts exactly one flat object of string → integer and records the first problem.
class ManifestSax {
 public:
  using json = nlohmann::json;
  ReleaseManifest::Entries entries;
  std::string error;

  bool null() { return bad_value("null"); }
  bool boolean(bool) { return bad_value("a boolean"); }
  bool number_integer(json::number_integer_t v) { return value(v); }
  bool number_unsigned(json::number_unsigned_t v) {
    if (v > static_cast<json::number_unsigned_t>(std::numeric_limits<std::int64_t>::max()))
      return fail("version " + std::to_string(v) + " is out of range");
    return value(static_cast<std::int64_t>(v));
  }
  bool number_float(json::number_float_t, const std::string& text) {
    if (text.find_first_of(".eE") == std::string::npos) return fail("version " + text + " is out of range");
    return fail("version " + text + " is not an integer");
  }
  bool string(std::string&) { return bad_value("a string"); }
  bool binary(json::binary_t&) { return bad_value("binary data"); }
  bool start_object(std::size_t) {
    if (depth_++ == 0) {
      seen_root_ = true;
      return true;
    }
    return bad_value("an object");
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) {
    if (depth_ == 0) return fail_doc("a manifest must be a JSON object, got an array");
    return bad_value("an array");
  }
  bool end_array() { return true; }
  bool key(std::string& k) {
    if (!keys_.insert(k).second) return fail("duplicate key");
    key_ = k;
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    if (error.empty()) error = "invalid JSON at byte " + std::to_string(position) + ": " + strip_id(ex.what());
    return false;
  }
  bool saw_root_object() const { return seen_root_; }

 private:
  static std::string strip_id(const std::string& what) {
    auto pos = what.find("] ");
    return pos == std::string::npos ? what : what.substr(pos + 2);
  }
  bool value(std::int64_t v) {
    if (depth_ == 0) return fail_doc("a manifest must be a JSON object, got a number");
    try {
      validate_manifest_entry(key_, v);
    } catch (const DataError& e) {
      error = std::string(e.detail());
      return false;
    }
    entries.emplace(key_, v);
    return true;
  }
  bool bad_value(const std::string& what) {
    if (depth_ == 0) return fail_doc("a manifest must be a JSON object, got " + what);
    return fail("version is " + what + ", not an integer");
  }
  bool fail(const std::string& msg) {
    error = "manifest entry " + detail::quote_for_message(key_) + ": " + msg;
    return false;
  }
  bool fail_doc(const std::string& msg) {
    error = msg;
    return false;
  }
  int depth_ = 0;
  bool seen_root_ = false;
  std::string key_;
  std::set<std::string> keys_;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

ReleaseManifest ReleaseManifest::from_json(std::string_view text, std::optional<std::string_view> expected_md5) {
  ManifestSax sax;
  const bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &sax, nlohmann::json::input_format_t::json,
                                            /*strict=*/true, /*ignore_comments=*/false);
  if (!ok || !sax.error.empty())
    throw DataError(sax.error.empty() ? std::string("invalid manifest JSON") : sax.error);
  if (!sax.saw_root_object()) throw DataError("a manifest must be a JSON object");
  ReleaseManifest m(std::move(sax.entries));
  if (expected_md5 && lower(*expected_md5) != m.md5())
    throw IntegrityError("manifest MD5 is " + m.md5() + ", expected " + lower(*expected_md5));
  return m;
}

ReleaseManifest ReleaseManifest::load(const std::filesystem::path& path, std::optional<std::string_view> expected_md5) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path)) throw NotFoundError("manifest file " + path.string() + " does not exist");
    throw ConfigError("cannot read manifest file " + path.string() + ": " + std::strerror(errno));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  try {
    return from_json(buf.str(), expected_md5);
  } catch (const DataError& e) {
    throw DataError(path.string() + ": " + std::string(e.detail()));
  } catch (const IntegrityError& e) {
    throw IntegrityError(path.string() + ": " + std::string(e.detail()));
  }
}

// ---- Docker references ---------------------------------------------------------------------------------

void validate_docker_repository(std::string_view repository) {
  // Docker's reference grammar (distribution/reference): [domain[:port]/]path-component(/path-component)*
  static const std::regex kPathComponent("[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*");
  static const std::regex kDomain(
      "(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
      "|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?");
  const std::string repo(repository);
  const std::string shown = detail::quote_for_message(repository);
  if (repo.empty()) throw DataError("image repository is empty");
  if (repo.size() > 255) throw DataError("image repository " + shown + " is longer than 255 characters");
  std::string rest = repo;
  auto slash = repo.find('/');
  if (slash != std::string::npos) {
    std::string first = repo.substr(0, slash);
    bool is_domain = first.find_first_of(".:") != std::string::npos || first == "localhost" ||
                     first.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos;
    if (is_domain) {
      if (!std::regex_match(first, kDomain))
        throw DataError("image repository " + shown + ": registry host " + detail::quote_for_message(first) +
                        " is not a valid host[:port]");
      rest = repo.substr(slash + 1);
    }
  }
  if (rest.find('@') != std::string::npos)
    throw DataError("image repository " + shown + " carries a digest; give the repository alone");
  std::size_t start = 0;
  while (true) {
    auto end = rest.find('/', start);
    std::string comp = rest.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!std::regex_match(comp, kPathComponent)) {
      std::string why = comp.find(':') != std::string::npos
                            ? " carries a tag; give the repository alone (the tag is the release MD5)"
                            : ": path component " + detail::quote_for_message(comp) +
                                  " must be lowercase letters and digits joined by '.', '_', '__' or '-'";
      throw DataError("image repository " + shown + why);
    }
    if (end == std::string::npos) break;
    start = end + 1;
  }
}

std::string ReleaseManifest::image_tag(std::string_view repository) const {
  validate_docker_repository(repository);
  return std::string(repository) + ":" + md5_;
}

ManifestDiff ReleaseManifest::diff(const ReleaseManifest& other) const {
  ManifestDiff d;
  auto a = entries_.begin();
  auto b = other.entries_.begin();
  while (a != entries_.end() || b != other.entries_.end()) {
    if (b == other.entries_.end() || (a != entries_.end() && a->first < b->first)) {
      d.removed.push_back({a->first, a->second});
      ++a;
    } else if (a == entries_.end() || b->first < a->first) {
      d.added.push_back({b->first, b->second});
      ++b;
    } else {
      if (a->second != b->second) d.changed.push_back({a->first, a->second, b->second});
      ++a;
      ++b;
    }
  }
  return d;
}

void ReleaseManifest::save(const std::filesystem::path& path) const {
  detail::write_file_atomically(path, json_);
}

}  // namespace mlops
