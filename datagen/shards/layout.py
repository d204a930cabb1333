"""Where shard files live in a data folder, which of them are committed, and the locks around them.

A data folder holds, for every writer prefix ``P``::

    P-000000.tar          the WebDataset shard (final name)
    P-000000.tar.json     its sidecar: keys, counts, sha256, completion markers
    P.quarantine.jsonl    records the writer quarantined
    .partial/P.*.part     shards and sidecars being written (temporary names)
    .locks/P.lock         held (flock) by the one live writer of prefix P

    .index/committed.sqlite   the key index (``keyindex``): committed keys, markers, skips

A shard is *committed* iff its final-name tar and its sidecar both exist. The tar is renamed into
place first and the sidecar second, so the sidecar's arrival is the commit point; an orphan tar
(crash between the two renames) is not committed and is removed by the key index's recovery.
Locks are ``fcntl.flock`` locks: the kernel drops them when a writer dies, however it dies, which is
what lets a later writer tell a stale temporary file from one that a live writer is still filling.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

PARTIAL_DIR = ".partial"
LOCK_DIR = ".locks"
SIDECAR_SUFFIX = ".json"
QUARANTINE_SUFFIX = ".quarantine.jsonl"

PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# The prefix part is greedy, so "a-000001-000002.tar" parses as prefix "a-000001", seq 2.
SHARD_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9_-]+)-(?P<seq>\d{6,})\.tar$")
# Temporary files are "PREFIX.<unique>.part"; prefixes have no dots, so the first dot ends them.
PARTIAL_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9_-]+)\..*\.part$")


def check_prefix(prefix: str) -> str:
    """Raise ``ValueError`` unless ``prefix`` is 1-80 letters, digits, '_' or '-'."""
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise ValueError(f"shard prefix {prefix!r} must be 1-80 characters of letters, digits, '_' or '-'")
    return prefix


def shard_name(prefix: str, seq: int) -> str:
    """``PREFIX-000123.tar`` (WebDataset's brace-expandable naming)."""
    return f"{prefix}-{seq:06d}.tar"


def sidecar_path(tar_path: Path) -> Path:
    return tar_path.with_name(tar_path.name + SIDECAR_SUFFIX)


def quarantine_path(data_dir: Path, prefix: str) -> Path:
    return Path(data_dir) / f"{prefix}{QUARANTINE_SUFFIX}"


@dataclass(frozen=True, slots=True)
class CommittedShard:
    """A shard whose tar and sidecar are both in place. (Small on purpose: a manifest build holds
    one per shard; ``folder`` is shared, ``tar`` is made on demand.)"""

    folder: Path
    name: str  # the tar's file name
    prefix: str
    seq: int

    @property
    def tar(self) -> Path:
        return self.folder / self.name

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.tar)

    def load_sidecar(self) -> dict:
        """The sidecar's JSON; ``ValueError`` naming the file if it is unreadable or not an object."""
        try:
            with open(self.sidecar, "rb") as fh:
                sidecar = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(f"sidecar {self.sidecar} is unreadable: {exc}") from exc
        if not isinstance(sidecar, dict):
            raise ValueError(f"sidecar {self.sidecar} is not a JSON object")
        return sidecar


def committed_shards(data_dir: Path | str) -> list[CommittedShard]:
    """Every committed shard in ``data_dir``, sorted by (prefix, seq). Missing folder -> []."""
    return scan_shards(data_dir)[0]


class FileLock:
    """An exclusive ``flock`` on a lock file; released on ``release()`` or process death."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fh = None

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False at once if someone else holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+b")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def prefix_lock(data_dir: Path, prefix: str) -> FileLock:
    """Held by the one live writer of ``prefix`` for its whole life."""
    return FileLock(Path(data_dir) / LOCK_DIR / f"{prefix}.lock")


def commit_lock(data_dir: Path) -> FileLock:
    """Held for the few milliseconds of a commit, so key de-duplication across writers is exact."""
    return FileLock(Path(data_dir) / LOCK_DIR / "commit.lock")


def scan_shards(data_dir: Path | str) -> tuple[list[CommittedShard], list[Path]]:
    """``(committed shards sorted by (prefix, seq), orphan tars)`` of ``data_dir`` in one listing.
    An orphan tar has its final name but no sidecar. Missing folder -> ``([], [])``."""
    data_dir = Path(data_dir)
    try:
        names = set(os.listdir(data_dir))
    except FileNotFoundError:
        return [], []
    shards, orphans = [], []
    for name in names:
        m = SHARD_RE.match(name)
        if not m:
            continue
        if name + SIDECAR_SUFFIX in names:
            shards.append(CommittedShard(data_dir, name, m["prefix"], int(m["seq"])))
        else:
            orphans.append(data_dir / name)
    shards.sort(key=lambda s: (s.prefix, s.seq))
    return shards, sorted(orphans)


def remove_stale_partials(data_dir: Path, own_prefix: str) -> list[Path]:
    """Delete the temporary files of ``own_prefix`` (whose lock the caller holds) and of every
    prefix whose writer is gone (its lock can be taken at once); a live writer's are kept."""
    partial = Path(data_dir) / PARTIAL_DIR
    by_prefix: dict[str, list[Path]] = {}
    if partial.is_dir():
        for path in partial.iterdir():
            if m := PARTIAL_RE.match(path.name):
                by_prefix.setdefault(m["prefix"], []).append(path)
    removed = []
    for prefix, paths in sorted(by_prefix.items()):
        lock = None if prefix == own_prefix else prefix_lock(data_dir, prefix)
        if lock is not None and not lock.acquire(blocking=False):
            continue
        try:
            for path in paths:
                path.unlink(missing_ok=True)
                removed.append(path)
        finally:
            if lock is not None:
                lock.release()
    return removed


def fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a rename is only as durable as its directory entry)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a hidden temporary file in the same folder, fsync, rename."""
    return _atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path | str, value, *, indent: int | None = 1) -> Path:
    """``atomic_write_bytes`` for JSON, streamed to the file (no whole-document string in memory)."""
    def write(fh: BinaryIO) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8")
        json.dump(value, text, indent=indent)
        text.detach()  # flushes into ``fh`` and leaves it open

    return _atomic_write(path, write)


def _atomic_write(path: Path | str, write: Callable[[BinaryIO], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path
