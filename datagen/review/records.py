"""Pure functions that turn queue rows into what callers see: the agreement rule, the item
view the web app sends, and the review record stored with a published sample."""
from __future__ import annotations

import json
from datetime import datetime, timezone

# Column order of every ``SELECT {ITEM_COLUMNS}`` / ``RETURNING {ITEM_COLUMNS}``; ``item_view``
# unpacks this order.
ITEM_COLUMNS = ("id, key, case_id, instruction, scenario, op, meta, src, tgt, mask, outline, required, "
                "status, lease_reviewer, lease_until")


def agreement_status(verdicts: list[str], required: int, rule: str) -> str:
    """Status of an item from its active verdicts ('approve' / 'reject').

    Fewer than ``required`` verdicts: ``pending``. Then ``unanimous``: all alike gives approved /
    rejected, anything else conflicted; ``majority``: the larger side wins, a tie is conflicted.
    """
    if len(verdicts) < required:
        return "pending"
    approvals = sum(v == "approve" for v in verdicts)
    rejections = len(verdicts) - approvals
    if rule == "majority":
        if approvals == rejections:
            return "conflicted"
        return "approved" if approvals > rejections else "rejected"
    if rejections == 0:
        return "approved"
    if approvals == 0:
        return "rejected"
    return "conflicted"


def item_view(row: tuple, *, case_size: int = 1, case_index: int = 1, reviews_done: int = 0) -> dict:
    """An ``ITEM_COLUMNS`` row as the JSON the reviewer's page renders.

    Other reviewers' verdicts are deliberately left out: seeing them would bias the review.
    """
    (item_id, key, case_id, instruction, scenario, op, meta, src, tgt, mask, outline, required,
     status, lease_reviewer, lease_until) = row
    meta = json.loads(meta)
    target = meta.get("target") or {}
    return {
        "id": item_id,
        "key": key,
        "case_id": case_id,
        "case_index": case_index,
        "case_size": case_size,
        "instruction": instruction,
        "paraphrases": meta.get("paraphrases", []),
        "scenario": scenario,
        "op": op,
        "category": target.get("category"),
        "size": meta.get("size"),
        "images": {"src": src, "tgt": tgt, "mask": mask, "outline": outline},
        "status": status,
        "required": required,
        "reviews_done": reviews_done,
        "lease_until": lease_until,
    }


def iso_time(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def review_record(status: str, decisions: list[tuple], decided_at: float | None, *, rule: str,
                  required: int, case_id: str, resolved_by: str | None = None) -> dict:
    """``EditSample.review`` for a reviewed candidate: status, the reviewer who completed it, the
    time (ISO 8601 UTC), every vote and how they were combined."""
    votes = [{"reviewer": r, "verdict": v, "time": iso_time(at)} for r, v, at in decisions]
    record = {
        "status": status,
        "reviewer": resolved_by or (votes[-1]["reviewer"] if votes else None),
        "time": iso_time(decided_at),
        "reviewers": [v["reviewer"] for v in votes],
        "decisions": votes,
        "agreement": rule,
        "required": required,
        "case_id": case_id,
    }
    if resolved_by:
        record["resolved_by"] = resolved_by
    return record
