"""Calibrated routing: reviewers' decisions teach a small rule when people need not look.

Per ``scenario/op`` group the rule is a logistic model on the candidate's score vector (the
numeric entries of ``quality.scores``, the judge's among them when it ran), standardised, fit by
L2-regularised Newton steps. Every weight is named, so the rule is read like a table. Two
probability thresholds split the candidates:

* ``p >= approve_above`` -> auto-approve; chosen as the lowest threshold whose auto-approvals are
  at least ``approve_precision`` good on *out-of-fold* predictions of the training decisions;
* ``p <= reject_below`` -> auto-reject, likewise at ``reject_precision``;
* between them -> people review (the uncertain band).

``fit_rule(examples)`` holds out a deterministic share of the decisions (by key hash) and reports
on them: precision and recall of auto-approve / auto-reject and the share people still see. A
group with too few decisions or only one kind gets no rule: all its candidates go to people.

Shapes: an ``Example`` is ``(key, group, scores: dict name -> float, good: bool)``. The rule is
a JSON-able dict (``Rule.to_dict``) whose ``version`` is a digest of its content.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np

RULE_KIND = "logistic-v1"


@dataclass(frozen=True)
class Example:
    key: str
    group: str  # "scenario/op"
    scores: dict
    good: bool


def score_vector(quality: dict) -> dict:
    """Numeric features of a sample's ``quality`` dict: ``scores`` entries that are numbers or
    booleans (as 0/1); the judge's score is among them as ``judge_score``."""
    out = {}
    for name, value in (quality.get("scores") or {}).items():
        if isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)) and math.isfinite(value):
            out[name] = float(value)
    return out


def held_out(key: str, share: float) -> bool:
    """Deterministic split: ``share`` of keys (by SHA-1) are held out for the report."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


# ---------------------------------------------------------------- the model


@dataclass
class GroupRule:
    """A fitted logistic rule for one group; ``probability(scores)`` is P(good)."""

    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float
    approve_above: float | None
    reject_below: float | None
    report: dict = field(default_factory=dict)

    def probability(self, scores: dict) -> float:
        x = np.array([scores.get(f, m) for f, m in zip(self.features, self.mean)], dtype=np.float64)
        z = float((x - self.mean) / self.scale @ np.asarray(self.weights) + self.bias)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def route(self, scores: dict) -> tuple[str, float]:
        """(``"approve"`` | ``"reject"`` | ``"review"``, P(good))."""
        p = self.probability(scores)
        if self.approve_above is not None and p >= self.approve_above:
            return "approve", p
        if self.reject_below is not None and p <= self.reject_below:
            return "reject", p
        return "review", p

    def to_dict(self) -> dict:
        return {"features": self.features, "mean": self.mean, "scale": self.scale, "weights": self.weights,
                "bias": self.bias, "approve_above": self.approve_above, "reject_below": self.reject_below,
                "report": self.report}


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 25) -> tuple[np.ndarray, float]:
    """Weights (D) and bias of an L2-regularised logistic regression, by Newton's method.
    ``x``: NxD standardised float64, ``y``: N in {0, 1}. The bias is not penalised."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    penalty = np.diag([l2] * d + [0.0])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -50, 50)))
        grad = xb.T @ (p - y) + penalty @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + penalty + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:d], float(w[d])


def _design(examples: list[Example], features: list[str], mean: np.ndarray | None = None):
    raw = np.array([[e.scores.get(f, np.nan) for f in features] for e in examples], dtype=np.float64)
    if mean is None:
        mean = np.nanmean(np.where(np.isnan(raw), np.nan, raw), axis=0)
        mean = np.where(np.isnan(mean), 0.0, mean)
    raw = np.where(np.isnan(raw), mean, raw)  # a missing score reads as the typical value
    return raw, mean


def _fit_group(examples: list[Example], l2: float) -> GroupRule:
    features = sorted({f for e in examples for f in e.scores})
    raw, mean = _design(examples, features)
    scale = raw.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    y = np.array([e.good for e in examples], dtype=np.float64)
    w, b = fit_logistic((raw - mean) / scale, y, l2)
    return GroupRule(features, mean.tolist(), scale.tolist(), w.tolist(), b, None, None)


def out_of_fold(examples: list[Example], l2: float, folds: int = 5) -> np.ndarray:
    """P(good) of each example from a model fit without its fold (fold = key hash mod ``folds``)."""
    fold = np.array([int(hashlib.sha1(e.key.encode()).hexdigest()[8:16], 16) % folds for e in examples])
    p = np.zeros(len(examples))
    for k in range(folds):
        test = fold == k
        train = [e for e, t in zip(examples, test) if not t]
        if not test.any():
            continue
        if len({e.good for e in train}) < 2:
            p[test] = float(np.mean([e.good for e in train])) if train else 0.5
            continue
        rule = _fit_group(train, l2)
        p[test] = [rule.probability(e.scores) for e, t in zip(examples, test) if t]
    return p


