// 01: a release manifest — the versions a release ships, its id (MD5) and its image tag.
// Python twin: examples/python/01_manifest.py
#include <iostream>

#include <mlops/mlops.hpp>

int main() {
  try {
    mlops::ReleaseManifest release({{"customer-1", 3}, {"customer-2", 7}});
    std::cout << "mlops " << mlops::version() << "\n";
    std::cout << "manifest " << release.to_json() << "\n";
    std::cout << "md5      " << release.md5() << "\n";
    std::cout << "image    " << release.image_tag("registry.example.com/adapters") << "\n";

    auto next = release.with_version("customer-2", 8).with_version("customer-3", 1);
    auto d = release.diff(next);
    std::cout << "next     " << next.md5() << " (" << d.added.size() << " added, " << d.changed.size()
              << " changed)\n";
  } catch (const mlops::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
