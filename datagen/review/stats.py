"""Queue statistics and inter-reviewer agreement for the stats page and ``review stats``."""
from __future__ import annotations

import time
from collections import Counter, defaultdict

from .routing import routing_stats
from .store import ReviewStore

STATUSES = ("pending", "approved", "rejected", "conflicted")


def queue_stats(store: ReviewStore, *, conflicted_limit: int = 50) -> dict:
    """Counts by status and op, per-reviewer activity, agreement on multiply-reviewed items,
    recent throughput and the first conflicted items (for an admin to resolve)."""
    now = time.time()
    with store.db.read() as tx:
        by_status = dict(tx.all("SELECT status, COUNT(*) FROM items GROUP BY status"))
        by_op = tx.all("SELECT op, status, COUNT(*) FROM items GROUP BY op, status")
        votes = tx.all("SELECT item_id, reviewer, verdict FROM decisions WHERE undone_at IS NULL ORDER BY id")
        actions = tx.all("SELECT actor, action, COUNT(*) FROM audit GROUP BY actor, action")
        last_hour = tx.one("SELECT COUNT(*) FROM decisions WHERE at >= ? AND undone_at IS NULL", (now - 3600,))[0]
        leased = tx.one("SELECT COUNT(*) FROM items WHERE status = 'pending' AND lease_until >= ?", (now,))[0]
        conflicted = tx.all("SELECT id, instruction FROM items WHERE status = 'conflicted' ORDER BY id LIMIT ?",
                            (conflicted_limit,))
        settings = dict(tx.all("SELECT name, value FROM settings"))
    per_item: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for item_id, reviewer, verdict in votes:
        per_item[item_id].append((reviewer, verdict))
    ops: dict[str, dict] = defaultdict(lambda: dict.fromkeys(STATUSES, 0))
    for op, status, n in by_op:
        ops[op][status] = n
    total = sum(by_status.values())
    return {
        "total": total,
        "by_status": {s: by_status.get(s, 0) for s in STATUSES},
        "leased_now": leased,
        "by_op": dict(sorted(ops.items())),
        "decisions": len(votes),
        "decisions_last_hour": last_hour,
        "reviewers": reviewer_table(per_item, actions),
        "agreement": agreement_summary(per_item),
        "conflicted": [{"id": i, "instruction": text, "votes": [{"reviewer": r, "verdict": v}
                                                                for r, v in per_item.get(i, [])]}
                       for i, text in conflicted],
        "settings": {"reviews_per_item": int(settings.get("reviews_per_item", 1)),
                     "agreement": settings.get("agreement", "unanimous")},
        "routing": routing_stats(store),  # the calibrated rule and its audited precision, or None
    }


def agreement_summary(per_item: dict[int, list[tuple[str, str]]]) -> dict:
    """Agreement over items with two or more active votes: share unanimous, mean pairwise
    agreement, and Fleiss' kappa (chance-corrected; 1 = perfect, 0 = chance level)."""
    multi = [v for v in per_item.values() if len(v) >= 2]
    if not multi:
        return {"items": 0, "unanimous": None, "pairwise": None, "kappa": None}
    unanimous = sum(len({verdict for _, verdict in v}) == 1 for v in multi) / len(multi)
    p_items, totals = [], Counter()
    for v in multi:
        counts = Counter(verdict for _, verdict in v)
        n = len(v)
        totals.update(counts)
        p_items.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
    pairwise = sum(p_items) / len(p_items)
    ratings = sum(totals.values())
    expected = sum((c / ratings) ** 2 for c in totals.values())
    kappa = None if expected >= 1 else (pairwise - expected) / (1 - expected)
    return {"items": len(multi), "unanimous": round(unanimous, 4), "pairwise": round(pairwise, 4),
            "kappa": None if kappa is None else round(kappa, 4)}


def reviewer_table(per_item: dict[int, list[tuple[str, str]]], actions: list[tuple]) -> list[dict]:
    """Per reviewer: active decisions, approval rate, skips and undos (from the audit log), and
    how often their vote matched the other votes on the same item."""
    rows: dict[str, dict] = defaultdict(lambda: {"decisions": 0, "approved": 0, "skips": 0, "undos": 0,
                                                 "pairs": 0, "agreeing_pairs": 0})
    for votes in per_item.values():
        for reviewer, verdict in votes:
            row = rows[reviewer]
            row["decisions"] += 1
            row["approved"] += verdict == "approve"
            for other, other_verdict in votes:
                if other != reviewer:
                    row["pairs"] += 1
                    row["agreeing_pairs"] += other_verdict == verdict
    for actor, action, n in actions:
        if action in ("skip", "undo"):
            rows[actor][action + "s"] += n
    out = []
    for name in sorted(rows):
        r = rows[name]
        out.append({"reviewer": name, "decisions": r["decisions"], "skips": r["skips"], "undos": r["undos"],
                    "approve_rate": round(r["approved"] / r["decisions"], 4) if r["decisions"] else None,
                    "agreement": round(r["agreeing_pairs"] / r["pairs"], 4) if r["pairs"] else None})
    return out
