"""The read side of the review queue: progress, history, items, samples, exports.

A mixin of ``ReviewStore`` (it uses ``self.db``, ``self.blobs``, ``self.agreement_in``); kept apart
so the store module holds only the rules that change state.
"""
from __future__ import annotations

import json
from typing import Iterator

from ..imageio import decode_image, decode_mask
from ..schema import EditSample
from .errors import NotFound
from .records import ITEM_COLUMNS, decision_record, item_view, review_record


class QueueReads:
    """Queries that change nothing; mixed into ``ReviewStore``."""

    def progress(self, reviewer: str) -> dict:
        """Queue-wide done / left plus this reviewer's own count and what is still open to them."""
        with self.db.read() as tx:
            by_status = dict(tx.all("SELECT status, COUNT(*) FROM items GROUP BY status"))
            mine = tx.one("SELECT COUNT(*) FROM decisions WHERE reviewer = ? AND undone_at IS NULL", (reviewer,))[0]
            skipped = tx.one("SELECT COUNT(*) FROM skips s JOIN items i ON i.id = s.item_id "
                             "WHERE s.reviewer = ? AND i.status = 'pending'", (reviewer,))[0]
            open_to_me = tx.one(
                "SELECT COUNT(*) FROM items i WHERE i.status = 'pending' AND NOT EXISTS (SELECT 1 FROM "
                "decisions d WHERE d.item_id = i.id AND d.reviewer = ? AND d.undone_at IS NULL) "
                "AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.item_id = i.id AND s.reviewer = ?)",
                (reviewer, reviewer))[0]
        total = sum(by_status.values())
        left = by_status.get("pending", 0)
        return {"total": total, "done": total - left, "left": left, "mine": mine, "skipped": skipped,
                "open_to_me": open_to_me, "by_status": {s: by_status.get(s, 0) for s in
                                                        ("pending", "approved", "rejected", "conflicted")}}

    def history(self, reviewer: str, limit: int = 10) -> list[dict]:
        """This reviewer's latest decisions, newest first (withdrawn ones flagged ``undone``)."""
        with self.db.read() as tx:
            rows = tx.all("SELECT d.id, d.item_id, d.verdict, d.at, d.undone_at, i.instruction, i.status, i.tgt, "
                          "d.reason "
                          "FROM decisions d JOIN items i ON i.id = d.item_id WHERE d.reviewer = ? "
                          "ORDER BY d.id DESC LIMIT ?", (reviewer, int(limit)))
        return [{"decision_id": r[0], "item_id": r[1], "verdict": r[2], "at": r[3], "undone": r[4] is not None,
                 "instruction": r[5], "status": r[6], "thumb": r[7], "reason": r[8]} for r in rows]

    def item(self, item_id: int) -> dict:
        """One item as the web app shows it (no other reviewer's verdicts)."""
        with self.db.read() as tx:
            row = tx.one(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ?", (int(item_id),))
        if row is None:
            raise NotFound("no_item", f"no item {item_id}")
        return item_view(row)

    def decisions_of(self, tx, item_id: int) -> list[tuple]:
        """Active decisions: (reviewer, verdict, at, reason, note, struck JSON), oldest first."""
        return tx.all("SELECT reviewer, verdict, at, reason, note, struck FROM decisions WHERE item_id = ? "
                      "AND undone_at IS NULL ORDER BY id", (item_id,))

    def sample(self, item_id: int) -> EditSample:
        """The candidate as an ``EditSample`` with its review record in ``review``."""
        with self.db.read() as tx:
            row = tx.one("SELECT meta, src, tgt, mask, status, required, decided_at, case_id, resolved_by "
                         "FROM items WHERE id = ?", (int(item_id),))
            if row is None:
                raise NotFound("no_item", f"no item {item_id}")
            decisions = self.decisions_of(tx, item_id)
            rule = self.agreement_in(tx)
        meta, src, tgt, mask, status, required, decided_at, case_id, resolved_by = row
        meta = json.loads(meta)
        # A paraphrase any reviewer struck is not published (nor trained on).
        struck = {i for d in decisions for i in json.loads(d[5] or "[]")}
        paraphrases = meta.get("paraphrases") or []
        meta["paraphrases"] = [p for i, p in enumerate(paraphrases) if i not in struck]
        sample = EditSample.from_parts(meta, decode_image(self.blobs.read(src)),
                                       decode_image(self.blobs.read(tgt)), decode_mask(self.blobs.read(mask)))
        sample.review = review_record(status, decisions, decided_at, rule=rule, required=required,
                                      case_id=case_id, resolved_by=resolved_by)
        if struck:
            sample.review["struck_paraphrases"] = [p for i, p in enumerate(paraphrases) if i in struck]
        return sample

    def approved_unpublished(self) -> list[int]:
        with self.db.read() as tx:
            return [r[0] for r in tx.all("SELECT id FROM items WHERE status = 'approved' "
                                         "AND published_at IS NULL ORDER BY id")]

    def export_rows(self) -> Iterator[dict]:
        """One dict per item with its active decisions, in queue order (for JSONL export)."""
        with self.db.read() as tx:
            items = tx.all("SELECT id, key, case_id, instruction, scenario, op, status, required, decided_at, "
                           "published_at, resolved_by FROM items ORDER BY id")
            votes: dict[int, list] = {}
            for item_id, *decision in tx.all(
                    "SELECT item_id, reviewer, verdict, at, reason, note, struck FROM decisions "
                    "WHERE undone_at IS NULL ORDER BY id"):
                votes.setdefault(item_id, []).append(decision_record(*decision))
        for r in items:
            yield {"item_id": r[0], "key": r[1], "case_id": r[2], "instruction": r[3], "scenario": r[4],
                   "op": r[5], "status": r[6], "required": r[7], "decided_at": r[8], "published_at": r[9],
                   "resolved_by": r[10], "decisions": votes.get(r[0], [])}

    def audit_rows(self) -> Iterator[dict]:
        with self.db.read() as tx:
            rows = tx.all("SELECT id, at, actor, action, item_id, detail FROM audit ORDER BY id")
        for r in rows:
            yield {"id": r[0], "at": r[1], "actor": r[2], "action": r[3], "item_id": r[4],
                   "detail": json.loads(r[5])}
