"""The per-sample table of a dataset as a folder of Parquet parts, built incrementally.

``data_dir/NAME.parquet/`` holds ``part-GGGG-PPPPPP.parquet`` files in ``sampletable``'s schema;
``pyarrow.dataset``, ``pandas.read_parquet`` and ``pyarrow.parquet.read_table`` read the folder as
one table, DuckDB reads ``NAME.parquet/*.parquet``. A part holds at most ``PART_ROWS`` rows in row
groups of ``ROW_GROUP_ROWS``, so neither the rows buffered nor a part's footer grow with the
dataset: the build's memory is flat. Each sidecar is read once, by the build that adds its shard.

The build state ``.index/manifest-NAME.json`` lists the parts, the counts so far and, per shard
included, ``[nsamples, filesize, sha256, sidecar size, sidecar mtime_ns]`` (the last two notice a
changed shard without reading it). When the folder only gained shards since the last build, only their
sidecars are read and written as new parts; anything else (a shard deleted or rewritten, a part
missing, another schema) rebuilds the whole table under the next generation number.

Kill-safety. Parts are written under temporary names and renamed into the folder; the state is
written after them (atomically) and is what counts: at the start of a build every part the state
does not list is deleted, so a part left by a killed build is never counted twice. A reader that
lists the folder between a kill and the next build may see that part: its rows belong to committed
shards the manifest does not list yet, never to a shard already in another part. A full rebuild
writes a new folder beside the old one and swaps the two by renames; a kill between them leaves no
table, which the next build notices (parts missing) and rebuilds.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from datagen.shards.keyindex import INDEX_DIR
from datagen.shards.layout import CommittedShard, atomic_write_json, fsync_dir
from datagen.shards.sampletable import SCHEMA_ID, parquet_rows, parquet_schema

STATE_FORMAT = "smartedit-table-state/2"
ROW_GROUP_ROWS = 1000
PART_ROWS = 20_000
COUNT_GROUPS = ("scenario", "op", "attribute", "category")


def state_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / INDEX_DIR / f"manifest-{name}.json"


def table_dir(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / f"{name}.parquet"


def _empty_state(generation: int) -> dict:
    return {"format": STATE_FORMAT, "schema": SCHEMA_ID, "generation": generation, "parts": [],
            "shards": {}, "skipped": {}, "records_done": 0, "counts": {group: {} for group in COUNT_GROUPS}}


def _stamp(shard: CommittedShard) -> list[int]:
    """What identifies a sidecar's version without reading it: its size and mtime."""
    st = os.stat(shard.sidecar)
    return [st.st_size, st.st_mtime_ns]


