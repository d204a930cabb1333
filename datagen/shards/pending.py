"""A shard being written under a temporary name, hashed while it is written."""
from __future__ import annotations

import hashlib
import os
import queue
import threading
import uuid
from pathlib import Path

from datagen.shards.layout import PARTIAL_DIR
from datagen.shards.tario import end_of_archive, iter_tar_samples, member_header, padding


def _write_all(fd: int, buffers: list[bytes]) -> None:
    """Write ``buffers`` in order with one ``writev`` (no copy into a user-space buffer)."""
    total = sum(len(buf) for buf in buffers)
    written = os.writev(fd, buffers)
    if written < total:  # rare (signals, huge writes): finish byte-exactly
        rest = memoryview(b"".join(buffers))[written:]
        while rest:
            rest = rest[os.write(fd, rest):]


class BackgroundSha256:
    """SHA-256 computed on a helper thread, in submission order.

    ``hashlib`` releases the GIL for large buffers, so on a machine with a free core hashing overlaps
    the file writes instead of adding to them; the bounded queue keeps at most 32 samples' bytes
    alive.
    """

    def __init__(self):
        self._hash = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._run, name="shard-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            buffers = self._queue.get()
            if buffers is None:
                return
            for buf in buffers:
                self._hash.update(buf)

    def update(self, buffers: list[bytes]) -> None:
        self._queue.put(buffers)

    def hexdigest(self) -> str:
        """Wait for every submitted buffer, stop the thread, return the hex digest."""
        self._queue.put(None)
        self._thread.join()
        return self._hash.hexdigest()


class PendingShard:
    """Tar data appended sample by sample to ``data_dir/.partial/PREFIX.<unique>.tar.part``.

    ``rows`` are the samples' index rows in archive order; ``size`` is the bytes written so far.
    ``finish()`` ends the archive and makes it durable; the caller then renames it into place.
    """

    def __init__(self, data_dir: Path, prefix: str, mtime: int):
        self.path = Path(data_dir) / PARTIAL_DIR / f"{prefix}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tar.part"
        self.prefix = prefix
        self.mtime = mtime
        self.size = 0
        self.rows: list[dict] = []
        self.keys: set[str] = set()
        self._fh = open(self.path, "xb", buffering=0)
        self._hash = BackgroundSha256()

    @property
    def count(self) -> int:
        return len(self.rows)

    def add(self, key: str, entries: list[tuple[str, bytes]], row: dict) -> None:
        """Append one sample: ``entries`` are ``(member name, data)`` pairs, all named ``key.*``."""
        buffers = []
        for name, data in entries:
            buffers += (member_header(name, len(data), self.mtime), data, padding(len(data)))
        _write_all(self._fh.fileno(), buffers)
        self._hash.update(buffers)
        self.size += sum(len(buf) for buf in buffers)
        self.rows.append(row)
        self.keys.add(key)

    def finish(self, *, fsync: bool = True) -> tuple[int, str]:
        """End the archive (and fsync it); return ``(filesize, sha256 hex)``."""
        tail = end_of_archive(self.size)
        _write_all(self._fh.fileno(), [tail])
        self._hash.update([tail])
        self.size += len(tail)
        if fsync:
            os.fsync(self._fh.fileno())
        self._fh.close()
        return self.size, self._hash.hexdigest()

    def abort(self) -> None:
        """Close and delete the temporary file (idempotent)."""
        if not self._fh.closed:
            self._fh.close()
            self._hash.hexdigest()
        self.path.unlink(missing_ok=True)

    def without(self, drop: set[str]) -> "PendingShard":
        """A new pending shard holding every sample of this one except the keys in ``drop``;
        this one is deleted. Used when a concurrent writer committed some of our keys first."""
        _write_all(self._fh.fileno(), [end_of_archive(self.size)])
        rows = {row["key"]: row for row in self.rows}
        fresh = PendingShard(self.path.parent.parent, self.prefix, self.mtime)
        try:
            with open(self.path, "rb") as fh:
                for key, members in iter_tar_samples(fh):
                    if key not in drop:
                        fresh.add(key, [(f"{key}.{ext}", data) for ext, data in members.items()], rows[key])
        except BaseException:
            fresh.abort()
            raise
        self.abort()
        return fresh
