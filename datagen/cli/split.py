"""``python -m datagen split MANIFEST --holdout 0.05``: a held-out evaluation split of a dataset.

Each sample goes to the held-out split when a hash of (seed, key) falls below the fraction, so the
split is stable: the same key lands on the same side in every rerun and in every copy of the data.
Writes ``DATA/NAME-train/`` + ``MANIFESTS/NAME-train.json`` and ``DATA/NAME-holdout/`` +
``MANIFESTS/NAME-holdout.json`` (``"holdout": true, "split": "holdout"``) beside the input; the
samples are copied byte for byte (no re-encoding). ``trainer.stage1/stage2`` refuse a held-out
manifest given to them and, reading a folder of manifests, leave the held-out keys out of training;
``trainer.evaluate --manifest`` reads it like any manifest.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

HELP = "split a manifest into a training and a held-out evaluation split (stable by key)"


def add_arguments(parser) -> None:
    parser.add_argument("manifest", help="the manifest JSON to split")
    parser.add_argument("--holdout", type=float, required=True, metavar="FRACTION",
                        help="share of samples held out for evaluation, e.g. 0.05")
    parser.add_argument("--seed", default="0", help="salt of the key hash (another seed, another split)")
    parser.add_argument("--data-dir", default=None, help="where the two splits' shards go (default: the input's data folder)")


def held_out(key: str, fraction: float, seed: str) -> bool:
    """True when ``key`` belongs to the held-out split: sha256(seed:key) as a number in [0, 1) < fraction."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def _raw_samples(manifest_path: str):
    """(key, members without the JSON, metadata dict) of every sample, bytes untouched."""
    import fsspec

    from datagen.shards import load_manifest
    from datagen.shards.tario import iter_tar_samples

    for shard in load_manifest(manifest_path)["shardlist"]:
        with fsspec.open(shard["path"], "rb") as fh:
            for key, members in iter_tar_samples(fh):
                meta = json.loads(members.pop("json"))
                yield key, members, meta


def run(args) -> int:
    from datagen.shards import ShardWriter, build_manifest, load_manifest

    if not 0 < args.holdout < 1:
        raise SystemExit(f"error: --holdout {args.holdout}: give a fraction between 0 and 1, e.g. 0.05")
    manifest_path = Path(args.manifest)
    manifest = load_manifest(str(manifest_path))
    if manifest.get("holdout") is True:
        raise SystemExit(f"error: {manifest_path} is already a held-out split")
    name = str(manifest.get("name") or manifest_path.stem)
    first = manifest["shardlist"][0]["path"] if manifest["shardlist"] else ""
    local = first and "://" not in first
    data_root = Path(args.data_dir) if args.data_dir else Path(first).parent if local else manifest_path.parent
    splits = {"train": f"{name}-train", "holdout": f"{name}-holdout"}
    writers = {split: ShardWriter(data_root / prefix, prefix) for split, prefix in splits.items()}
    counts = {"train": 0, "holdout": 0}
    try:
        for key, members, meta in _raw_samples(str(manifest_path)):
            split = "holdout" if held_out(key, args.holdout, args.seed) else "train"
            counts[split] += writers[split].write_encoded(key, members, meta)
    finally:
        for writer in writers.values():
            writer.close()
    extra_of = {"train": {"split": "train", "holdout": False, "split_of": name},
                "holdout": {"split": "holdout", "holdout": True, "split_of": name}}
    for split, prefix in splits.items():
        if counts[split] == 0:
            print(f"{split}: no sample (fraction {args.holdout}); no manifest written")
            continue
        extra = dict(extra_of[split], split_fraction=args.holdout, split_seed=args.seed)
        if "weight" in manifest:
            extra["weight"] = manifest["weight"]
        out = build_manifest(data_root / prefix, prefix, manifest_path.parent, extra=extra)
        print(f"{split}: {counts[split]} samples -> {out}")
    return 0
