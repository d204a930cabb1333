"""``python -m datagen inspect MANIFEST``: what a dataset holds, and whether its shards are intact.

Prints counts (scenario mix, ops, attributes, categories, quarantined and skipped by reason), a few
sample instructions, then checks every shard's size, sha256 and sample count. Exit status 1 when
any manifest is unreadable or any shard fails a check.
"""
from __future__ import annotations

import sys
from itertools import islice

from datagen.cli.argtypes import non_negative_int
from datagen.shards import ManifestError, load_manifest, manifest_paths, read_samples, verify_manifest
from datagen.shards.manifest import RESERVED_KEYS


def add_arguments(parser) -> None:
    parser.add_argument("manifest", help="a manifest JSON, or a folder of them (e.g. manifests/)")
    parser.add_argument("--samples", type=non_negative_int, default=5, metavar="N", help="sample instructions to show")
    parser.add_argument("--no-verify", action="store_true", help="skip reading every shard to check it")


def _counts_line(title: str, counts: dict) -> str:
    items = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"  {title:<12} {items or '-'}"


def _example_instructions(manifest: dict, path: str, n: int) -> list[tuple[str, str]]:
    """``(op, instruction)`` of the first ``n`` samples: from the Parquet index when it is there
    (no image decoding), else from the shards."""
    index = manifest.get("index") or {}
    if index.get("path"):
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(index["path"], columns=["op", "instruction"]).slice(0, n)
            return list(zip(table.column("op").to_pylist(), table.column("instruction").to_pylist()))
        except (OSError, ValueError, KeyError):
            pass
    return [(s.op, s.instruction) for s in islice(read_samples(path), n)]


def _describe(path: str, manifest: dict, n_examples: int) -> None:
    shards = manifest["shardlist"]
    nbytes = sum(s.get("filesize", 0) for s in shards)
    print(f"{manifest.get('name', path)}  ({path})")
    print(f"  samples      {sum(s['nsamples'] for s in shards)} in {len(shards)} shards, {nbytes / 1e6:.1f} MB")
    print(f"  pipeline     {manifest.get('pipeline_version', '?')}, created {manifest.get('created', '?')}")
    counts = manifest.get("counts", {})
    for title in ("scenario", "op", "attribute", "category"):
        print(_counts_line(title, counts.get(title, {})))
    print(_counts_line("quarantined", manifest.get("quarantined", {})))
    print(_counts_line("skipped", manifest.get("skipped", {})))
    for key in sorted(set(manifest) - RESERVED_KEYS):
        print(f"  {key:<12} {manifest[key]}")
    for op, instruction in _example_instructions(manifest, path, n_examples):
        print(f"    [{op}] {instruction}")


def run(args) -> int:
    failed = False
    try:
        paths = manifest_paths(args.manifest)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in paths:
        try:
            manifest = load_manifest(path)
            _describe(path, manifest, args.samples)
        except (ManifestError, OSError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed = True
            continue
        if args.no_verify:
            continue
        problems = verify_manifest(path)
        for problem in problems:
            print(f"  PROBLEM  {problem}")
        print(f"  verify       {'FAILED: %d problems' % len(problems) if problems else 'every shard OK'}")
        failed |= bool(problems)
    return 1 if failed else 0
