"""The review queue: candidates, leases, decisions, undo and the audit log.

Rules it enforces (DESIGN.md, reliability):

* **One holder per item.** ``claim`` leases an item to one reviewer for ``lease_seconds``; nobody
  else is given it until it is decided, skipped or the lease runs out. On Postgres the claim is
  ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)``; on SQLite it runs inside a
  ``BEGIN IMMEDIATE`` transaction, which excludes every other writer.
* **Durable once acknowledged.** Decisions, skips, undos and resolutions commit (fsync) before
  the call returns. A lease commits without waiting for the disk: a power cut may forget one,
  which only makes the item claimable again (a killed process loses nothing).
* **A reviewer reviews an item at most once** (a partial unique index on active decisions).
  Repeating the same decision is acknowledged again and changes nothing, so a client may retry.
* **N reviews per item** (``required``, fixed when the item is enqueued) and an agreement rule
  (``unanimous``: all agree, else conflicted; ``majority``: more wins, a tie is conflicted).
* **Undo** withdraws the reviewer's latest decision (within ``undo_window_s``), re-opens the item
  and hands it back to them, unless it is already published.
* **Audit log**: decisions, skips, undos and resolutions are appended to ``audit``, which the
  database itself refuses to update or delete.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable

from ..imageio import encode_image, encode_mask
from ..schema import EditSample
from . import auth
from .blobs import BlobStore
from .db import Database, is_postgres_url, sqlite_path
from .errors import NotFound, QueueError
from .outline import outline_png
from .reads import QueueReads
from .records import ITEM_COLUMNS, agreement_status, check_decision, item_view

VERDICTS = ("approve", "reject")
AGREEMENT_RULES = ("unanimous", "majority")
DEFAULTS = {"reviews_per_item": "1", "agreement": "unanimous"}
AUTH_CACHE_S = 5.0


# claim(): renew the lease of the item the reviewer holds, else take the first free one they have
# neither decided nor skipped (SKIP LOCKED on Postgres: concurrent claims never wait on each other).
_RENEW = ("UPDATE items SET lease_until = ? WHERE id = (SELECT id FROM items WHERE lease_reviewer = ? "
          "AND status = 'pending' ORDER BY id LIMIT 1{lock})")
_TAKE = ("UPDATE items SET lease_reviewer = ?, lease_until = ? WHERE id = ("
         "SELECT i.id FROM items i WHERE i.status = 'pending' AND (i.lease_until IS NULL OR i.lease_until < ?) "
         "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.item_id = i.id AND d.reviewer = ? AND d.undone_at IS NULL) "
         "AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.item_id = i.id AND s.reviewer = ?){also} "
         "ORDER BY i.id LIMIT 1{lock})")
# "candidate 2 of 4" and "review 2 of 3" for the claimed row ``p``.
_CASE_COUNTS = ("(SELECT COUNT(*) FROM items c WHERE c.case_id = p.case_id), "
                "(SELECT COUNT(*) FROM items c WHERE c.case_id = p.case_id AND c.id < p.id), "
                "(SELECT COUNT(*) FROM decisions d WHERE d.item_id = p.id AND d.undone_at IS NULL)")
# Postgres: both updates and the counts as one statement; ``taken`` runs only when ``renewed`` is empty.
_PG_CLAIM = (f"WITH renewed AS ({_RENEW.format(lock=' FOR UPDATE')} RETURNING {ITEM_COLUMNS}), "
             f"taken AS ({_TAKE.format(also=' AND NOT EXISTS (SELECT 1 FROM renewed)', lock=' FOR UPDATE SKIP LOCKED')} "
             f"RETURNING {ITEM_COLUMNS}), "
             f"p AS (SELECT * FROM renewed UNION ALL SELECT * FROM taken) "
             f"SELECT p.*, {_CASE_COUNTS} FROM p")
_RENEW = _RENEW.format(lock="")
_TAKE = _TAKE.format(also="", lock="")


class ReviewStore(QueueReads):
    """A review queue in a database plus its image blobs; build one with ``open_store``."""

    def __init__(self, db: Database, blobs: BlobStore | None, *, lease_seconds: float = 300.0,
                 undo_window_s: float = 3600.0):
        self.db = db
        self._blobs = blobs
        self.lease_seconds = float(lease_seconds)
        self.undo_window_s = float(undo_window_s)
        self._auth_cache: dict[str, tuple[auth.Reviewer, float]] = {}
        # Wall-clock seconds for leases and timestamps; tests substitute a controllable clock.
        self.clock = time.time

    def close(self) -> None:
        self.db.close()

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            raise ValueError("this Postgres queue has no image folder yet: pass blob_dir (--blobs) once")
        return self._blobs

    # -- settings -----------------------------------------------------------------------------
    def setting(self, name: str) -> str | None:
        with self.db.read() as tx:
            row = tx.one("SELECT value FROM settings WHERE name = ?", (name,))
        return row[0] if row else DEFAULTS.get(name)

    def set_setting(self, name: str, value: str) -> None:
        with self.db.write() as tx:
            tx.run("INSERT INTO settings (name, value) VALUES (?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (name, str(value)))

    @property
    def reviews_per_item(self) -> int:
        return int(self.setting("reviews_per_item"))

    @property
    def agreement(self) -> str:
        return self.setting("agreement")

    def configure(self, *, reviews_per_item: int | None = None, agreement: str | None = None) -> None:
        """Set how many reviews items need and the rule that turns verdicts into a status.

        ``reviews_per_item`` applies to items enqueued later and to pending items nobody has
        reviewed yet (an item with votes keeps the number it was being reviewed under).
        """
        if reviews_per_item is not None:
            n = int(reviews_per_item)
            if n < 1:
                raise ValueError("reviews_per_item must be at least 1")
            with self.db.write() as tx:
                tx.run("INSERT INTO settings (name, value) VALUES ('reviews_per_item', ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (str(n),))
                tx.run("UPDATE items SET required = ? WHERE status = 'pending' AND required <> ? AND NOT EXISTS "
                       "(SELECT 1 FROM decisions d WHERE d.item_id = items.id AND d.undone_at IS NULL)", (n, n))
        if agreement is not None:
            if agreement not in AGREEMENT_RULES:
                raise ValueError(f"agreement must be one of {AGREEMENT_RULES}, got {agreement!r}")
            self.set_setting("agreement", agreement)

    # -- reviewers ----------------------------------------------------------------------------
    def add_reviewer(self, name: str, *, admin: bool = False) -> str:
        """Create a reviewer (or replace their token); returns the plain token, shown once."""
        self._auth_cache.clear()
        return auth.add_reviewer(self.db, name, admin=admin)

    def authenticate(self, token: str | None) -> auth.Reviewer | None:
        """The reviewer a token belongs to, or None. Hits are cached for ``AUTH_CACHE_S`` seconds
        (every request authenticates; a renewed token takes effect within that time)."""
        if not token:
            return None
        now = time.monotonic()
        hit = self._auth_cache.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        reviewer = auth.reviewer_for_token(self.db, token)
        if reviewer is not None:
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            self._auth_cache[token] = (reviewer, now + AUTH_CACHE_S)
        return reviewer

    # -- enqueue ------------------------------------------------------------------------------
    def add(self, sample: EditSample, *, case_id: str | None = None, required: int | None = None) -> bool:
        """Enqueue one candidate; False if its key is already queued (adding again is a no-op).

        ``case_id`` groups the candidates of one edit (defaults to ``provenance['case_id']``,
        else the key). Images are written to the blob store before the row that names them.
        """
        return self.add_many([sample], case_id=case_id, required=required) == 1

    def add_many(self, samples: Iterable[EditSample], *, case_id: str | None = None,
                 required: int | None = None) -> int:
        """Enqueue candidates in one transaction; returns how many were new."""
        samples = [s.validate() for s in samples]
        if not samples:
            return 0
        with self.db.read() as tx:
            known = {row[0] for row in _chunked_in(tx, "SELECT key FROM items WHERE key IN ({})",
                                                  [s.key for s in samples])}
        required = int(required or self.reviews_per_item)
        rows, now = [], self.clock()
        for sample in samples:
            if sample.key in known:
                continue  # skip the image encoding for a rerun
            known.add(sample.key)
            rows.append(self._item_row(sample, case_id, required, now))
        added = 0
        with self.db.write() as tx:
            for row in rows:
                added += tx.run(
                    "INSERT INTO items (key, case_id, instruction, scenario, op, meta, src, tgt, mask, "
                    "outline, required, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (key) DO NOTHING", row)
        return added

    def _item_row(self, sample: EditSample, case_id: str | None, required: int, now: float) -> tuple:
        meta = sample.metadata()
        meta.pop("review", None)
        case = case_id or str(sample.provenance.get("case_id") or sample.key)
        return (sample.key, case, sample.instruction, sample.scenario, sample.op,
                json.dumps(meta, sort_keys=True),
                self.blobs.put(encode_image(sample.src, "png"), "png"),
                self.blobs.put(encode_image(sample.tgt, "png"), "png"),
                self.blobs.put(encode_mask(sample.mask), "png"),
                self.blobs.put(outline_png(sample.mask), "png"),
                required, now)

    # -- reviewing ----------------------------------------------------------------------------
    def claim(self, reviewer: str) -> dict | None:
        """The item this reviewer should look at now, leased to them; None when nothing is left.

        If they already hold one (a page reload, a heartbeat) that item is returned and its lease
        renewed, so a reviewer holds at most one item.
        """
        now = self.clock()
        until = now + self.lease_seconds
        if self.db.postgres:
            # Renew-or-take and the case counts in one autocommit statement: one round trip.
            with self.db.single() as tx:
                row = tx.one(_PG_CLAIM, (until, reviewer, reviewer, until, now, reviewer, reviewer))
            return None if row is None else item_view(row[:-3], case_size=row[-3], case_index=row[-2] + 1,
                                                      reviews_done=row[-1])
        with self.db.write(durable=False) as tx:
            row = tx.one(f"{_RENEW} RETURNING {ITEM_COLUMNS}", (until, reviewer))
            if row is None:
                row = tx.one(f"{_TAKE} RETURNING {ITEM_COLUMNS}", (reviewer, until, now, reviewer, reviewer))
            if row is None:
                return None
        with self.db.read() as tx:
            # Shown beside the item ("candidate 2 of 4", "review 2 of 3"); read outside the write
            # transaction so it does not hold the SQLite write lock.
            size, before, done = tx.one(f"SELECT {_CASE_COUNTS} FROM items p WHERE p.id = ?", (row[0],))
        return item_view(row, case_size=size, case_index=before + 1, reviews_done=done)

    def decide(self, item_id: int, reviewer: str, verdict: str, *, reason: str | None = None,
               note: str | None = None, struck: Iterable[int] = (), require_lease: bool = False) -> dict:
        """Record ``verdict`` (approve / reject) by ``reviewer``; returns the item's new status.

        ``reason``: a ``REJECT_REASONS`` key (rejections only); ``note``: a free-text comment;
        ``struck``: indexes into the item's ``paraphrases`` that this reviewer strikes (struck
        ones are not published). ``require_lease``: the reviewer must hold the item's lease (the
        web app always asks for this; rules and scripts deciding in bulk need not).

        Raises ``NotFound``, or ``QueueError`` with code ``lease_lost`` (another reviewer holds
        it now), ``not_leased`` (``require_lease`` and the item is not leased to this reviewer),
        ``closed`` (already decided by others), ``already_decided`` (this reviewer gave the other
        verdict; undo first) or ``bad_decision`` (an unknown verdict, reason or paraphrase index).
        """
        reason, note, struck_json = check_decision(verdict, reason, note, struck)
        now = self.clock()
        with self.db.write() as tx:
            # One round trip for everything the decision depends on (it matters on Postgres).
            row = tx.one(
                "SELECT i.status, i.required, i.lease_reviewer, i.lease_until, "
                "(SELECT d.verdict FROM decisions d WHERE d.item_id = i.id AND d.reviewer = ? AND d.undone_at IS NULL), "
                "(SELECT COUNT(*) FROM decisions d WHERE d.item_id = i.id AND d.undone_at IS NULL "
                "AND d.verdict = 'approve'), "
                "(SELECT COUNT(*) FROM decisions d WHERE d.item_id = i.id AND d.undone_at IS NULL "
                "AND d.verdict = 'reject'), "
                "(SELECT value FROM settings WHERE name = 'agreement'), "
                "(SELECT COUNT(*) FROM skips s WHERE s.item_id = i.id AND s.reviewer = ?) "
                f"FROM items i WHERE i.id = ?{self.db.for_update}", (reviewer, reviewer, int(item_id)))
            if row is None:
                raise NotFound("no_item", f"no item {item_id}")
            status, required, holder, lease_until, mine, approvals, rejections, rule, skipped = row
            if mine is not None:
                if mine != verdict:
                    raise QueueError("already_decided", f"you already chose {mine} for this item; undo it first")
                return {"item_id": item_id, "status": status, "verdict": verdict, "repeated": True}
            if status != "pending":
                raise QueueError("closed", f"this item is already {status}")
            held_by_other = holder not in (None, reviewer) and lease_until is not None and lease_until >= now
            if held_by_other:
                raise QueueError("lease_lost", "this item is held by another reviewer now (if it was yours, "
                                 "your lease ran out and it was handed on)")
            if require_lease and holder != reviewer:
                # Nobody else holds it either; an expired lease of the same reviewer still counts.
                raise QueueError("not_leased", "this item is not leased to you: it was never handed to you "
                                 "or you passed it on; take items from /api/next")
            if struck_json != "[]":
                self._check_struck(tx, item_id, json.loads(struck_json))
            verdicts = ["approve"] * approvals + ["reject"] * rejections + [verdict]
            new_status = agreement_status(verdicts, required, rule or DEFAULTS["agreement"])
            # Nothing below is read back: on Postgres it goes out with the COMMIT in one round trip.
            tx.defer("INSERT INTO decisions (item_id, reviewer, verdict, at, reason, note, struck) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (item_id, reviewer, verdict, now, reason, note, struck_json))
            tx.defer("UPDATE items SET status = ?, lease_reviewer = NULL, lease_until = NULL, decided_at = ? "
                     "WHERE id = ?", (new_status, now if new_status != "pending" else None, item_id))
            if skipped:
                tx.defer("DELETE FROM skips WHERE item_id = ? AND reviewer = ?", (item_id, reviewer))
            detail = {"status": new_status, **({"reason": reason} if reason else {})}
            self._audit(tx, now, reviewer, verdict, item_id, detail)
        return {"item_id": item_id, "status": new_status, "verdict": verdict, "repeated": False}

    @staticmethod
    def _check_struck(tx, item_id: int, struck: list[int]) -> None:
        meta = json.loads(tx.one("SELECT meta FROM items WHERE id = ?", (int(item_id),))[0])
        count = len(meta.get("paraphrases") or [])
        if max(struck) >= count:
            raise QueueError("bad_decision", f"struck paraphrase {max(struck)} does not exist: this item has "
                             f"{count} paraphrase(s), numbered from 0")

    def skip(self, item_id: int, reviewer: str) -> None:
        """Pass on an item: release it and do not offer it to this reviewer again (until
        ``clear_skips``)."""
        now = self.clock()
        with self.db.write() as tx:
            self._lock_item(tx, item_id)
            tx.run("INSERT INTO skips (item_id, reviewer, at) VALUES (?, ?, ?) "
                   "ON CONFLICT (item_id, reviewer) DO NOTHING", (item_id, reviewer, now))
            tx.run("UPDATE items SET lease_reviewer = NULL, lease_until = NULL "
                   "WHERE id = ? AND lease_reviewer = ?", (item_id, reviewer))
            self._audit(tx, now, reviewer, "skip", item_id, {})

    def clear_skips(self, reviewer: str) -> int:
        """Offer this reviewer the items they skipped again; returns how many."""
        with self.db.write() as tx:
            n = tx.run("DELETE FROM skips WHERE reviewer = ?", (reviewer,))
            self._audit(tx, self.clock(), reviewer, "clear-skips", None, {"count": n})
        return n

    def undo(self, reviewer: str, decision_id: int | None = None) -> dict | None:
        """Withdraw one of the reviewer's decisions (their latest, or ``decision_id`` from their
        history) and re-open its item; None if there is no such active decision within
        ``undo_window_s``. The item is leased back to them unless someone else holds it.

        Refused (``QueueError`` code ``published``) once a publish run has taken the item: from
        that moment it may be in a published dataset, and the queue must keep saying what the
        dataset says.
        """
        now = self.clock()
        with self.db.write() as tx:
            last = tx.one("SELECT id, item_id, verdict FROM decisions WHERE reviewer = ? AND undone_at IS NULL "
                          "AND at >= ?" + (" AND id = ?" if decision_id is not None else "")
                          + " ORDER BY id DESC LIMIT 1",
                          (reviewer, now - self.undo_window_s)
                          + ((int(decision_id),) if decision_id is not None else ()))
            if last is None:
                return None
            decision_id, item_id, verdict = last
            item = self._lock_item(tx, item_id)
            if item[5] is not None:
                raise QueueError("published", "this item is already published and cannot be re-opened")
            if item[6] is not None:
                raise QueueError("published", "a publish run has taken this item (it is being written to a "
                                 "published dataset), so it can no longer be re-opened")
            tx.run("UPDATE decisions SET undone_at = ? WHERE id = ?", (now, decision_id))
            # Hand the item back to the reviewer, releasing whatever they held before, unless
            # another reviewer holds it right now (two holders is what leases exist to prevent).
            holder, lease_until = item[3], item[4]
            free = holder in (None, reviewer) or lease_until is None or lease_until < now
            if free:
                tx.run("UPDATE items SET lease_reviewer = NULL, lease_until = NULL "
                       "WHERE lease_reviewer = ? AND id <> ?", (reviewer, item_id))
            tx.run("UPDATE items SET status = 'pending', decided_at = NULL, resolved_by = NULL"
                   + (", lease_reviewer = ?, lease_until = ?" if free else "") + " WHERE id = ?",
                   ((reviewer, now + self.lease_seconds, item_id) if free else (item_id,)))
            self._audit(tx, now, reviewer, "undo", item_id, {"decision": decision_id, "verdict": verdict})
        return {"item_id": item_id, "undone": verdict, "returned_to_you": free}

    def resolve(self, item_id: int, admin: str, verdict: str) -> dict:
        """An admin's final word on a conflicted item (approve / reject)."""
        if verdict not in VERDICTS:
            raise QueueError("bad_verdict", f"verdict must be one of {VERDICTS}, got {verdict!r}")
        status = "approved" if verdict == "approve" else "rejected"
        now = self.clock()
        with self.db.write() as tx:
            item = self._lock_item(tx, item_id)
            if item[1] != "conflicted":
                raise QueueError("not_conflicted", f"only conflicted items are resolved; this one is {item[1]}")
            tx.run("UPDATE items SET status = ?, decided_at = ?, resolved_by = ? WHERE id = ?",
                   (status, now, admin, item_id))
            self._audit(tx, now, admin, "resolve", item_id, {"status": status})
        return {"item_id": item_id, "status": status}

    def _lock_item(self, tx, item_id: int) -> tuple:
        """(id, status, required, lease_reviewer, lease_until, published_at, publish_claimed_at),
        row-locked on Postgres."""
        row = tx.one("SELECT id, status, required, lease_reviewer, lease_until, published_at, "
                     "publish_claimed_at FROM items "
                     f"WHERE id = ?{self.db.for_update}", (int(item_id),))
        if row is None:
            raise NotFound("no_item", f"no item {item_id}")
        return row

    def agreement_in(self, tx) -> str:
        row = tx.one("SELECT value FROM settings WHERE name = 'agreement'")
        return row[0] if row else DEFAULTS["agreement"]

    @staticmethod
    def _audit(tx, at: float, actor: str, action: str, item_id: int | None, detail: dict) -> None:
        tx.defer("INSERT INTO audit (at, actor, action, item_id, detail) VALUES (?, ?, ?, ?, ?)",
               (at, actor, action, item_id, json.dumps(detail, sort_keys=True)))

    # -- publishing ---------------------------------------------------------------------------
    def claim_for_publish(self, run: str) -> list[int]:
        """Take every approved, unpublished item for publish run ``run``; returns their ids in
        queue order. Committed (fsync) before the caller writes any of them to a shard, and from
        then on ``undo`` refuses them, so an item in a shard can never be re-opened and rejected.
        Items that a run killed before ``mark_published`` had taken are taken again. One publisher
        per queue at a time (as per data folder and prefix).
        """
        now = self.clock()
        with self.db.write() as tx:
            rows = tx.all("UPDATE items SET publish_run = ?, publish_claimed_at = COALESCE(publish_claimed_at, ?) "
                          "WHERE status = 'approved' AND published_at IS NULL RETURNING id", (run, now))
            ids = sorted(r[0] for r in rows)
            if ids:
                self._audit(tx, now, "publish", "publish-claim", None, {"run": run, "items": len(ids)})
        return ids

    def mark_published(self, item_ids: Iterable[int], actor: str = "publish") -> None:
        """Record that ``item_ids`` are committed in a dataset's shards (after the shards commit)."""
        now = self.clock()
        with self.db.write() as tx:
            for item_id in item_ids:
                if tx.run("UPDATE items SET published_at = ?, publish_claimed_at = COALESCE(publish_claimed_at, ?) "
                          "WHERE id = ? AND published_at IS NULL", (now, now, item_id)):
                    self._audit(tx, now, actor, "publish", item_id, {})


