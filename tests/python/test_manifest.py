import collections.abc
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlops


def reference_json(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_md5_of_a_single_entry_is_the_md5_of_its_json():
    assert mlops.ReleaseManifest({"a": 1}).md5 == hashlib.md5(b'{"a":1}').hexdigest()


# Names: non-empty text without control characters (C0, DEL, C1), lone surrogates, '/', ':', '\\' or '"',
# not only spaces, not '.' or starting with '..', ≤ 255 bytes (a file name).
names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='/:\\"'), min_size=1, max_size=40
).filter(lambda s: len(s.encode("utf-8")) <= 255 and s.strip(" ") and s != "." and not s.startswith(".."))
manifests = st.dictionaries(names, st.integers(min_value=1, max_value=2**63 - 1), max_size=30)


@settings(max_examples=300, deadline=None)
@given(manifests)
def test_property_md5_matches_python_json_dumps(d):
    m = mlops.ReleaseManifest(d)
    text = reference_json(d)
    assert m.to_json() == text
    assert m.md5 == hashlib.md5(text.encode("utf-8")).hexdigest()
    assert m.sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert mlops.ReleaseManifest.from_json(text, m.md5) == m
    assert dict(m) == d


@pytest.mark.parametrize(
    "entries, needle",
    [
        ({"": 1}, "empty model name"),
        ({"x" * 257: 1}, "257 bytes"),
        ({"tab\tname": 1}, "control character"),
        ({"nel\x85": 1}, "control character"),
        ({"a": 0}, "'a': version 0"),
        ({"a": -1}, "version -1"),
        ({"a": 1.0}, "'a': version must be an integer >= 1, got 1.0 (float)"),
        ({"a": "3"}, "got '3' (str)"),
        ({"a": True}, "got True (bool)"),
        ({"a": None}, "got None"),
        ({"a": 2**64}, "out of range"),
        ({7: 1}, "model name must be a str"),
        ({"\ud800": 1}, "not valid UTF-8"),
    ],
)
def test_bad_entries_are_data_errors_naming_the_entry(entries, needle):
    with pytest.raises(mlops.DataError, match=None) as info:
        mlops.ReleaseManifest(entries)
    assert needle in str(info.value)


def test_from_json_rejections():
    for text, needle in [
        ('{"a":1,"a":1}', "duplicate key"),
        ('{"a":1.5}', "not an integer"),
        ('{"a":1e2}', "not an integer"),
        ('{"a":123456789012345678901}', "out of range"),
        ("[]", "must be a JSON object"),
        ('{"a":', "invalid JSON"),
    ]:
        with pytest.raises(mlops.DataError) as info:
            mlops.ReleaseManifest.from_json(text)
        assert needle in str(info.value), text
    with pytest.raises(mlops.IntegrityError):
        mlops.ReleaseManifest.from_json('{"a":1}', "0" * 32)


def test_mapping_protocol_equality_and_repr():
    m = mlops.ReleaseManifest({"b": 2, "a": 1})
    assert isinstance(m, collections.abc.Mapping)
    assert len(m) == 2
    assert list(m) == ["a", "b"]
    assert m["b"] == 2
    assert "a" in m and "z" not in m and 3 not in m
    with pytest.raises(KeyError):
        m["z"]
    assert m.get("z", 9) == 9
    assert dict(m.items()) == {"a": 1, "b": 2}
    assert m == mlops.ReleaseManifest({"a": 1, "b": 2})
    assert m != mlops.ReleaseManifest({"a": 1})
    assert m != {"a": 1, "b": 2}
    assert len({m, mlops.ReleaseManifest({"a": 1, "b": 2})}) == 1
    assert repr(m) == f"ReleaseManifest(md5='{m.md5}', {{'a': 1, 'b': 2}})"
    html = mlops.ReleaseManifest({"<x>": 1})._repr_html_()
    assert "&lt;x&gt;" in html and "<table>" in html


def test_image_tag_and_diff():
    a = mlops.ReleaseManifest({"keep": 1, "bump": 2, "drop": 3})
    b = a.with_version("bump", 5).without("drop").with_version("new", 1)
    assert a.image_tag("registry.example.com/adapters") == f"registry.example.com/adapters:{a.md5}"
    with pytest.raises(mlops.DataError, match="must be lowercase"):
        a.image_tag("Registry/Adapters")
    d = a.diff(b)
    assert d.added == [("new", 1)]
    assert d.removed == [("drop", 3)]
    assert d.changed == [("bump", 2, 5)]
    assert d and not a.diff(a)


def test_save_and_load_round_trip(tmp_path: pathlib.Path):
    m = mlops.ReleaseManifest({"kunde-ä": 3})
    path = tmp_path / "release.json"
    m.save(path)
    assert path.read_text(encoding="utf-8") == reference_json({"kunde-ä": 3})
    assert mlops.ReleaseManifest.load(path, m.md5) == m
    with pytest.raises(mlops.IntegrityError):
        mlops.ReleaseManifest.load(str(path), "f" * 32)
    with pytest.raises(mlops.NotFoundError):
        mlops.ReleaseManifest.load(tmp_path / "missing.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["release.json"]


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "mlops", *args], input=stdin, capture_output=True, text=True)


def test_cli_version_and_manifest_commands(tmp_path: pathlib.Path):
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"mlops {mlops.__version__}")

    r = run_cli("manifest", "create", "b=2", "a=1")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0] == '{"a":1,"b":2}'

    out = tmp_path / "m.json"
    r = run_cli("manifest", "create", "a=1", "-o", str(out), "--format", "json", "--repository", "reg.io/x")
    assert r.returncode == 0
    summary = json.loads(r.stdout)
    assert summary["md5"] == hashlib.md5(b'{"a":1}').hexdigest()
    assert summary["image"] == "reg.io/x:" + summary["md5"]

    assert run_cli("manifest", "hash", str(out)).stdout.strip() == summary["md5"]
    assert run_cli("manifest", "hash", "-", stdin='{"a":1}').stdout.strip() == summary["md5"]
    bad = run_cli("manifest", "hash", str(out), "--expect", "0" * 32)
    assert bad.returncode == 3 and "[mlops.integrity]" in bad.stderr
    assert run_cli("manifest", "hash", str(tmp_path / "nope.json")).returncode == 4
    assert run_cli("manifest", "create", "a=zero").returncode == 1
    assert run_cli("manifest", "bogus").returncode == 2

    other = tmp_path / "n.json"
    mlops.ReleaseManifest({"a": 2, "c": 1}).save(other)
    r = run_cli("manifest", "diff", str(out), str(other))
    assert r.stdout.splitlines() == ["+ c 1", "~ a 1 -> 2"]


def test_type_stubs_name_every_public_name():
    import ast
    stub = pathlib.Path(mlops.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    declared = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    declared |= {t.target.id for t in tree.body if isinstance(t, ast.AnnAssign)}
    public = {n for n in dir(mlops._core) if not n.startswith("__")}
    assert public - declared == set()
    assert (stub.parent / "py.typed").exists()
