"""The ``mlops`` command line.

Exit codes (stable, for scripts and CI):
  0  success
  1  an mlops error (the message names what is wrong)
  2  bad command-line usage
  3  integrity failure (a hash did not match)
  4  something named was not found
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import mlops

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_NOT_FOUND = 4


def _parse_entries(pairs: Sequence[str]) -> dict:
    entries = {}
    for pair in pairs:
        name, sep, version = pair.rpartition("=")
        if not sep or not name:
            raise mlops.DataError(f"[mlops.data] expected NAME=VERSION, got {pair!r}")
        try:
            entries[name] = int(version)
        except ValueError:
            raise mlops.DataError(f"[mlops.data] manifest entry {name!r}: version {version!r} is not an integer") from None
    return entries


def _read_manifest(path: str, expected_md5: str | None) -> mlops.ReleaseManifest:
    if path == "-":
        return mlops.ReleaseManifest.from_json(sys.stdin.read(), expected_md5)
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
    d = a.diff(b)
    if args.format == "json":
        print(json.dumps({"from": a.md5, "to": b.md5,
                          "added": dict(d.added), "removed": dict(d.removed),
                          "changed": {n: [o, v] for n, o, v in d.changed}}, ensure_ascii=False))
    else:
        for name, version in d.added:
            print(f"+ {name} {version}")
        for name, version in d.removed:
            print(f"- {name} {version}")
        for name, old, new in d.changed:
            print(f"~ {name} {old} -> {new}")
        if not d:
            print("no changes")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="Versioned training data, batched adapter training, lineage and hash-named releases.",
        epilog="Exit codes: 0 ok, 1 mlops error, 2 usage, 3 integrity (hash mismatch), 4 not found.",
    )
    parser.add_argument("--version", action="version",
                        version=f"mlops {mlops.__version__} ({', '.join(mlops.components) or 'core only'})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except mlops.IntegrityError as e:
        print(f"mlops: {e}", file=sys.stderr)
        return EXIT_INTEGRITY
    except mlops.NotFoundError as e:
        print(f"mlops: {e}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except mlops.MlopsError as e:
        print(f"mlops: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