def _load_state(data_dir: Path, name: str) -> dict | None:
    try:
        state = json.loads(state_path(data_dir, name).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("format") == STATE_FORMAT else None


def _trusted(state: dict | None, folder: Path, shards: list[CommittedShard]) -> bool:
    """True if ``state`` describes ``folder`` and every shard it lists is unchanged on disk."""
    if state is None or state.get("schema") != SCHEMA_ID:
        return False
    if not all((folder / part).is_file() for part in state["parts"]):
        return False
    on_disk = {shard.name: shard for shard in shards}
    for shard_name, entry in state["shards"].items():
        shard = on_disk.get(shard_name)
        if shard is None or _stamp(shard) != entry[3:]:
            return False
    return True


def _remove_strays(data_dir: Path, name: str, folder: Path, state: dict | None) -> None:
    """Delete what killed builds left: temporary files and folders, and, given the trusted
    ``state``, the parts it does not list (an untrusted table stays readable until replaced)."""
    for stray in data_dir.glob(f".{name}.parquet.*"):
        shutil.rmtree(stray) if stray.is_dir() else stray.unlink(missing_ok=True)
    if state is not None and folder.is_dir():
        for path in folder.iterdir():
            if path.name not in state["parts"]:
                path.unlink(missing_ok=True)


def update_table(data_dir: Path, name: str, shards: list[CommittedShard]) -> dict:
    """Bring ``NAME.parquet/`` and its state up to date with ``shards`` (the committed shards, in
    manifest order); return the state. The caller holds the build's lock for ``name``."""
    data_dir = Path(data_dir)
    folder = table_dir(data_dir, name)
    state = _load_state(data_dir, name)
    trusted = _trusted(state, folder, shards)
    _remove_strays(data_dir, name, folder, state if trusted else None)
    if trusted:
        new = [shard for shard in shards if shard.name not in state["shards"]]
        if new:
            folder.mkdir(exist_ok=True)
            _append_parts(folder, state, new)
            atomic_write_json(state_path(data_dir, name), state, indent=None)
        return state
    state = _empty_state(state["generation"] + 1 if state else 0)
    fresh = data_dir / f".{name}.parquet.new-{os.getpid()}"
    fresh.mkdir()
    _append_parts(fresh, state, shards)
    old = data_dir / f".{name}.parquet.old-{os.getpid()}"
    if folder.exists():
        os.replace(folder, old)
    os.replace(fresh, folder)
    fsync_dir(data_dir)
    atomic_write_json(state_path(data_dir, name), state, indent=None)
    if old.is_dir():
        shutil.rmtree(old)
    else:  # a single-file table of an older version
        old.unlink(missing_ok=True)
    return state


class _PartWriter:
    """Rows in, Parquet parts out: buffers ``ROW_GROUP_ROWS`` rows per row group and starts a new
    part after ``PART_ROWS`` rows; each part is fsynced under a temporary name, then renamed."""

    def __init__(self, folder: Path, state: dict):
        self.folder, self.state = folder, state
        self._rows: list[dict] = []
        self._writer = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._in_part = 0

    def add(self, rows: list[dict]) -> None:
        self._rows += rows
        while len(self._rows) >= ROW_GROUP_ROWS:
            self._write_group(self._rows[:ROW_GROUP_ROWS])
            self._rows = self._rows[ROW_GROUP_ROWS:]

    def _write_group(self, rows: list[dict]) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            number = len(self.state["parts"])
            self._final = self.folder / f"part-{self.state['generation']:04d}-{number:06d}.parquet"
            self._tmp = self.folder.parent / f".{self.folder.name}.{self._final.name}.{os.getpid()}.tmp"
            self._writer = pq.ParquetWriter(self._tmp, parquet_schema())
        self._writer.write_table(parquet_rows(rows), row_group_size=ROW_GROUP_ROWS)
        self._in_part += len(rows)
        if self._in_part >= PART_ROWS:
            self._close_part()

    def _close_part(self) -> None:
        self._writer.close()
        with open(self._tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self._final)
        self.state["parts"].append(self._final.name)
        self._writer, self._in_part = None, 0

    def close(self) -> None:
        if self._rows:
            self._write_group(self._rows)
            self._rows = []
        if self._writer is not None:
            self._close_part()
        fsync_dir(self.folder)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)


def _append_parts(folder: Path, state: dict, shards: list[CommittedShard]) -> None:
    """Read each shard's sidecar once: its rows go to new parts, its entry and counts to ``state``."""
    parts = _PartWriter(folder, state)
    try:
        for shard in shards:
            stamp = _stamp(shard)  # before reading: a sidecar replaced meanwhile is noticed next time
            sidecar = shard.load_sidecar()
            parts.add([dict(row, shard=shard.name, index=i) for i, row in enumerate(sidecar["samples"])])
            _add_shard(state, shard.name, sidecar, stamp)
        parts.close()
    except BaseException:
        parts.abort()
        raise


def _add_shard(state: dict, name: str, sidecar: dict, stamp: list[int]) -> None:
    # A list, not a dict: a build holds one per shard.
    state["shards"][name] = [sidecar["nsamples"], sidecar["filesize"], sidecar["sha256"], *stamp]
    for group, values in sidecar.get("counts", {}).items():
        totals = state["counts"].setdefault(group, {})
        for value, n in values.items():
            totals[value] = totals.get(value, 0) + n
    for reason, ids in sidecar.get("skipped", {}).items():
        state["skipped"][reason] = state["skipped"].get(reason, 0) + len(ids)
    state["records_done"] += len(sidecar.get("records_done", []))
