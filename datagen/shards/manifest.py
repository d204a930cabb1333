"""``build_manifest``: a data folder's committed shards -> ``manifests/NAME.json`` (contract 2)
and the per-sample Parquet table ``data_dir/NAME.parquet``.

The build streams: each sidecar is read once, its rows go to the Parquet file as one row group and
are dropped, and the manifest's counts are sums of the sidecars' own counts, so memory does not
grow with the number of samples (only with the number of shards). It is incremental: the build
state (``.index/manifest-NAME.json``: per shard its size, checksum and what it added to the counts)
says which shards the existing Parquet file holds; when the folder only gained shards since, the
old file's row groups are copied (never re-read from sidecars) and only the new sidecars are read.

Kill-safety of the incremental update: the Parquet file carries a random build id in its metadata
and the state names the build id it describes. The order is Parquet (atomic rename), then state,
then manifest, so a kill after the Parquet rename leaves a state that names another build id: the
next build does not trust it and rebuilds from every sidecar. A kill after the state leaves a state
that matches: the next build finds no new shard and only writes the manifest.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import datagen
from datagen.shards.keyindex import INDEX_DIR, open_index
from datagen.shards.layout import (
    LOCK_DIR,
    QUARANTINE_SUFFIX,
    CommittedShard,
    FileLock,
    atomic_write_bytes,
    check_prefix,
    committed_shards,
    fsync_dir,
)
from datagen.shards.quarantine import read_quarantine_log
from datagen.shards.sampletable import parquet_rows, parquet_schema

MANIFEST_FORMAT = "smartedit-manifest/1"


class NoSamplesError(ValueError):
    """The data folder holds no committed sample, so there is no dataset to describe."""


STATE_FORMAT = "smartedit-manifest-state/1"
BUILD_ID = b"smartedit.build_id"
# Keys build_manifest owns; ``extra`` may add others (backends, settings, weight...) but not these.
RESERVED_KEYS = frozenset({
    "wids_version", "name", "format", "shardlist", "nsamples", "scenario_mix", "counts",
    "quarantined", "skipped", "records_done", "index", "pipeline_version", "created",
})


def _url(path: Path, manifest_dir: Path, base_url: str | None) -> str:
    if base_url is not None:
        return f"{base_url.rstrip('/')}/{path.name}"
    return Path(os.path.relpath(path.resolve(), manifest_dir.resolve())).as_posix()


def _quarantine_counts(data_dir: Path) -> Counter:
    """Quarantined records by reason over every writer's log, each record id counted once."""
    first_reason: dict[str, str] = {}
    for log in sorted(data_dir.glob(f"*{QUARANTINE_SUFFIX}")):
        for entry in read_quarantine_log(log):
            first_reason.setdefault(str(entry["id"]), str(entry["reason"]))
    return Counter(first_reason.values())


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
    open_index(data_dir, durable=False).close()  # reconciles: a key in two sidecars raises here
    parquet_path = data_dir / f"{name}.parquet"
    with FileLock(data_dir / LOCK_DIR / f"manifest-{name}.lock"):  # one build of NAME at a time
        for stale in data_dir.glob(f".{name}.parquet.*.tmp"):  # left by a killed build
            stale.unlink(missing_ok=True)
        state = _update_table(data_dir, name, parquet_path, shards)
    nsamples = sum(entry["nsamples"] for entry in state["shards"].values())
    if not nsamples:
        raise NoSamplesError(f"{data_dir} holds no committed sample; nothing to put in manifest {name}")
    counts = {group: dict(sorted(values.items())) for group, values in state["counts"].items()}
    shardlist = [{"url": _url(shard.tar, manifest_dir, base_url), "nsamples": entry["nsamples"],
                  "filesize": entry["filesize"], "sha256": entry["sha256"]}
                 for shard in shards if (entry := state["shards"][shard.tar.name])["nsamples"]]
    manifest = {
        "wids_version": 1,
        "name": name,
        "format": MANIFEST_FORMAT,
        "shardlist": shardlist,
        "nsamples": nsamples,
        "scenario_mix": {k: round(v / nsamples, 6) for k, v in counts["scenario"].items()},
        "counts": counts,
        "quarantined": dict(sorted(_quarantine_counts(data_dir).items())),
        "skipped": dict(sorted(state["skipped"].items())),
        "records_done": state["records_done"],
        "index": {"url": _url(parquet_path, manifest_dir, base_url), "format": "parquet", "rows": nsamples},
        "pipeline_version": datagen.PIPELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
    }
    data = json.dumps(manifest, indent=1).encode("utf-8")
    return atomic_write_bytes(manifest_dir / f"{name}.json", data)


