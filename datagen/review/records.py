"""Pure functions that turn queue rows into what callers see: the agreement rule, the item
view the web app sends, and the review record stored with a published sample."""
from __future__ import annotations

import json
from datetime import datetime, timezone

# Column order of every ``SELECT {ITEM_COLUMNS}`` / ``RETURNING {ITEM_COLUMNS}``; ``item_view``
# unpacks this order.
ITEM_COLUMNS = ("id, key, case_id, instruction, scenario, op, meta, src, tgt, mask, outline, required, "
                "status, lease_reviewer, lease_until")


# Reject reasons: stored key -> what the reviewer sees (keys 1-4 in the page, in this order).
REJECT_REASONS = {"wrong_object": "wrong object", "artifact": "artifact", "instruction": "instruction wrong",
                  "other": "other"}
MAX_NOTE = 500
MAX_STRUCK = 64


def check_decision(verdict: str, reason: str | None, note: str | None, struck) -> tuple:
    """Validate what a reviewer sends with a verdict; ``(reason, note, struck as JSON)`` or
    ``QueueError('bad_decision')`` in one sentence naming the field."""
    from .errors import QueueError

    if verdict not in ("approve", "reject"):
        raise QueueError("bad_decision", f"verdict must be approve or reject, got {verdict!r}")
    if reason is not None and (verdict != "reject" or reason not in REJECT_REASONS):
        raise QueueError("bad_decision", f"reason goes with a reject and is one of {list(REJECT_REASONS)}, "
                         f"got {reason!r}")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise QueueError("bad_decision", f"note must be text of at most {MAX_NOTE} characters")
    struck = list(struck or ())
    if len(struck) > MAX_STRUCK or not all(type(i) is int and 0 <= i for i in struck):
        raise QueueError("bad_decision", "struck must be a list of paraphrase indexes (whole numbers from 0)")
    return reason, (note.strip() or None) if note else None, json.dumps(sorted(set(struck)))


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


def decision_record(reviewer: str, verdict: str, at: float, reason: str | None, note: str | None,
                    struck: str | None) -> dict:
    """One decision as exported (JSONL): ``at`` in epoch seconds, ``struck`` paraphrase indexes."""
    return {"reviewer": reviewer, "verdict": verdict, "at": at, "reason": reason, "note": note,
            "struck": json.loads(struck or "[]")}


def review_record(status: str, decisions: list[tuple], decided_at: float | None, *, rule: str,
                  required: int, case_id: str, resolved_by: str | None = None) -> dict:
    """``EditSample.review`` for a reviewed candidate: status, the reviewer who completed it, the
    time (ISO 8601 UTC), every vote (with its reject reason, comment and struck paraphrase
    indexes) and how they were combined. ``decisions``: ``QueueReads.decisions_of`` rows."""
    votes = []
    for decision in decisions:
        vote = decision_record(*decision)
        vote["time"] = iso_time(vote.pop("at"))
        votes.append(vote)
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
