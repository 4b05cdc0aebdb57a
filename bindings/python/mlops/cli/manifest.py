"""``mlops manifest create|hash|diff``: release manifests without a server."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import mlops

from .common import EXIT_OK, EXIT_USAGE, _print_diff


def _parse_entries(pairs: Sequence[str]) -> dict:
    entries = {}
    for pair in pairs:
        name, sep, version = pair.rpartition("=")
        if not sep or not name:
            raise mlops.DataError(f"[mlops.data] expected NAME=VERSION, got {pair!r}")
        if name in entries:
            raise mlops.DataError(f"[mlops.data] manifest entry {name!r} is given twice "
                                  f"({entries[name]} and {version}); name each model once")
        try:
            entries[name] = int(version)
        except ValueError:
            raise mlops.DataError(f"[mlops.data] manifest entry {name!r}: version {version!r} is not an integer") from None
    return entries


def _read_manifest(path: str, expected_md5: str | None) -> mlops.ReleaseManifest:
    if path == "-":
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise mlops.DataError(f"[mlops.data] the manifest on standard input is not UTF-8 text (byte {e.start})") from None
        return mlops.ReleaseManifest.from_json(text, expected_md5)
    return mlops.ReleaseManifest.load(path, expected_md5)


def _manifest_summary(m: mlops.ReleaseManifest, repository: str | None) -> dict:
    out = {"md5": m.md5, "sha256": m.sha256, "models": len(m), "manifest": m.to_dict()}
    if repository:
        out["image"] = m.image_tag(repository)
    return out


def _cmd_manifest_create(args: argparse.Namespace) -> int:
    m = mlops.ReleaseManifest(_parse_entries(args.entries))
    if args.output:
        m.save(args.output)
    if args.format == "json":
        print(json.dumps(_manifest_summary(m, args.repository), ensure_ascii=False))
    else:
        print(m.to_json() if not args.output else m.md5)
        if args.repository:
            print(m.image_tag(args.repository))
    return EXIT_OK


def _cmd_manifest_hash(args: argparse.Namespace) -> int:
    m = _read_manifest(args.path, args.expect)
    if args.format == "json":
        print(json.dumps(_manifest_summary(m, args.repository), ensure_ascii=False))
    else:
        print(m.sha256 if args.sha256 else m.md5)
        if args.repository:
            print(m.image_tag(args.repository))
    return EXIT_OK


def _cmd_manifest_diff(args: argparse.Namespace) -> int:
    a = _read_manifest(args.old, None)
    b = _read_manifest(args.new, None)
    _print_diff(args, a.diff(b), a.md5, b.md5)
    return EXIT_OK


# ---- Pipeline commands ------------------------------------------------------------------------------


def add_commands(sub) -> None:
    man = sub.add_parser("manifest", help="create, hash and compare release manifests",
                         description="Release manifests: model name -> version, named by the MD5 of their canonical JSON.")
    man_sub = man.add_subparsers(dest="manifest_command", metavar="ACTION")

    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")

    create = man_sub.add_parser("create", parents=[fmt], help="build a manifest from NAME=VERSION pairs",
                                description="Build a manifest and print its canonical JSON (or save it).")
    create.add_argument("entries", nargs="*", metavar="NAME=VERSION")
    create.add_argument("-o", "--output", help="write the manifest here atomically and print its MD5")
    create.add_argument("--repository", help="also print the image tag REPOSITORY:<md5>")
    create.set_defaults(func=_cmd_manifest_create)

    hsh = man_sub.add_parser("hash", parents=[fmt], help="verify a manifest file and print its MD5",
                             description="Read a manifest (a file or - for standard input), validate it, print its MD5.")
    hsh.add_argument("path", help="manifest file, or - for standard input")
    hsh.add_argument("--expect", metavar="MD5", help="fail with exit code 3 unless the MD5 is this")
    hsh.add_argument("--sha256", action="store_true", help="print the SHA-256 instead of the MD5")
    hsh.add_argument("--repository", help="also print the image tag REPOSITORY:<md5>")
    hsh.set_defaults(func=_cmd_manifest_hash)

    diff = man_sub.add_parser("diff", parents=[fmt], help="compare two manifests",
                              description="List models added (+), removed (-) and changed (~) from OLD to NEW.")
    diff.add_argument("old")
    diff.add_argument("new")
    diff.set_defaults(func=_cmd_manifest_diff)

    man.set_defaults(func=lambda _args: (man.print_help(), EXIT_USAGE)[1])