def _chunked_in(tx, sql: str, values: list, size: int = 500) -> list[tuple]:
    """``sql`` with ``IN ({})`` run over ``values`` in chunks (SQLite caps bound parameters)."""
    out = []
    for i in range(0, len(values), size):
        chunk = values[i:i + size]
        out.extend(tx.all(sql.format(", ".join("?" * len(chunk))), tuple(chunk)))
    return out


def open_store(url: str | Path, *, blob_dir: str | Path | None = None, lease_seconds: float = 300.0,
               undo_window_s: float = 3600.0, reviews_per_item: int | None = None,
               agreement: str | None = None, create: bool = True) -> ReviewStore:
    """Open (creating if needed) a review queue.

    ``create=False``: a queue that does not exist is an error (``QueueMissing``), for commands
    that only read or serve a queue, so a mistyped path is not taken for a new, empty queue.

    ``url``: ``sqlite:///path/queue.db`` or a plain path (SQLite, WAL) or ``postgresql://...``.
    ``blob_dir``: where images live; remembered in the database. Defaults to ``blobs/`` beside
    a SQLite file; a Postgres queue needs it once, when candidates are first added (then every process
    finds it there).
    """
    db = Database(url, create=create)
    with db.read() as tx:
        row = tx.one("SELECT value FROM settings WHERE name = 'blob_dir'")
    # A SQLite queue folder may have been moved or copied: then its own blobs/ wins over the
    # remembered absolute path.
    if blob_dir is None and row is not None and (is_postgres_url(str(url)) or Path(row[0]).is_dir()):
        blob_dir = row[0]
    if blob_dir is None and not is_postgres_url(str(url)):
        blob_dir = sqlite_path(url).resolve().parent / "blobs"
    blobs = BlobStore(blob_dir) if blob_dir is not None else None
    store = ReviewStore(db, blobs, lease_seconds=lease_seconds, undo_window_s=undo_window_s)
    if blobs is not None and (row is None or row[0] != str(blobs.root)):
        store.set_setting("blob_dir", str(blobs.root))
    store.configure(reviews_per_item=reviews_per_item, agreement=agreement)
    return store
