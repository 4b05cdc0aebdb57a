"""01: a release manifest — the versions a release ships, its id (MD5) and its image tag.

C++ twin: examples/cpp/01_manifest.cpp
"""

import mlops

release = mlops.ReleaseManifest({"customer-1": 3, "customer-2": 7})
print("mlops   ", mlops.__version__)
print("manifest", release.to_json())
print("md5     ", release.md5)
print("image   ", release.image_tag("registry.example.com/adapters"))

nxt = release.with_version("customer-2", 8).with_version("customer-3", 1)
d = release.diff(nxt)
print("next    ", nxt.md5, f"({len(d.added)} added, {len(d.changed)} changed)")
