"""What a data folder has committed, and committing one more shard into it.

``CommittedState`` is a writer's view of every committed sidecar in its data folder (keys,
completion markers, counted skips). It is shared between the writer's thread and its committer
thread, so it guards itself with a lock. ``commit_shard`` turns a finished ``PendingShard`` into a
committed one: under the folder-wide commit lock it re-reads sidecars that other writers committed
meanwhile, drops keys they got to first, fsyncs, renames the tar, then the sidecar.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import datagen
from datagen.shards.index import count_rows
from datagen.shards.layout import commit_lock, committed_shards, fsync_dir, shard_name, sidecar_path
from datagen.shards.pending import PendingShard

SIDECAR_FORMAT = "smartedit-shard-sidecar/1"


class ShardError(RuntimeError):
    """The data folder is in a state the writer cannot safely continue from."""


@dataclass
class CommitJob:
    """A full (or final) shard with the completion markers and skips recorded while it filled."""

    shard: PendingShard
    marks: set[str] = field(default_factory=set)
    skips: set[tuple[str, str]] = field(default_factory=set)  # (reason, record id)


class CommittedState:
    """Keys, done records and counted skips of every committed shard in ``data_dir``."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.lock = threading.Lock()
        self.keys: set[str] = set()
        self.done_records: set[str] = set()
        self.skips: set[tuple[str, str]] = set()
        self._loaded: set[str] = set()  # shard file names already read; touched by one thread at a time

    def refresh(self) -> None:
        """Read the sidecars committed since the last call (by any writer)."""
        new = []
        for shard in committed_shards(self.data_dir):
            if shard.tar.name in self._loaded:
                continue
            try:
                sidecar = shard.load_sidecar()
                entry = (set(sidecar["keys"]), set(sidecar.get("records_done", [])),
                         {(reason, i) for reason, ids in sidecar.get("skipped", {}).items() for i in ids})
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ShardError(f"cannot read the sidecar of committed shard {shard.tar}: {exc}; "
                                 "without it a writer cannot tell which keys exist") from exc
            new.append(entry)
            self._loaded.add(shard.tar.name)
        with self.lock:
            for keys, done, skips in new:
                self.keys |= keys
                self.done_records |= done
                self.skips |= skips

    def add(self, name: str, job: CommitJob) -> None:
        """Record a shard this writer just committed (without re-reading its sidecar)."""
        self._loaded.add(name)
        with self.lock:
            self.keys |= job.shard.keys
            self.done_records |= job.marks
            self.skips |= job.skips


def _sidecar(name: str, prefix: str, job: CommitJob, filesize: int, sha256: str) -> dict:
    skipped: dict[str, list[str]] = {}
    for reason, record_id in sorted(job.skips):
        skipped.setdefault(reason, []).append(record_id)
    rows = job.shard.rows
    return {
        "format": SIDECAR_FORMAT,
        "shard": name,
        "prefix": prefix,
        "nsamples": len(rows),
        "filesize": filesize,
        "sha256": sha256,
        "keys": [row["key"] for row in rows],
        "counts": count_rows(rows),
        "skipped": skipped,
        "records_done": sorted(job.marks),
        "samples": rows,
        "pipeline_version": datagen.PIPELINE_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "writer": {"host": socket.gethostname(), "pid": os.getpid()},
    }


def _write_new_file(path: Path, data: bytes, *, fsync: bool) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


def commit_shard(job: CommitJob, state: CommittedState, prefix: str, seq: int, *,
                 fsync: bool = True) -> tuple[Path, int]:
    """Commit ``job`` as ``data_dir/PREFIX-SEQ.tar``; returns ``(path, keys dropped)``.

    With ``fsync`` the tar, the sidecar and the folder are fsynced before and after the renames, so
    the commit survives a power loss; without it, it still survives the writer process dying.
    Keys that another writer committed meanwhile are dropped (``job.shard`` is replaced by a
    rewritten shard). On any failure the temporary files are deleted and nothing is committed.
    """
    data_dir = state.data_dir
    sidecar_tmp = None
    try:
        with commit_lock(data_dir):
            state.refresh()
            with state.lock:
                dropped = job.shard.keys & state.keys
            if dropped:
                job.shard = job.shard.without(dropped)
            filesize, sha256 = job.shard.finish(fsync=fsync)
            final = data_dir / shard_name(prefix, seq)
            sidecar_tmp = job.shard.path.with_name(job.shard.path.name.replace(".tar.part", ".json.part"))
            sidecar = _sidecar(final.name, prefix, job, filesize, sha256)
            _write_new_file(sidecar_tmp, json.dumps(sidecar, indent=1).encode("utf-8"), fsync=fsync)
            os.replace(job.shard.path, final)
            os.replace(sidecar_tmp, sidecar_path(final))  # the commit point
            if fsync:
                fsync_dir(data_dir)
    except BaseException:
        job.shard.abort()
        if sidecar_tmp is not None:
            sidecar_tmp.unlink(missing_ok=True)
        raise
    state.add(final.name, job)
    return final, len(dropped)
