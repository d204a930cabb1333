"""``ShardWriter``: WebDataset shards that are committed atomically, resumable and exactly-once.

Exactly-once rests on two mechanisms (see ``layout`` for the files):

* **key de-duplication**: ``write`` refuses a key already committed in the data folder by any
  writer (loaded from the sidecars at open and re-read at every commit) or pending in this writer.
  At commit time, under a folder-wide lock, keys that a concurrent writer committed meanwhile are
  dropped from our shard, so even overlapping concurrent writers never commit a key twice.
* **completion markers** (datatrove-style): ``mark_record_done(id)`` is stored in the sidecar of
  the next shard to commit, so a restarted run can skip whole source records (``done_records``)
  without loading them. A record whose samples straddle a crash is not marked, is rebuilt on
  restart, and key de-duplication drops the samples that did get committed.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import datagen
from datagen.imageio import encode_image, encode_mask
from datagen.schema import _KEY_RE, EditSample, Quarantined, SampleError
from datagen.shards.index import count_rows, index_row
from datagen.shards.layout import (
    LOCK_DIR,
    PARTIAL_DIR,
    check_prefix,
    commit_lock,
    committed_shards,
    fsync_dir,
    prefix_lock,
    quarantine_path,
    remove_stale_files,
    remove_stale_files_of_dead_writers,
    shard_name,
    sidecar_path,
)
from datagen.shards.pending import PendingShard
from datagen.shards.quarantine import QuarantineLog
from datagen.shards.tario import MAX_MEMBER_NAME, member_span

SIDECAR_FORMAT = "smartedit-shard-sidecar/1"
IMAGE_FORMATS = ("png", "jpg")


class ShardError(RuntimeError):
    """The data folder is in a state the writer cannot safely continue from."""


class WriterBusyError(ShardError):
    """Another live writer holds the same prefix in the same data folder."""


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ShardWriter:
    """Write ``EditSample``s to ``data_dir/{prefix}-{seq:06d}.tar`` (WebDataset layout).

    Each sample becomes ``KEY.src.{png|jpg}``, ``KEY.tgt.{png|jpg}``, ``KEY.mask.png`` (L mode,
    255 = edit region) and ``KEY.json`` (``sample.metadata()``). A shard rolls over after
    ``maxcount`` samples or before it would pass ``maxsize`` bytes, and is committed atomically
    (temporary name, fsync, rename, then its sidecar ``{shard}.json``). Use as a context manager;
    leaving the block commits the pending shard. Writers with different prefixes may share a data
    folder, also from separate processes; a second live writer of the same prefix raises
    ``WriterBusyError``.
    """

    def __init__(self, data_dir, prefix: str, *, maxcount: int = 1000, maxsize: float = 3e8,
                 image_format: str = "png"):
        if int(maxcount) < 1 or float(maxsize) <= 0:
            raise ValueError(f"maxcount must be >= 1 and maxsize > 0, got {maxcount}, {maxsize}")
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        self.data_dir = Path(data_dir)
        self.prefix = check_prefix(prefix)
        self.maxcount, self.maxsize, self.image_format = int(maxcount), float(maxsize), image_format
        for folder in (self.data_dir, self.data_dir / PARTIAL_DIR, self.data_dir / LOCK_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = prefix_lock(self.data_dir, prefix)
        if not self._lock.acquire(blocking=False):
            raise WriterBusyError(f"another writer is writing prefix {prefix!r} in {self.data_dir}; "
                                  "give each concurrent writer its own prefix")
        self._closed = False
        try:
            remove_stale_files(self.data_dir, prefix)
            remove_stale_files_of_dead_writers(self.data_dir, skip_prefix=prefix)
            self._committed_keys: set[str] = set()
            self._done_records: set[str] = set()
            self._committed_skips: set[tuple[str, str]] = set()
            self._loaded_sidecars: set[str] = set()
            own = [s.seq for s in committed_shards(self.data_dir) if s.prefix == prefix]
            self._next_seq = max(own) + 1 if own else 0
            self._refresh_committed()
            self._quarantine = QuarantineLog(quarantine_path(self.data_dir, prefix))
        except BaseException:
            self._lock.release()
            raise
        self._mtime = int(time.time())
        self._shard: PendingShard | None = None
        self._pending_marks: set[str] = set()
        self._pending_skips: set[tuple[str, str]] = set()
        self.shards: list[Path] = []  # committed by this writer, in order
        self.written = 0  # samples accepted by write()/write_encoded()
        self.duplicates = 0  # samples refused because their key was already written
        self.dropped_at_commit = 0  # accepted, then dropped: a concurrent writer committed the key first

    # ----- state from committed sidecars -----

    @property
    def done_records(self) -> set[str]:
        """Ids of source records whose samples are all committed (by any writer in ``data_dir``)."""
        return self._done_records

    def has_key(self, key: str) -> bool:
        """True if ``key`` is committed in ``data_dir`` or pending in this writer."""
        return key in self._committed_keys or (self._shard is not None and key in self._shard.keys)

    def _refresh_committed(self) -> None:
        for shard in committed_shards(self.data_dir):
            if shard.tar.name in self._loaded_sidecars:
                continue
            try:
                sidecar = shard.load_sidecar()
                keys, done = sidecar["keys"], sidecar.get("records_done", [])
                skipped = sidecar.get("skipped", {})
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ShardError(f"cannot read the sidecar of committed shard {shard.tar}: {exc}; "
                                 "without it the writer cannot tell which keys exist") from exc
            self._committed_keys.update(keys)
            self._done_records.update(done)
            self._committed_skips.update((reason, i) for reason, ids in skipped.items() for i in ids)
            self._loaded_sidecars.add(shard.tar.name)

    # ----- writing -----

    def write(self, sample: EditSample) -> bool:
        """Validate, encode and write ``sample``. Returns False (writing nothing) if its key is
        already committed in ``data_dir`` or written earlier by this writer. Raises ``SampleError``
        for an invalid sample."""
        self._check_open()
        sample.validate()
        if self.has_key(sample.key):
            self.duplicates += 1
            return False
        fmt = self.image_format
        members = {
            f"src.{fmt}": encode_image(sample.src, fmt),
            f"tgt.{fmt}": encode_image(sample.tgt, fmt),
            "mask.png": encode_mask(sample.mask),
        }
        return self.write_encoded(sample.key, members, sample.metadata())

    def write_encoded(self, key: str, members: dict[str, bytes], meta: dict) -> bool:
        """Write one sample from already-encoded members.

        ``members`` maps extensions (``"src.png"``, ``"mask.png"``...) to bytes; ``KEY.json`` is
        written from ``meta`` (the sample's metadata dict, whose ``"key"``, if present, must equal
        ``key``). Same return value as ``write``.
        """
        self._check_open()
        entries = self._member_entries(key, members, meta)
        if self.has_key(key):
            self.duplicates += 1
            return False
        span = sum(member_span(len(data)) for _, data in entries)
        shard = self._shard
        if shard is not None and shard.count and shard.size + span > self.maxsize:
            self._commit()
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
        if self._shard.count >= self.maxcount or self._shard.size >= self.maxsize:
            self._commit()
        return True

    @staticmethod
    def _member_entries(key: str, members: dict[str, bytes], meta: dict) -> list[tuple[str, bytes]]:
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise SampleError(f"key {key!r} must be 1-128 characters of letters, digits, '_' or '-'")
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

    def quarantine(self, q: Quarantined) -> bool:
        """Append ``q`` to ``data_dir/{prefix}.quarantine.jsonl``; False if its id is already there."""
        self._check_open()
        return self._quarantine.append(q)

    def skip(self, reason: str, record_id: str) -> bool:
        """Count a builder or quality rejection (``reason`` like ``ambiguous``, ``quality:psnr``).
        Counted once per ``(reason, record_id)`` across reruns; False if already counted."""
        self._check_open()
        item = (str(reason), str(record_id))
        if item in self._committed_skips or item in self._pending_skips:
            return False
        self._pending_skips.add(item)
        return True

    def mark_record_done(self, record_id: str) -> None:
        """Declare every sample of ``record_id`` written; durable with the next commit."""
        self._check_open()
        self._pending_marks.add(str(record_id))

    # ----- committing -----

    def flush(self) -> None:
        """Commit the pending shard (and pending markers) now, even if it is not full."""
        self._check_open()
        if self._shard is not None or self._pending_marks or self._pending_skips:
            self._commit()

    def _commit(self) -> None:
        # Markers and skips with no samples still need a commit unit: an empty shard carries them.
        shard = self._shard or PendingShard(self.data_dir, self.prefix, self._mtime)
        self._shard = None
        sidecar_tmp = shard.path.with_name(shard.path.name.replace(".tar.part", ".json.part"))
        try:
            with commit_lock(self.data_dir):
                self._refresh_committed()
                dropped = shard.keys & self._committed_keys
                if dropped:
                    shard = shard.without(dropped)
                    sidecar_tmp = shard.path.with_name(shard.path.name.replace(".tar.part", ".json.part"))
                    self.dropped_at_commit += len(dropped)
                filesize, sha256 = shard.finish()
                final = self.data_dir / shard_name(self.prefix, self._next_seq)
                sidecar = self._sidecar(final.name, shard, filesize, sha256)
                _write_durably(sidecar_tmp, json.dumps(sidecar, indent=1).encode("utf-8"))
                os.replace(shard.path, final)
                os.replace(sidecar_tmp, sidecar_path(final))
                fsync_dir(self.data_dir)
        except BaseException:
            shard.abort()
            sidecar_tmp.unlink(missing_ok=True)
            raise
        self._next_seq += 1
        self._loaded_sidecars.add(final.name)
        self._committed_keys |= shard.keys
        self._done_records |= self._pending_marks
        self._committed_skips |= self._pending_skips
        self._pending_marks, self._pending_skips = set(), set()
        self.shards.append(final)

    def _sidecar(self, name: str, shard: PendingShard, filesize: int, sha256: str) -> dict:
        skipped: dict[str, list[str]] = {}
        for reason, record_id in sorted(self._pending_skips):
            skipped.setdefault(reason, []).append(record_id)
        return {
            "format": SIDECAR_FORMAT,
            "shard": name,
            "prefix": self.prefix,
            "nsamples": shard.count,
            "filesize": filesize,
            "sha256": sha256,
            "keys": [row["key"] for row in shard.rows],
            "counts": count_rows(shard.rows),
            "skipped": skipped,
            "records_done": sorted(self._pending_marks),
            "samples": shard.rows,
            "pipeline_version": datagen.PIPELINE_VERSION,
            "created": _utc_now(),
            "writer": {"host": socket.gethostname(), "pid": os.getpid()},
        }

    def _abort_pending(self) -> None:
        if self._shard is not None:
            self._shard.abort()
            self._shard = None
        # Markers may cover samples that were in the dropped shard; the rerun re-marks them.
        self._pending_marks.clear()
        self._pending_skips.clear()

    # ----- lifecycle -----

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"ShardWriter for {self.data_dir}/{self.prefix} is closed")

    def close(self) -> None:
        """Commit what is pending, then release the prefix lock. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._quarantine.close()
            self._lock.release()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
