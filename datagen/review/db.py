"""One SQL layer, two dialects: SQLite (WAL, the default) and PostgreSQL (by URL).

Queries are written once with ``?`` placeholders and the handful of constructs both engines
share (partial indexes, ``ON CONFLICT``, ``RETURNING``); the few differences live here:
row-locking clauses, primary-key types, how a write transaction starts, the audit-log triggers.

SQLite connections are per thread (the web app runs its handlers on a thread pool); Postgres
connections come from a small pool, since each one is a server process.
"""
from __future__ import annotations

import queue
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import QueueMissing

SCHEMA_VERSION = "1"

_TABLES = """
CREATE TABLE IF NOT EXISTS settings (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS reviewers (
  name TEXT PRIMARY KEY,
  token_hash TEXT NOT NULL UNIQUE,
  is_admin INTEGER NOT NULL DEFAULT 0,
  created {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
  id {pk},
  key TEXT NOT NULL UNIQUE,
  case_id TEXT NOT NULL,
  instruction TEXT NOT NULL,
  scenario TEXT NOT NULL,
  op TEXT NOT NULL,
  meta TEXT NOT NULL,
  src TEXT NOT NULL,
  tgt TEXT NOT NULL,
  mask TEXT NOT NULL,
  outline TEXT NOT NULL,
  required INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  lease_reviewer TEXT,
  lease_until {real},
  created {real} NOT NULL,
  decided_at {real},
  published_at {real},
  resolved_by TEXT
);
CREATE INDEX IF NOT EXISTS items_pending ON items (id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS items_holder ON items (lease_reviewer, status);
CREATE INDEX IF NOT EXISTS items_status ON items (status, id);
CREATE INDEX IF NOT EXISTS items_case ON items (case_id, id);
CREATE TABLE IF NOT EXISTS decisions (
  id {pk},
  item_id BIGINT NOT NULL REFERENCES items (id),
  reviewer TEXT NOT NULL,
  verdict TEXT NOT NULL CHECK (verdict IN ('approve', 'reject')),
  at {real} NOT NULL,
  undone_at {real}
);
CREATE UNIQUE INDEX IF NOT EXISTS decisions_once ON decisions (item_id, reviewer) WHERE undone_at IS NULL;
CREATE INDEX IF NOT EXISTS decisions_by_reviewer ON decisions (reviewer, id);
CREATE TABLE IF NOT EXISTS skips (
  item_id BIGINT NOT NULL REFERENCES items (id),
  reviewer TEXT NOT NULL,
  at {real} NOT NULL,
  PRIMARY KEY (item_id, reviewer)
);
CREATE TABLE IF NOT EXISTS audit (
  id {pk},
  at {real} NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  item_id BIGINT,
  detail TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS audit_item ON audit (item_id);
"""

# The audit log is append-only at the database level, so no code path (ours or a careless
# maintenance script) can rewrite who decided what.
_SQLITE_TRIGGERS = [
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END",
]

_POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION review_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH ROW EXECUTE FUNCTION review_audit_append_only()",
    "CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION review_audit_append_only()",
]


# Columns added after the first release, as (table, column, type). Added to an existing queue
# when it is opened; a queue created before them simply gains them (NULL for old rows).
_ADDED_COLUMNS = [
    ("items", "publish_run", "TEXT"),          # the publish run that has taken the item
    ("items", "publish_claimed_at", "{real}"),  # when it did; from then on undo is refused
    ("decisions", "reason", "TEXT"),           # reject reason key (REJECT_REASONS)
    ("decisions", "note", "TEXT"),             # the reviewer's free-text comment
    ("decisions", "struck", "TEXT"),           # JSON list of struck paraphrase indexes
]


def is_postgres_url(url: str) -> bool:
    return str(url).startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str | Path) -> Path:
    """``sqlite:///abs/path.db``, ``sqlite:///rel.db`` or a plain path -> the file's path."""
    text = str(url)
    if text.startswith("sqlite:///"):
        # sqlite:////abs/q.db -> "/abs/q.db"; sqlite:///rel/q.db -> "rel/q.db" (SQLAlchemy's convention).
        text = text[len("sqlite:///"):]
    elif text.startswith("sqlite://"):
        raise ValueError(f"unsupported SQLite URL {url!r}; use sqlite:///path/queue.db")
    return Path(text)


