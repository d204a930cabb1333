"""``build_manifest``: a data folder's committed shards -> ``manifests/NAME.json`` (contract 2)
and the per-sample Parquet table ``data_dir/NAME.parquet/`` (a folder of parts, ``tablefolder``).

The build streams and is incremental: each sidecar is read once, by the build that first sees its
shard; its rows go to Parquet parts and its counts are added to the build state, so memory does not
grow with the number of samples, and a rerun after new shards reads only their sidecars. The order
is parts, state, manifest: a kill at any point leaves the previous manifest, and the next build
finishes the work (``tablefolder`` explains why no row is ever counted twice).
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import datagen
from datagen.shards.keyindex import open_index
from datagen.shards.layout import LOCK_DIR, QUARANTINE_SUFFIX, FileLock, atomic_write_json, check_prefix, committed_shards
from datagen.shards.quarantine import read_quarantine_log
from datagen.shards.tablefolder import table_dir, update_table

MANIFEST_FORMAT = "smartedit-manifest/1"


class NoSamplesError(ValueError):
    """The data folder holds no committed sample, so there is no dataset to describe."""


# Keys build_manifest owns; ``extra`` may add others (backends, settings, weight...) but not these.
RESERVED_KEYS = frozenset({
    "wids_version", "name", "format", "shardlist", "nsamples", "scenario_mix", "counts",
    "quarantined", "dropped_annotations", "skipped", "records_done", "index", "pipeline_version", "created",
})


def _url_prefix(data_dir: Path, manifest_dir: Path, base_url: str | None) -> str:
    """What a file name in ``data_dir`` is prefixed with to make its URL in the manifest
    (computed once: resolving a path per shard would cost a file-system walk each)."""
    if base_url is not None:
        return f"{base_url.rstrip('/')}/"
    return Path(os.path.relpath(data_dir.resolve(), manifest_dir.resolve())).as_posix() + "/"


def _quarantine_counts(data_dir: Path) -> tuple[Counter, Counter]:
    """``(quarantined records by reason, dropped annotations by reason)`` over every writer's log,
    each id counted once. Annotation- and catalog-level entries (``level`` in the log) are the
    annotations a catalog dropped; everything else is a record."""
    first: dict[str, tuple[str, str]] = {}
    for log in sorted(data_dir.glob(f"*{QUARANTINE_SUFFIX}")):
        for entry in read_quarantine_log(log):
            first.setdefault(str(entry["id"]), (str(entry.get("level", "record")), str(entry["reason"])))
    records = Counter(reason for level, reason in first.values() if level == "record")
    dropped = Counter(reason for level, reason in first.values() if level != "record")
    return records, dropped


def build_manifest(data_dir, name: str, manifest_dir="manifests", *, extra: dict | None = None,
                   base_url: str | None = None) -> Path:
    """Write ``manifest_dir/NAME.json`` for every committed shard in ``data_dir``; return its path.

    The manifest is wids-compatible (``{"wids_version": 1, "name", "shardlist": [{"url",
    "nsamples", "filesize", "sha256"}]}``); shard URLs are relative to ``manifest_dir`` (so
    ``wids.ShardListDataset(path)`` and ``read_samples`` resolve them against the manifest's
    folder), or ``base_url + "/" + file name`` when ``base_url`` is given (shards uploaded
    elsewhere, e.g. ``s3://bucket/data/NAME``). It also records sample counts by scenario / op /
    attribute / category (``nsamples`` is the number in the dataset), quarantined and skipped
    counts by reason, the pipeline version, the creation time, the Parquet index (``index.url``,
    schema ``sampletable.parquet_schema``), and the keys of ``extra`` (e.g. ``backends``,
    ``settings``, ``weight``). Shards with no samples (completion markers only) are left out of
    ``shardlist``. Every file is written atomically. Raises ``ValueError`` when ``data_dir`` holds
    no committed sample, and ``ShardError`` when a key is in two shards (the key index finds it).
    """
    check_prefix(name)
    data_dir, manifest_dir = Path(data_dir), Path(manifest_dir)
    extra = dict(extra or {})
    clash = RESERVED_KEYS & extra.keys()
    if clash:
        raise ValueError(f"extra may not set manifest keys {sorted(clash)}")
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra is not JSON-serialisable: {exc}") from exc
    shards = committed_shards(data_dir)
    if not shards:
        raise NoSamplesError(f"{data_dir} holds no committed sample; nothing to put in manifest {name}")
    open_index(data_dir).close()  # reconciles: a key in two sidecars raises here
    with FileLock(data_dir / LOCK_DIR / f"manifest-{name}.lock"):  # one build of NAME at a time
        state = update_table(data_dir, name, shards)
    parquet_path = table_dir(data_dir, name)
    nsamples = sum(entry[0] for entry in state["shards"].values())
    if not nsamples:
        raise NoSamplesError(f"{data_dir} holds no committed sample; nothing to put in manifest {name}")
    counts = {group: dict(sorted(values.items())) for group, values in state["counts"].items()}
    prefix = _url_prefix(data_dir, manifest_dir, base_url)
    shardlist = [{"url": prefix + shard.name, "nsamples": nsamples, "filesize": filesize, "sha256": sha256}
                 for shard in shards for nsamples, filesize, sha256, *_ in [state["shards"][shard.name]] if nsamples]
    quarantined, dropped = _quarantine_counts(data_dir)
    manifest = {
        "wids_version": 1,
        "name": name,
        "format": MANIFEST_FORMAT,
        "shardlist": shardlist,
        "nsamples": nsamples,
        "scenario_mix": {k: round(v / nsamples, 6) for k, v in counts["scenario"].items()},
        "counts": counts,
        "quarantined": dict(sorted(quarantined.items())),
        "dropped_annotations": dict(sorted(dropped.items())),
        "skipped": dict(sorted(state["skipped"].items())),
        "records_done": state["records_done"],
        "index": {"url": prefix + parquet_path.name, "format": "parquet", "rows": nsamples,
                  "parts": list(state["parts"])},
        "pipeline_version": datagen.PIPELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    return atomic_write_json(manifest_dir / f"{name}.json", manifest)