def pick_thresholds(p: np.ndarray, good: np.ndarray, approve_precision: float, reject_precision: float,
                    min_support: int) -> tuple[float | None, float | None]:
    """Lowest ``approve_above`` whose approvals reach ``approve_precision`` (at least ``min_support``
    of them) and highest ``reject_below`` whose rejections reach ``reject_precision``; None when
    no threshold qualifies. Thresholds are taken at observed probabilities."""
    order = np.argsort(-p)
    approve = None
    hits = np.cumsum(good[order])
    for k in range(len(order) - 1, min_support - 2, -1):  # k+1 most probable are approved
        if hits[k] / (k + 1) >= approve_precision:
            approve = float(p[order[k]])
            break
    order = np.argsort(p)
    bad = np.cumsum(~good[order])
    reject = None
    for k in range(len(order) - 1, min_support - 2, -1):
        if bad[k] / (k + 1) >= reject_precision:
            reject = float(p[order[k]])
            break
    if approve is not None and reject is not None and reject >= approve:
        reject = None  # the bands may not overlap: an item is never both
    return approve, reject


def evaluate(rule: GroupRule, examples: list[Example]) -> dict:
    """Precision / recall of auto-approve and auto-reject, and the share left to people."""
    routes = [rule.route(e.scores)[0] for e in examples]
    good = [e.good for e in examples]

    def stats(route: str, wanted: bool) -> dict:
        picked = [g for r, g in zip(routes, good) if r == route]
        relevant = sum(g == wanted for g in good)
        right = sum(g == wanted for g in picked)
        return {"n": len(picked), "precision": round(right / len(picked), 4) if picked else None,
                "recall": round(right / relevant, 4) if relevant else None}

    n = len(examples)
    return {"n": n, "good": sum(good), "auto_approve": stats("approve", True), "auto_reject": stats("reject", False),
            "review_share": round(routes.count("review") / n, 4) if n else None}


@dataclass
class Rule:
    """Group rules plus what they were fit for; ``version`` digests the content."""

    groups: dict[str, GroupRule]
    targets: dict
    audit_rate: float

    @property
    def version(self) -> str:
        body = json.dumps(self._body(), sort_keys=True)
        return hashlib.sha1(body.encode()).hexdigest()[:12]

    def _body(self) -> dict:
        return {"kind": RULE_KIND, "targets": self.targets, "audit_rate": self.audit_rate,
                "groups": {g: r.to_dict() for g, r in sorted(self.groups.items())}}

    def to_dict(self) -> dict:
        return {**self._body(), "version": self.version}

    @classmethod
    def from_dict(cls, data: dict) -> "Rule":
        if data.get("kind") != RULE_KIND:
            raise ValueError(f"routing rule kind {data.get('kind')!r} is not {RULE_KIND!r}: recalibrate")
        groups = {g: GroupRule(**r) for g, r in data["groups"].items()}
        return cls(groups, data["targets"], float(data["audit_rate"]))

    def route(self, group: str, scores: dict) -> tuple[str, float | None]:
        rule = self.groups.get(group)
        return ("review", None) if rule is None else rule.route(scores)


def fit_rule(examples: list[Example], *, approve_precision: float = 0.95, reject_precision: float = 0.95,
             holdout: float = 0.3, min_decisions: int = 40, min_support: int = 10, l2: float = 1.0,
             audit_rate: float = 0.05) -> Rule:
    """Fit one ``GroupRule`` per group with enough decisions of both kinds (see the module
    docstring); each carries its held-out report in ``report``."""
    by_group: dict[str, list[Example]] = {}
    for e in examples:
        by_group.setdefault(e.group, []).append(e)
    groups = {}
    for group, items in sorted(by_group.items()):
        train = [e for e in items if not held_out(e.key, holdout)]
        test = [e for e in items if held_out(e.key, holdout)]
        if len(train) < min_decisions or len({e.good for e in train}) < 2:
            continue
        p = out_of_fold(train, l2)
        good = np.array([e.good for e in train])
        approve, reject = pick_thresholds(p, good, approve_precision, reject_precision, min_support)
        rule = _fit_group(train, l2)
        rule.approve_above, rule.reject_below = approve, reject
        rule.report = {"train": len(train), "heldout": evaluate(rule, test) if test else None}
        groups[group] = rule
    targets = {"approve_precision": approve_precision, "reject_precision": reject_precision, "holdout": holdout}
    return Rule(groups, targets, float(audit_rate))