class Tx:
    """A cursor inside one transaction: ``all`` / ``one`` / ``run`` / ``defer`` with ``?``
    placeholders.

    On Postgres the statements that open the transaction (``begin``) are not sent on their own:
    they go out with the first query, in one round trip (pipeline mode), or with the deferred
    statements and the COMMIT if the block runs no query.
    """

    def __init__(self, cursor: Any, postgres: bool, begin: tuple[str, ...] = ()):
        self._cur = cursor
        self._postgres = postgres
        self._begin = list(begin)
        self.deferred: list[tuple[str, tuple]] = []

    @property
    def begun(self) -> bool:
        return not self._begin

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._postgres else sql

    def _execute(self, statements: list[tuple[str, tuple]]) -> None:
        """Run the opening statements (if not yet sent) and ``statements``; results of the last."""
        statements = [(sql, ()) for sql in self._begin] + statements
        self._begin = []
        if len(statements) == 1:
            self._cur.execute(*statements[0])
            return
        with self._cur.connection.pipeline():
            for sql, params in statements:
                self._cur.execute(sql, params)

    def all(self, sql: str, params: tuple = ()) -> list[tuple]:
        self._execute([(self._sql(sql), params)])
        return list(self._cur.fetchall())

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        self._execute([(self._sql(sql), params)])
        return self._cur.fetchone()

    def run(self, sql: str, params: tuple = ()) -> int:
        self._execute([(self._sql(sql), params)])
        return self._cur.rowcount

    def defer(self, sql: str, params: tuple = ()) -> None:
        """A statement whose result nobody reads, run before the commit. Postgres sends all of
        them together with the COMMIT, in one round trip (pipeline mode); SQLite runs it now."""
        if self._postgres:
            self.deferred.append((self._sql(sql), params))
        else:
            self._cur.execute(sql, params)

    def commit(self) -> None:
        if self._begin and not self.deferred:
            return  # nothing was sent: no transaction to end
        self._execute(self.deferred + [("COMMIT", ())])
        self.deferred = []

    def rollback_and_close(self) -> None:
        try:
            if self.begun:
                self._cur.execute("ROLLBACK")  # after a failed COMMIT: a no-op
        finally:
            self._cur.close()

    def close(self) -> None:
        self._cur.close()


