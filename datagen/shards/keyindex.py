"""The committed-key index: what a data folder has committed, answerable without reading sidecars.

One SQLite file per data folder (``.index/committed.sqlite``) holds, for every committed shard, its
name, prefix, sequence number and sample count, and the keys, completion markers and counted skips
its sidecar carries. A writer opens it in O(1) (no folder listing, no sidecar reads) and asks it
one key at a time, so neither opening a writer nor a commit grows with the dataset.

Why every key still exists exactly once, however a process dies
---------------------------------------------------------------
The sidecar stays the commit point (``layout``): a shard is committed iff its tar and sidecar are
in place. The index is a cache of the sidecars, kept exact by three rules:

1. It is written only under the folder-wide commit lock (``layout.commit_lock``, an ``flock``), by
   the one commit in progress, so two writers never race on it and key de-duplication across
   writers (processes, Dask workers on one file system) is exact.
2. A commit runs in this durable order: (a) an *intent* row naming the shard is committed to the
   index; (b) the tar is fsynced, the sidecar written and fsynced, the tar renamed, the sidecar
   renamed (the commit point), the folder fsynced; (c) one SQLite transaction adds the shard, its
   keys, markers and skips and deletes the intent. A kill before (a) leaves nothing; between (a)
   and the sidecar's rename it leaves an intent without a sidecar (the commit did not happen: the
   intent and any renamed tar are removed); between the rename and (c) it leaves an intent with a
   sidecar (the commit happened: that one sidecar is read into the index). A kill inside (c) rolls
   the transaction back to the previous case. Whoever next takes the commit lock (the next commit,
   or a writer opening) resolves the intents it finds before reading or adding keys; since a live
   commit holds the lock from (a) to (c), every intent seen under the lock belongs to a dead commit.
3. Changes made outside the writers (shards copied in or deleted by hand, an index from an older
   version, no index yet) are noticed because the folder's mtime differs from the one recorded
   after the last commit; the folder is then listed and reconciled: sidecars the index lacks are
   read (once), shards that vanished leave the index. A key found in two sidecars is an error.
   (A hand edit during a live commit, within the file system's timestamp granularity of it, can
   go unnoticed; edit data folders between runs.)

The SQLite file is in WAL mode, so readers (``has_key`` from writing threads) never wait for a
commit. Its transactions are not fsynced one by one (``synchronous=NORMAL``; ``OFF`` for writers
with ``fsync=False``): a kill of the process loses nothing (the page cache survives), and a power
loss may take back the last index transactions but never the fsynced renames, which changed the
folder's mtime, so rule 3 reconciles them. That saves two fsyncs per commit. The index is a cache:
deleting ``.index/`` between runs is always safe; the next writer rebuilds it from the sidecars,
reading each once.
Like the ``flock`` locks, it needs a file system with working POSIX locks (local disks; not NFS).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Set
from pathlib import Path
from typing import Iterable, Iterator

from datagen.shards.layout import SHARD_RE, commit_lock, scan_shards, sidecar_path

INDEX_DIR = ".index"
INDEX_FILE = "committed.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE shards(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, prefix TEXT NOT NULL,
                    seq INTEGER NOT NULL, nsamples INTEGER NOT NULL);
CREATE INDEX shards_by_prefix ON shards(prefix, seq);
CREATE TABLE keys(key TEXT PRIMARY KEY, shard INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX keys_by_shard ON keys(shard);
CREATE TABLE records_done(id TEXT PRIMARY KEY, shard INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX records_by_shard ON records_done(shard);
CREATE TABLE skips(reason TEXT NOT NULL, record TEXT NOT NULL, shard INTEGER NOT NULL,
                   PRIMARY KEY(reason, record)) WITHOUT ROWID;
CREATE INDEX skips_by_shard ON skips(shard);
CREATE TABLE intents(name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE state(name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


def index_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / INDEX_DIR / INDEX_FILE


def _folder_mtime(data_dir: Path) -> int:
    return os.stat(data_dir).st_mtime_ns


def _use_wal(conn: sqlite3.Connection, attempts: int = 200) -> None:
    """Put the database in WAL mode (a property of the file: once set, every later connection has it).

    Switching needs the database to itself, and SQLite answers "database is locked" at once rather
    than waiting on its busy timeout when another process holds it (seen with several writer
    processes opening a new folder together): read the mode first, and retry the switch."""
    for attempt in range(attempts):
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                return
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.005 * (1 + attempt % 20))


class KeyIndex:
    """One connection to ``data_dir``'s committed-key index.

    Connects on first use; ``open_index`` is the way to get one that is ready to read. Reads
    (``has_key``, ``has_record``, ``has_skip``, ``committed_among``) are safe at any time from the
    thread that uses this connection. ``refresh`` and ``record_commit`` / ``begin_commit``
    must run under ``layout.commit_lock(data_dir)``. ``durable``: the index survives a power loss
    uncorrupted (pair it with the writer's ``fsync``).
    """

    def __init__(self, data_dir: Path | str, *, durable: bool = True):
        self.data_dir = Path(data_dir)
        self._path = index_path(self.data_dir)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._durable = durable
        self._conn: sqlite3.Connection | None = None
        # One connection may be handed from the thread that opened it to a committer thread;
        # ``_lock`` keeps its use serial.
        self._lock = threading.Lock()

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, opened on first use (and again after ``close``, for late reads)."""
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, timeout=60, isolation_level=None, check_same_thread=False)
            # synchronous first: switching a new file to WAL under the default (FULL) would fsync.
            self._conn.execute(f"PRAGMA synchronous={'NORMAL' if self._durable else 'OFF'}")
            _use_wal(self._conn)
        return self._conn

    def ensure_schema(self) -> None:
        """Create the tables (or replace an index of another version) if needed."""
        if self._one("PRAGMA user_version")[0] == SCHEMA_VERSION:
            return
        with commit_lock(self.data_dir), self._lock:
            if self._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return  # another process created it meanwhile
            # An index of another version is a cache like any other: drop it and rebuild.
            drops = "".join(f"DROP TABLE IF EXISTS {t};" for t in
                            ("shards", "keys", "records_done", "skips", "intents", "state"))
            self._db.executescript(f"BEGIN IMMEDIATE;{drops}{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # ----- reads -----

    def _one(self, sql: str, args: tuple = ()):
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def has_key(self, key: str) -> bool:
        return self._one("SELECT 1 FROM keys WHERE key=?", (key,)) is not None

    def has_record(self, record_id: str) -> bool:
        return self._one("SELECT 1 FROM records_done WHERE id=?", (record_id,)) is not None

    def has_skip(self, reason: str, record_id: str) -> bool:
        return self._one("SELECT 1 FROM skips WHERE reason=? AND record=?", (reason, record_id)) is not None

    def committed_among(self, keys: Iterable[str]) -> set[str]:
        """The subset of ``keys`` already committed."""
        with self._lock:
            return {k for k in keys if self._db.execute("SELECT 1 FROM keys WHERE key=?", (k,)).fetchone()}

    def next_seq(self, prefix: str) -> int:
        """One past the highest committed sequence number of ``prefix`` (0 for a new prefix)."""
        row = self._one("SELECT max(seq) FROM shards WHERE prefix=?", (prefix,))
        return 0 if row[0] is None else row[0] + 1

    def count_keys(self) -> int:
        return self._one("SELECT count(*) FROM keys")[0]

    def count_records_done(self) -> int:
        return self._one("SELECT count(*) FROM records_done")[0]

    def done_records(self) -> "DoneRecords":
        return DoneRecords(self)

    def needs_refresh(self) -> bool:
        """True when a commit died half-way or the folder changed since the last commit."""
        if self._one("SELECT 1 FROM intents LIMIT 1") is not None:
            return True
        row = self._one("SELECT value FROM state WHERE name='folder_mtime_ns'")
        return row is None or int(row[0]) != _folder_mtime(self.data_dir)

    # ----- keeping it exact (under the commit lock) -----

    def refresh(self) -> None:
        """Resolve dead commits' intents and, if the folder changed, reconcile with its sidecars.
        Call under the commit lock."""
        with self._lock:
            for (name,) in self._db.execute("SELECT name FROM intents").fetchall():
                self._resolve_intent(name)
            row = self._db.execute("SELECT value FROM state WHERE name='folder_mtime_ns'").fetchone()
            mtime = _folder_mtime(self.data_dir)
            if row is None or int(row[0]) != mtime:
                self._reconcile(mtime)

    def _resolve_intent(self, name: str) -> None:
        tar = self.data_dir / name
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if sidecar_path(tar).exists():
                self._add_sidecar(name)
            else:
                tar.unlink(missing_ok=True)  # renamed, but the commit point never came
            self._db.execute("DELETE FROM intents WHERE name=?", (name,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _reconcile(self, mtime: int) -> None:
        """Make the index list exactly the committed shards on disk (the mtime is taken first, so a
        change made while listing is seen next time)."""
        shards, orphans = scan_shards(self.data_dir)
        for tar in orphans:  # under the commit lock no live commit is between its two renames
            tar.unlink(missing_ok=True)
        on_disk = {shard.name for shard in shards}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            known = {name for (name,) in self._db.execute("SELECT name FROM shards")}
            for name in known - on_disk:
                (shard_id,) = self._db.execute("SELECT id FROM shards WHERE name=?", (name,)).fetchone()
                for table in ("keys", "records_done", "skips"):
                    self._db.execute(f"DELETE FROM {table} WHERE shard=?", (shard_id,))
                self._db.execute("DELETE FROM shards WHERE id=?", (shard_id,))
            for name in sorted(on_disk - known):
                self._add_sidecar(name)
            self._set_mtime(mtime)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _add_sidecar(self, name: str) -> None:
        from datagen.shards.commit import ShardError
        from datagen.shards.layout import CommittedShard

        m = SHARD_RE.match(name)
        shard = CommittedShard(self.data_dir, name, m["prefix"], int(m["seq"]))
        try:
            sidecar = shard.load_sidecar()
            keys, marks = list(sidecar["keys"]), list(sidecar.get("records_done", []))
            skips = [(reason, i) for reason, ids in sidecar.get("skipped", {}).items() for i in ids]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ShardError(f"cannot read the sidecar of committed shard {shard.tar}: {exc}; "
                             "without it a writer cannot tell which keys exist") from exc
        self._insert(name, shard.prefix, shard.seq, keys, marks, skips)

    def _insert(self, name: str, prefix: str, seq: int, keys: list[str], marks: Iterable[str],
                skips: Iterable[tuple[str, str]]) -> None:
        from datagen.shards.commit import ShardError

        cur = self._db.execute("INSERT INTO shards(name, prefix, seq, nsamples) VALUES (?,?,?,?)",
                               (name, prefix, seq, len(keys)))
        shard_id = cur.lastrowid
        try:
            self._db.executemany("INSERT INTO keys(key, shard) VALUES (?,?)", ((k, shard_id) for k in keys))
        except sqlite3.IntegrityError:
            clash = next(k for k in keys if self._db.execute(
                "SELECT 1 FROM keys WHERE key=? AND shard!=?", (k, shard_id)).fetchone())
            other = self._db.execute("SELECT s.name FROM keys k JOIN shards s ON s.id=k.shard WHERE k.key=?",
                                     (clash,)).fetchone()[0]
            raise ShardError(f"key {clash} is in both {other} and {name} in {self.data_dir}") from None
        self._db.executemany("INSERT OR IGNORE INTO records_done(id, shard) VALUES (?,?)",
                             ((str(r), shard_id) for r in marks))
        self._db.executemany("INSERT OR IGNORE INTO skips(reason, record, shard) VALUES (?,?,?)",
                             ((str(a), str(b), shard_id) for a, b in skips))

    def _set_mtime(self, mtime: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO state(name, value) VALUES ('folder_mtime_ns', ?)", (str(mtime),))

    def begin_commit(self, name: str) -> None:
        """Step (a): durably note that shard ``name`` is about to be renamed into place."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO intents(name) VALUES (?)", (name,))

    def record_commit(self, name: str, prefix: str, seq: int, keys: list[str], marks: Iterable[str],
                      skips: Iterable[tuple[str, str]]) -> None:
        """Step (c): the shard's sidecar is in place; add what it holds and drop the intent."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._insert(name, prefix, seq, keys, marks, skips)
                self._db.execute("DELETE FROM intents WHERE name=?", (name,))
                self._set_mtime(_folder_mtime(self.data_dir))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def resolve(self, name: str) -> None:
        """After a failed commit of ``name``: keep it if its sidecar made it, else undo the rename."""
        with self._lock:
            if self._db.execute("SELECT 1 FROM intents WHERE name=?", (name,)).fetchone():
                self._resolve_intent(name)


class DoneRecords(Set):
    """Live, set-like view of the completion markers in the index (``in`` is one lookup)."""

    def __init__(self, index: KeyIndex):
        self._index = index

    @classmethod
    def _from_iterable(cls, iterable) -> frozenset:
        return frozenset(iterable)  # what set operations (|, &, -) on the view return

    def __contains__(self, record_id) -> bool:
        return self._index.has_record(str(record_id))

    def __iter__(self) -> Iterator[str]:
        with self._index._lock:
            rows = self._index._db.execute("SELECT id FROM records_done").fetchall()
        return iter([r for (r,) in rows])

    def __len__(self) -> int:
        return self._index.count_records_done()


def open_index(data_dir: Path | str, *, durable: bool = True) -> KeyIndex:
    """``data_dir``'s index, brought up to date first if a commit died or the folder changed."""
    index = KeyIndex(data_dir, durable=durable)
    try:
        index.ensure_schema()
        if index.needs_refresh():
            with commit_lock(index.data_dir):
                index.refresh()
    except BaseException:
        index.close()
        raise
    return index


def describe(data_dir: Path | str) -> dict:
    """Counts for logs and tests: ``{"shards", "keys", "records_done"}``."""
    index = open_index(data_dir)
    try:
        return {"shards": index._one("SELECT count(*) FROM shards")[0], "keys": index.count_keys(),
                "records_done": index.count_records_done()}
    finally:
        index.close()


__all__ = ["KeyIndex", "DoneRecords", "open_index", "index_path", "describe"]
