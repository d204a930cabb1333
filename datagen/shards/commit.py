"""Committing one more shard into a data folder.

``commit_shard`` turns a finished ``PendingShard`` into a committed one: under the folder-wide
commit lock it brings the key index up to date, drops keys other writers got to first, notes its
intent in the index, fsyncs the tar and its sidecar, renames the tar, then the sidecar (the commit
point), fsyncs the folder, and records the shard in the index. ``keyindex`` explains why that order
leaves every key exactly once whatever step a kill interrupts.
"""
from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import datagen
from datagen.shards.index import count_rows
from datagen.shards.keyindex import KeyIndex
from datagen.shards.layout import commit_lock, fsync_dir, shard_name, sidecar_path
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


def commit_shard(job: CommitJob, index: KeyIndex, prefix: str, seq: int, *,
                 fsync: bool = True) -> tuple[Path, int]:
    """Commit ``job`` as ``data_dir/PREFIX-SEQ.tar``; returns ``(path, keys dropped)``.

    ``index`` is a connection to the data folder's key index that no other thread uses meanwhile.
    With ``fsync`` the tar, the sidecar and the folder are fsynced before and after the renames, so
    the commit survives a power loss; without it, it still survives the writer process dying.
    Keys that another writer committed meanwhile are dropped (``job.shard`` is replaced by a
    rewritten shard). On any failure the temporary files are deleted and nothing is committed.
    """
    data_dir = index.data_dir
    sidecar_tmp = final = None
    try:
        with commit_lock(data_dir):
            index.refresh()
            dropped = index.committed_among(job.shard.keys)
            if dropped:
                job.shard = job.shard.without(dropped)
            filesize, sha256 = job.shard.finish(fsync=fsync)
            final = data_dir / shard_name(prefix, seq)
            sidecar_tmp = job.shard.path.with_name(job.shard.path.name.replace(".tar.part", ".json.part"))
            sidecar = _sidecar(final.name, prefix, job, filesize, sha256)
            _write_new_file(sidecar_tmp, json.dumps(sidecar, indent=1).encode("utf-8"), fsync=fsync)
            index.begin_commit(final.name)
            os.replace(job.shard.path, final)
            os.replace(sidecar_tmp, sidecar_path(final))  # the commit point
            if fsync:
                fsync_dir(data_dir)
            index.record_commit(final.name, prefix, seq, sidecar["keys"], job.marks, job.skips)
    except BaseException:
        job.shard.abort()
        if sidecar_tmp is not None:
            sidecar_tmp.unlink(missing_ok=True)
        if final is not None:
            with commit_lock(data_dir):
                index.resolve(final.name)
        raise
    return final, len(dropped)