class Database:
    """Thread-local connections to one queue database; see the module docstring."""

    def __init__(self, url: str | Path, *, pool_size: int = 8, create: bool = True):
        self.url = str(url)
        self.postgres = is_postgres_url(self.url)
        self.dialect = "postgres" if self.postgres else "sqlite"
        # Row-lock suffix for SELECTs that precede an UPDATE of the same rows. SQLite needs none:
        # a write transaction there holds the whole database.
        self.for_update = " FOR UPDATE" if self.postgres else ""
        self._local = threading.local()
        self._all: list[Any] = []
        self._all_lock = threading.Lock()
        # SQLite allows one writer at a time; queueing writers on a Python lock instead of
        # SQLite's busy handler (which sleeps up to 100 ms between retries) keeps tail latency low.
        self._write_lock = threading.Lock()
        # Postgres: a small shared pool rather than a connection per web-server thread. Every
        # connection is a server process; a few busy ones beat dozens competing for the CPUs.
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._pool_slots = threading.BoundedSemaphore(pool_size)
        if not self.postgres:
            path = sqlite_path(self.url)
            if not create and not path.is_file():
                raise QueueMissing("no_queue", f"no review queue at {path}: check the path (the "
                                   "commands that fill a queue create it)")
            path.parent.mkdir(parents=True, exist_ok=True)
            self.path = path.resolve()
        elif not create:
            self._check_postgres_queue()
        self._create_schema()

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.postgres:
            import psycopg  # imported here: SQLite users need not have it

            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            # Commits do not wait for the disk unless a transaction asks (``write(durable=True)``
            # does), so a lease taken in one autocommit statement (``single``) is one round trip.
            conn.execute("SET synchronous_commit = off")
        else:
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=60,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (WAL fsynced) before we acknowledge a decision.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """SQLite: this thread's connection. Postgres: one from the pool, returned afterwards."""
        if not self.postgres:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect()
            yield conn
            return
        with self._pool_slots:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = self._connect()
            if conn.closed or conn.broken:
                conn = self._connect()  # the server restarted or dropped us
            try:
                yield conn
            finally:
                if not (conn.closed or conn.broken):
                    self._pool.put(conn)

    def close(self) -> None:
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # closing a connection from another thread may complain; it's closed
                pass
        self._local = threading.local()
        self._pool = queue.LifoQueue()

    # -- transactions ------------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only snapshot (several queries see one consistent state)."""
        with self._connection() as conn:
            cur = conn.cursor()
            if not self.postgres:
                cur.execute("BEGIN")
            tx = Tx(cur, self.postgres, ("BEGIN",) if self.postgres else ())
            try:
                yield tx
            finally:
                tx.rollback_and_close()  # nothing to keep; cheaper than COMMIT on Postgres

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Tx]:
        """A write transaction, committed when the block exits, rolled back on error.

        ``durable=True``: the commit is on disk (fsync) before this returns; decisions use it.
        ``durable=False`` skips that wait for state that may be lost in a power cut without harm
        (a lease: at worst the item becomes claimable again). A process crash loses neither kind,
        and the next durable commit makes everything before it durable too.
        """
        if self.postgres:
            with self._connection() as conn:
                begin = ("BEGIN", "SET LOCAL synchronous_commit = on") if durable else ("BEGIN",)
                yield from self._finish(Tx(conn.cursor(), True, begin))
        else:
            with self._write_lock, self._connection() as conn:
                if getattr(self._local, "durable", True) != durable:
                    conn.execute("PRAGMA synchronous=" + ("FULL" if durable else "NORMAL"))
                    self._local.durable = durable
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                yield from self._finish(Tx(cur, False))

    @contextmanager
    def single(self) -> Iterator[Tx]:
        """One statement that is its own transaction and need not reach the disk before it is
        answered (a lease). Postgres: autocommit, one round trip; SQLite: ``write(durable=False)``."""
        if not self.postgres:
            with self.write(durable=False) as tx:
                yield tx
            return
        with self._connection() as conn:
            cur = conn.cursor()
            try:
                yield Tx(cur, True)
            finally:
                cur.close()

    def _finish(self, tx: Tx) -> Iterator[Tx]:
        try:
            yield tx
            tx.commit()
        except BaseException:
            tx.rollback_and_close()
            raise
        tx.close()

    # -- schema ------------------------------------------------------------------------------
    def _check_postgres_queue(self) -> None:
        with self.read() as tx:
            found = tx.one("SELECT to_regclass('items') IS NOT NULL AND to_regclass('decisions') IS NOT NULL")
        if not found[0]:
            raise QueueMissing("no_queue", "no review queue in that PostgreSQL database (no items table "
                               "on its search_path): check the URL (the commands that fill a queue create it)")

    def _create_schema(self) -> None:
        pk = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" if self.postgres else "INTEGER PRIMARY KEY"
        real = "DOUBLE PRECISION" if self.postgres else "REAL"
        ddl = _TABLES.format(pk=pk, real=real)
        with self.write() as tx:
            if self.postgres:
                # Several processes may open a fresh database at once; IF NOT EXISTS alone races.
                tx.run("SELECT pg_advisory_xact_lock(7162534)")
            for statement in _split(ddl):
                tx.run(statement)
            for statement in _POSTGRES_TRIGGERS if self.postgres else _SQLITE_TRIGGERS:
                tx.run(statement)
            self._add_columns(tx, real)
            tx.run("INSERT INTO settings (name, value) VALUES ('schema_version', ?) "
                   "ON CONFLICT (name) DO NOTHING", (SCHEMA_VERSION,))


    def _add_columns(self, tx: Tx, real: str) -> None:
        """Additive migrations: every ``_ADDED_COLUMNS`` entry a queue does not have yet."""
        for table, column, kind in _ADDED_COLUMNS:
            kind = kind.format(real=real)
            if self.postgres:
                tx.run(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
            elif column not in {row[1] for row in tx.all(f"PRAGMA table_info({table})")}:
                tx.run(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _split(ddl: str) -> list[str]:
    return [s.strip() for s in ddl.split(";") if s.strip()]