# ----- the build state and the Parquet table -----

def _state_path(data_dir: Path, name: str) -> Path:
    return data_dir / INDEX_DIR / f"manifest-{name}.json"


def _empty_state() -> dict:
    return {"format": STATE_FORMAT, "build_id": None, "shards": {}, "skipped": {}, "records_done": 0,
            "counts": {group: {} for group in ("scenario", "op", "attribute", "category")}}


def _stamp(shard: CommittedShard) -> list[int]:
    """What identifies a sidecar's version without reading it: its size and mtime."""
    st = os.stat(shard.sidecar)
    return [st.st_size, st.st_mtime_ns]


def _trusted_state(data_dir: Path, name: str, parquet_path: Path, shards: list[CommittedShard]) -> dict | None:
    """The last build's state if it still describes ``parquet_path`` and every shard it lists is
    unchanged on disk (so the folder can only have gained shards); else None."""
    import pyarrow.parquet as pq

    try:
        state = json.loads(_state_path(data_dir, name).read_text())
        meta = pq.read_schema(parquet_path).metadata or {}
    except (OSError, ValueError):
        return None
    if state.get("format") != STATE_FORMAT or meta.get(BUILD_ID, b"").decode() != state.get("build_id"):
        return None
    if not pq.read_schema(parquet_path).remove_metadata().equals(parquet_schema()):
        return None  # written by a version with another schema
    on_disk = {shard.tar.name: shard for shard in shards}
    for shard_name, entry in state["shards"].items():
        shard = on_disk.get(shard_name)
        if shard is None or _stamp(shard) != entry["stamp"]:
            return None
    return state


def _update_table(data_dir: Path, name: str, parquet_path: Path, shards: list[CommittedShard]) -> dict:
    """Bring ``NAME.parquet`` and its build state up to date with ``shards``; return the state."""
    state = _trusted_state(data_dir, name, parquet_path, shards)
    if state is not None and all(shard.tar.name in state["shards"] for shard in shards):
        return state  # nothing new: the table is current
    old = parquet_path if state is not None else None
    state = state or _empty_state()
    new = [shard for shard in shards if shard.tar.name not in state["shards"]]
    build_id = uuid.uuid4().hex
    tmp = parquet_path.with_name(f".{parquet_path.name}.{os.getpid()}.tmp")
    try:
        _write_table(tmp, old, new, state, build_id)
        os.replace(tmp, parquet_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(data_dir)
    state["build_id"] = build_id
    atomic_write_bytes(_state_path(data_dir, name), json.dumps(state).encode("utf-8"))
    return state


def _write_table(path: Path, old: Path | None, new: list[CommittedShard], state: dict, build_id: str) -> None:
    """Write the Parquet file: ``old``'s row groups as they are, then one row group per new shard
    (each sidecar read once, its rows dropped after); add each new shard to ``state``."""
    import pyarrow.parquet as pq

    schema = parquet_schema().with_metadata({BUILD_ID: build_id.encode()})
    with pq.ParquetWriter(path, schema) as writer:
        if old is not None:
            previous = pq.ParquetFile(old)
            for i in range(previous.num_row_groups):
                writer.write_table(previous.read_row_group(i).replace_schema_metadata(schema.metadata))
        for shard in new:
            stamp = _stamp(shard)  # before reading: a sidecar replaced meanwhile is noticed next time
            sidecar = shard.load_sidecar()
            rows = [dict(row, shard=shard.tar.name, index=i) for i, row in enumerate(sidecar["samples"])]
            if rows:
                writer.write_table(parquet_rows(rows).replace_schema_metadata(schema.metadata))
            _add_shard(state, shard.tar.name, sidecar, stamp)
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _add_shard(state: dict, name: str, sidecar: dict, stamp: list[int]) -> None:
    state["shards"][name] = {"nsamples": sidecar["nsamples"], "filesize": sidecar["filesize"],
                             "sha256": sidecar["sha256"], "stamp": stamp}
    for group, values in sidecar.get("counts", {}).items():
        totals = state["counts"].setdefault(group, {})
        for value, n in values.items():
            totals[value] = totals.get(value, 0) + n
    for reason, ids in sidecar.get("skipped", {}).items():
        state["skipped"][reason] = state["skipped"].get(reason, 0) + len(ids)
    state["records_done"] += len(sidecar.get("records_done", []))
