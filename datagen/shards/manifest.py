"""``build_manifest``: a data folder's committed shards -> ``manifests/NAME.json`` (contract 2)
and the per-sample Parquet table ``data_dir/NAME.parquet``."""
from __future__ import annotations

import io
import json
import os
import time
from collections import Counter
from pathlib import Path

import datagen
from datagen.shards.index import count_rows, parquet_table
from datagen.shards.layout import (
    QUARANTINE_SUFFIX,
    atomic_write_bytes,
    check_prefix,
    committed_shards,
)
from datagen.shards.quarantine import read_quarantine_log

MANIFEST_FORMAT = "smartedit-manifest/1"
# Keys build_manifest owns; ``extra`` may add others (backends, settings, weight...) but not these.
RESERVED_KEYS = frozenset({
    "wids_version", "name", "format", "shardlist", "nsamples", "scenario_mix", "counts",
    "quarantined", "dropped_annotations", "skipped", "records_done", "index", "pipeline_version", "created",
})


def _url(path: Path, manifest_dir: Path, base_url: str | None) -> str:
    if base_url is not None:
        return f"{base_url.rstrip('/')}/{path.name}"
    return Path(os.path.relpath(path.resolve(), manifest_dir.resolve())).as_posix()


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
    attribute / category, quarantined and skipped counts by reason, the pipeline version, the
    creation time, the Parquet index (``index.url``), and the keys of ``extra`` (e.g.
    ``backends``, ``settings``, ``weight``). Shards with no samples (completion markers only) are
    left out of ``shardlist``. Both files are written atomically. Raises ``ValueError`` when
    ``data_dir`` holds no committed sample or a key appears in two shards.
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
    shardlist, rows, skipped, records_done, seen = [], [], Counter(), 0, {}
    for shard in committed_shards(data_dir):
        sidecar = shard.load_sidecar()
        skipped.update({reason: len(ids) for reason, ids in sidecar.get("skipped", {}).items()})
        records_done += len(sidecar.get("records_done", []))
        for index, row in enumerate(sidecar["samples"]):
            if row["key"] in seen:
                raise ValueError(f"key {row['key']} is in both {seen[row['key']]} and {shard.tar.name}")
            seen[row["key"]] = shard.tar.name
            rows.append(dict(row, shard=shard.tar.name, index=index))
        if sidecar["nsamples"]:
            shardlist.append({"url": _url(shard.tar, manifest_dir, base_url),
                              "nsamples": sidecar["nsamples"], "filesize": sidecar["filesize"],
                              "sha256": sidecar["sha256"]})
    if not rows:
        raise ValueError(f"{data_dir} holds no committed sample; nothing to put in manifest {name}")

    parquet_path = data_dir / f"{name}.parquet"
    _write_parquet(parquet_path, rows)
    counts = count_rows(rows)
    quarantined, dropped = _quarantine_counts(data_dir)
    manifest = {
        "wids_version": 1,
        "name": name,
        "format": MANIFEST_FORMAT,
        "shardlist": shardlist,
        "nsamples": len(rows),
        "scenario_mix": {k: round(v / len(rows), 6) for k, v in counts["scenario"].items()},
        "counts": counts,
        "quarantined": dict(sorted(quarantined.items())),
        "dropped_annotations": dict(sorted(dropped.items())),
        "skipped": dict(sorted(skipped.items())),
        "records_done": records_done,
        "index": {"url": _url(parquet_path, manifest_dir, base_url), "format": "parquet", "rows": len(rows)},
        "pipeline_version": datagen.PIPELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    data = json.dumps(manifest, indent=1).encode("utf-8")
    return atomic_write_bytes(manifest_dir / f"{name}.json", data)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(parquet_table(rows), buf)
    atomic_write_bytes(path, buf.getvalue())
