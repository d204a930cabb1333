"""``ShardWriter``: WebDataset shards that are committed atomically, resumable and exactly-once.

Exactly-once rests on two mechanisms (see ``layout`` for the files):

* **key de-duplication**: ``write`` refuses a key already committed in the data folder by any
  writer (one lookup in the folder's key index, ``keyindex``, which a writer opens without reading
  a single sidecar) or pending in this writer. At commit time, under a folder-wide lock, keys that
  a concurrent writer committed meanwhile are dropped from our shard, so even overlapping
  concurrent writers never commit a key twice.
* **completion markers** (datatrove-style): ``mark_record_done(id)`` is stored in the sidecar of
  the next shard to commit, so a restarted run can skip whole source records (``done_records``)
  without loading them. A record whose samples straddle a crash is not marked, is rebuilt on
  restart, and key de-duplication drops the samples that did get committed.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from datagen.schema import EditSample, Quarantined, SampleError, check_key
from datagen.shards.commit import CommitJob, ShardError, commit_shard
from datagen.shards.encoding import ImageEncoding, SampleEncoder
from datagen.shards.index import index_row
from datagen.shards.keyindex import DoneRecords, KeyIndex, open_index
from datagen.shards.layout import (
    LOCK_DIR,
    PARTIAL_DIR,
    check_prefix,
    prefix_lock,
    quarantine_path,
    remove_stale_partials,
)
from datagen.shards.pending import PendingShard
from datagen.shards.quarantine import QuarantineLog
from datagen.shards.tario import MAX_MEMBER_NAME, archive_size, member_span

__all__ = ["ShardWriter", "ShardError", "WriterBusyError"]


class WriterBusyError(ShardError):
    """Another live writer holds the same prefix in the same data folder."""


class ShardWriter:
    """Write ``EditSample``s to ``data_dir/{prefix}-{seq:06d}.tar`` (WebDataset layout).

    Each sample becomes ``KEY.src.EXT``, ``KEY.tgt.EXT``, ``KEY.mask.png`` (L mode,
    255 = edit region) and ``KEY.json`` (``sample.metadata()``). A shard rolls over after
    ``maxcount`` samples or before it would pass ``maxsize`` bytes, and is committed atomically
    (temporary name, fsync, rename, then its sidecar ``{shard}.json``). Commits run on a helper
    thread, so the fsync of one shard overlaps writing the next; ``flush()`` and ``close()`` wait
    for them, and an error in a commit is raised by the next call. Use as a context manager:
    leaving the block commits the pending shard. Writers with different prefixes may share a data
    folder, also from separate processes; a second live writer of the same prefix raises
    ``WriterBusyError``. ``fsync=False`` skips the fsyncs: commits then survive the writer being
    killed (the page cache outlives it) but not a power loss or kernel crash; for scratch disks.
    ``image_format``: ``png`` | ``jpg[:Q]`` | ``webp[:Q]`` (EXT; ``datagen.shards.encoding``); each
    distinct image of consecutive samples is encoded once.
    """

    def __init__(self, data_dir, prefix: str, *, maxcount: int = 1000, maxsize: float = 3e8,
                 image_format: str = "png", fsync: bool = True):
        if int(maxcount) < 1 or float(maxsize) <= 0:
            raise ValueError(f"maxcount must be >= 1 and maxsize > 0, got {maxcount}, {maxsize}")
        self.encoder = SampleEncoder(ImageEncoding.parse(image_format))  # counts: encoder.encoded / .requested
        self.data_dir = Path(data_dir)
        self.prefix = check_prefix(prefix)
        self.maxcount, self.maxsize, self.image_format = int(maxcount), float(maxsize), image_format
        self.fsync = bool(fsync)
        for folder in (self.data_dir, self.data_dir / PARTIAL_DIR, self.data_dir / LOCK_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = prefix_lock(self.data_dir, prefix)
        if not self._lock.acquire(blocking=False):
            raise WriterBusyError(f"another writer is writing prefix {prefix!r} in {self.data_dir}; "
                                  "give each concurrent writer its own prefix")
        self._closed = False
        self._mutex = threading.Lock()  # guards _shard / _inflight between this thread and the committer
        try:
            # Orphan tars (renamed, never committed) are the key index's to clean up (``keyindex``);
            # here only the temporary files of writers that died.
            remove_stale_partials(self.data_dir, prefix)
            # Two connections: the committer thread's commits never make ``has_key`` wait.
            self._index = open_index(self.data_dir, durable=self.fsync)
            self._commit_index = KeyIndex(self.data_dir, durable=self.fsync)
            self._next_seq = self._index.next_seq(prefix)
            self._quarantine = QuarantineLog(quarantine_path(self.data_dir, prefix), fsync=self.fsync)
        except BaseException:
            self._lock.release()
            raise
        self._mtime = int(time.time())
        self._shard: PendingShard | None = None
        self._pending_marks: set[str] = set()
        self._pending_skips: set[tuple[str, str]] = set()
        self._inflight: CommitJob | None = None
        self._inflight_future: Future | None = None
        self._failed: BaseException | None = None
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"commit-{prefix}")
        self.shards: list[Path] = []  # committed by this writer, in order
        self.written = 0  # samples accepted by write()/write_encoded()
        self.duplicates = 0  # samples refused because their key was already written
        self.dropped_at_commit = 0  # accepted, then dropped: a concurrent writer committed the key first

    # ----- what exists -----

    @property
    def done_records(self) -> DoneRecords:
        """Set-like view of the ids of source records whose samples are all committed (by any
        writer in ``data_dir``): ``in`` is one index lookup, so it costs nothing to take it."""
        return self._index.done_records()

    def has_key(self, key: str) -> bool:
        """True if ``key`` is committed in ``data_dir`` or written earlier by this writer."""
        # In-memory first, then the index: the committer records a shard in the index before it
        # clears ``_inflight``, so a key moving from one to the other is never missed.
        with self._mutex:
            if ((self._shard is not None and key in self._shard.keys)
                    or (self._inflight is not None and key in self._inflight.shard.keys)):
                return True
        return self._index.has_key(key)

    # ----- writing -----

    def write(self, sample: EditSample) -> bool:
        """Validate, encode and write ``sample``. Returns False (writing nothing) if its key is
        already committed in ``data_dir`` or written earlier by this writer. Raises ``SampleError``
        for an invalid sample."""
        self._check_usable()
        sample.validate()
        if self.has_key(sample.key):
            self.duplicates += 1
            return False
        members, meta = self.encoder.encode(sample)
        return self.write_encoded(sample.key, members, meta)

    def write_encoded(self, key: str, members: dict[str, bytes], meta: dict) -> bool:
        """Write one sample from already-encoded members.

        ``members`` maps extensions (``"src.png"``, ``"mask.png"``...) to bytes; ``KEY.json`` is
        written from ``meta`` (the sample's metadata dict, whose ``"key"``, if present, must equal
        ``key``). Same return value as ``write``.
        """
        self._check_usable()
        entries = _member_entries(key, members, meta)
        if self.has_key(key):
            self.duplicates += 1
            return False
        span = sum(member_span(len(data)) for _, data in entries)
        # The archive's end (two zero blocks, padded to a whole tar record) counts towards maxsize.
        if self._shard is not None and self._shard.count and archive_size(self._shard.size + span) > self.maxsize:
            self._hand_off()
        if self._shard is None:
            self._shard = PendingShard(self.data_dir, self.prefix, self._mtime)
        try:
            self._shard.add(key, entries, index_row(dict(meta, key=key)))
        except BaseException:
            # A half-written sample cannot be taken back out of a tar: drop the shard, as a crash
            # would; a rerun rebuilds its samples.
            self._abort_pending()
            raise
        self.written += 1
        if self._shard.count >= self.maxcount or archive_size(self._shard.size) >= self.maxsize:
            self._hand_off()
        return True

    def quarantine(self, q: Quarantined) -> bool:
        """Append ``q`` to ``data_dir/{prefix}.quarantine.jsonl``; False if its id is already there."""
        self._check_usable()
        return self._quarantine.append(q)

    def skip(self, reason: str, record_id: str) -> bool:
        """Count a builder or quality rejection (``reason`` like ``ambiguous``, ``quality:psnr``).
        Counted once per ``(reason, record_id)`` across reruns; False if already counted."""
        self._check_usable()
        item = (str(reason), str(record_id))
        with self._mutex:
            known = self._inflight is not None and item in self._inflight.skips
        if known or item in self._pending_skips or self._index.has_skip(*item):
            return False
        self._pending_skips.add(item)
        return True

    def mark_record_done(self, record_id: str) -> None:
        """Declare every sample of ``record_id`` written; durable with the next commit."""
        self._check_usable()
        self._pending_marks.add(str(record_id))

    # ----- committing -----

    def flush(self) -> None:
        """Commit the pending shard (and pending markers) and wait until it is durable."""
        self._check_usable()
        if self._shard is not None or self._pending_marks or self._pending_skips:
            self._hand_off()
        self._wait_for_commit()

    def _hand_off(self) -> None:
        """Pass the pending shard to the committer thread (after the previous one finished)."""
        self._wait_for_commit()
        # Markers and skips with no samples still need a commit unit: an empty shard carries them.
        shard = self._shard or PendingShard(self.data_dir, self.prefix, self._mtime)
        job = CommitJob(shard, self._pending_marks, self._pending_skips)
        with self._mutex:
            self._inflight, self._shard = job, None
        self._pending_marks, self._pending_skips = set(), set()
        self._inflight_future = self._committer.submit(self._commit, job, self._next_seq)

    def _commit(self, job: CommitJob, seq: int) -> None:
        try:
            final, dropped = commit_shard(job, self._commit_index, self.prefix, seq, fsync=self.fsync)
        finally:
            with self._mutex:
                self._inflight = None
        self._next_seq = seq + 1
        self.dropped_at_commit += dropped
        self.shards.append(final)

    def _wait_for_commit(self) -> None:
        future, self._inflight_future = self._inflight_future, None
        if future is None:
            return
        try:
            future.result()
        except BaseException as exc:
            self._failed = exc
            raise

    def _abort_pending(self) -> None:
        if self._shard is not None:
            self._shard.abort()
            self._shard = None
        # Markers may cover samples of the dropped shard; the rerun re-marks them.
        self._pending_marks.clear()
        self._pending_skips.clear()

    # ----- lifecycle -----

    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"ShardWriter for {self.data_dir}/{self.prefix} is closed")
        if self._failed is not None:
            raise ShardError(f"an earlier commit of {self.prefix} failed ({self._failed!r}); "
                             "open a new writer to resume") from self._failed

    def close(self) -> None:
        """Commit what is pending, wait for it, release the prefix lock. Idempotent. After a failed
        commit, pending samples are discarded (a rerun rebuilds them) and the error is raised."""
        if self._closed:
            return
        try:
            if self._failed is None:
                self.flush()
        finally:
            self._closed = True
            try:
                self._wait_for_commit()
            finally:
                self._abort_pending()
                self._committer.shutdown(wait=True)
                self._quarantine.close()
                self._index.close()
                self._commit_index.close()
                self._lock.release()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _member_entries(key: str, members: dict[str, bytes], meta: dict) -> list[tuple[str, bytes]]:
    """Check a sample's key, members and metadata; return its ``(tar member name, bytes)`` list."""
    check_key(key)
    if not isinstance(meta, dict) or meta.get("key", key) != key:
        raise SampleError(f"meta must be a dict whose 'key' is {key!r}")
    entries = []
    for ext, data in members.items():
        if not ext or ext.startswith(".") or "/" in ext or ext == "json":
            raise SampleError(f"bad member extension {ext!r} (KEY.json is written from meta)")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise SampleError(f"member {ext!r} must be bytes, got {type(data).__name__}")
        entries.append((f"{key}.{ext}", bytes(data)))
    try:
        meta_bytes = json.dumps(dict(meta, key=key), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise SampleError(f"metadata of {key} is not JSON-serialisable: {exc}") from exc
    entries.append((f"{key}.json", meta_bytes))
    for name, _ in entries:
        if len(name.encode("utf-8")) > MAX_MEMBER_NAME:
            raise SampleError(f"tar member name {name!r} is longer than {MAX_MEMBER_NAME} bytes")
    return entries
