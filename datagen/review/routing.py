"""Routing new candidates with a calibrated rule (``datagen.calibration``): auto-approve,
auto-reject, people, or an audit sample of the rule's own calls.

The rule lives in the queue's ``settings`` table (``routing_rule``, JSON with its ``version``),
written by ``python -m datagen calibrate --db QUEUE``. When candidates are enqueued,
``Router.route_keys`` looks at each new item once and records the outcome in the ``routing``
table (created here on first use; an additive migration, nothing else changes):

* ``review``   - uncertain band (or no rule for its scenario/op): people review it as before;
* ``auto``     - the rule decided: a ``decisions`` row by reviewer ``rule:VERSION``, the item's
  status set, an audit-log entry; published like any approved item;
* ``audit``    - the rule would decide, but this item (a deterministic ``audit_rate`` share by
  key and rule version) stays pending for people, and their verdict measures the rule.

Routing is idempotent and safe to interrupt: an item is routed at most once (its ``routing`` row
is written in the same transaction as the rule's decision); one added but not yet routed when a
process dies simply stays with people, and ``calibrate --route-pending`` routes such a backlog.
Items people decided are never routed, and the rule's own decisions never become training labels.

``routing_stats(store)`` reports counts by route and the rule's precision on the audited items,
for the stats page.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Iterable

from datagen.calibration import Rule, score_vector

RULE_SETTING = "routing_rule"
RULE_ACTOR_PREFIX = "rule:"


def ensure_routing_table(db) -> None:
    real = "DOUBLE PRECISION" if db.postgres else "REAL"
    with db.write() as tx:
        tx.run("CREATE TABLE IF NOT EXISTS routing (item_id BIGINT PRIMARY KEY REFERENCES items (id), "
               f"rule TEXT NOT NULL, route TEXT NOT NULL, predicted TEXT, p_good {real}, at {real} NOT NULL)")


def save_rule(store, rule: Rule) -> str:
    """Store ``rule`` as the queue's routing rule; returns its version."""
    ensure_routing_table(store.db)
    store.set_setting(RULE_SETTING, json.dumps(rule.to_dict(), sort_keys=True))
    return rule.version


def load_rule(store) -> Rule | None:
    text = store.setting(RULE_SETTING)
    return Rule.from_dict(json.loads(text)) if text else None


def in_audit(key: str, version: str, rate: float) -> bool:
    """Deterministic audit draw: the same item and rule always draw the same way."""
    return int(hashlib.sha1(f"{version}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < rate


class Router:
    """Routes newly enqueued items of ``store`` by its rule (a no-op when none is stored)."""

    def __init__(self, store):
        self.store = store
        self.rule = load_rule(store)
        self.counts: Counter = Counter()
        if self.rule is not None:
            ensure_routing_table(store.db)

    def route_keys(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if self.rule is None or not keys:
            return
        rule, version = self.rule, self.rule.version
        actor = RULE_ACTOR_PREFIX + version
        marks = ", ".join("?" * len(keys))
        now = self.store.clock()
        with self.store.db.write() as tx:
            rows = tx.all(f"SELECT i.id, i.key, i.scenario, i.op, i.meta FROM items i WHERE i.key IN ({marks}) "
                          "AND i.status = 'pending' AND i.lease_reviewer IS NULL "
                          "AND NOT EXISTS (SELECT 1 FROM routing r WHERE r.item_id = i.id) "
                          "AND NOT EXISTS (SELECT 1 FROM decisions d WHERE d.item_id = i.id AND d.undone_at IS NULL)",
                          tuple(keys))
            for item_id, key, scenario, op, meta in rows:
                verdict, p = rule.route(f"{scenario}/{op}", score_vector(json.loads(meta).get("quality") or {}))
                route = "review"
                if verdict != "review":
                    route = "audit" if in_audit(key, version, rule.audit_rate) else "auto"
                tx.run("INSERT INTO routing (item_id, rule, route, predicted, p_good, at) VALUES (?, ?, ?, ?, ?, ?)",
                       (item_id, version, route, None if verdict == "review" else verdict, p, now))
                if route == "auto":
                    status = "approved" if verdict == "approve" else "rejected"
                    tx.run("INSERT INTO decisions (item_id, reviewer, verdict, at) VALUES (?, ?, ?, ?)",
                           (item_id, actor, verdict, now))
                    tx.run("UPDATE items SET status = ?, decided_at = ? WHERE id = ?", (status, now, item_id))
                    self.store._audit(tx, now, actor, verdict, item_id, {"status": status, "p_good": round(p, 4)})
                self.counts[route if route == "review" else f"{route}_{verdict}"] += 1


def routing_stats(store) -> dict | None:
    """The rule, routes taken, and the rule's precision on audited items people decided
    (``None`` when the queue has no rule)."""
    rule = load_rule(store)
    if rule is None:
        return None
    ensure_routing_table(store.db)
    with store.db.read() as tx:
        routes = tx.all("SELECT route, predicted, COUNT(*) FROM routing WHERE rule = ? GROUP BY route, predicted",
                        (rule.version,))
        audited = tx.all("SELECT r.predicted, i.status, COUNT(*) FROM routing r JOIN items i ON i.id = r.item_id "
                         "WHERE r.rule = ? AND r.route = 'audit' AND i.status IN ('approved', 'rejected') "
                         "GROUP BY r.predicted, i.status", (rule.version,))
    audit: dict = {}
    for predicted in ("approve", "reject"):
        wanted = "approved" if predicted == "approve" else "rejected"
        n = sum(c for p, _s, c in audited if p == predicted)
        right = sum(c for p, s, c in audited if p == predicted and s == wanted)
        audit[predicted] = {"decided": n, "agreed": right, "precision": round(right / n, 4) if n else None}
    return {
        "version": rule.version, "targets": rule.targets, "audit_rate": rule.audit_rate,
        "routes": [{"route": r, "predicted": p, "n": n} for r, p, n in routes],
        "audit": audit,
        "groups": {g: {"approve_above": r.approve_above, "reject_below": r.reject_below,
                       "heldout": r.report.get("heldout")} for g, r in rule.groups.items()},
    }


def decided_examples(store) -> list:
    """``calibration.Example`` per item people decided (approved / rejected, no rule decision):
    the labels a rule is fit on. Conflicted and pending items are left out."""
    from datagen.calibration import Example

    with store.db.read() as tx:
        rows = tx.all("SELECT i.key, i.scenario, i.op, i.meta, i.status FROM items i "
                      "WHERE i.status IN ('approved', 'rejected') AND NOT EXISTS (SELECT 1 FROM decisions d "
                      "WHERE d.item_id = i.id AND d.undone_at IS NULL AND d.reviewer LIKE ?) ORDER BY i.id",
                      (RULE_ACTOR_PREFIX + "%",))
    return [Example(key, f"{scenario}/{op}", score_vector(json.loads(meta).get("quality") or {}), status == "approved")
            for key, scenario, op, meta, status in rows]


def route_backlog(store) -> Counter:
    """Route every pending item the current rule has not seen (after a first calibration)."""
    with store.db.read() as tx:
        keys = [k for (k,) in tx.all("SELECT key FROM items WHERE status = 'pending' ORDER BY id")]
    router = Router(store)
    for i in range(0, len(keys), 500):
        router.route_keys(keys[i:i + 500])
    return router.counts
