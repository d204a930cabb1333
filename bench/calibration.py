"""How many candidates people still review once the routing rule is calibrated.

    python bench/calibration.py [--history 30] [--fresh 15] [--approve-precision 0.95] [--noise 0.0]

1. A synthetic review history with known truth (``datagen.calibration_history``): reasoning
   candidates from ``--history`` demo scenes (correct by construction) plus copies with planted
   defects (no-op, edit elsewhere, half done, faint, blurred background), all scored by the
   post-edit checks, enqueued in a real SQLite queue and decided by a reviewer who knows the truth
   (wrong on a ``--noise`` share of items).
2. ``fit_rule`` on those decisions (as ``python -m datagen calibrate`` does), stored in the queue.
3. Fresh candidates from ``--fresh`` other scenes are enqueued and routed; people decide the
   uncertain band and the audit sample.

Prints the held-out report per scenario/op, then for the fresh batch: the share people had to
review (band + audit; target <= 30 % at 95 % auto-approve precision), the true precision of the
auto-approvals (known truth) and the precision measured on the audit sample (what the stats page
shows).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from datagen.calibration import fit_rule  # noqa: E402
from datagen.calibration_history import demo_candidates  # noqa: E402
from datagen.reasoning.queue import enqueue, open_queue  # noqa: E402
from datagen.review.routing import decided_examples, routing_stats, save_rule  # noqa: E402


def review_all(store, truth: dict, rng, noise: float) -> int:
    n = 0
    while (item := store.claim("ann")) is not None:
        good = truth[item["key"]] != (rng.random() < noise)
        store.decide(item["id"], "ann", "approve" if good else "reject")
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=30, help="demo scenes for the reviewed history")
    parser.add_argument("--fresh", type=int, default=15, help="demo scenes for the routed batch")
    parser.add_argument("--approve-precision", type=float, default=0.95)
    parser.add_argument("--reject-precision", type=float, default=0.95)
    parser.add_argument("--audit-rate", type=float, default=0.1)
    parser.add_argument("--noise", type=float, default=0.0, help="share of history decisions the reviewer gets wrong")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    past, fresh = demo_candidates(args.history, 0), demo_candidates(args.fresh, 1)
    truth = {s.key: good for s, good in past + fresh}
    print(f"history: {len(past)} candidates ({sum(g for _, g in past)} good); fresh: {len(fresh)} "
          f"({sum(g for _, g in fresh)} good); built in {time.perf_counter() - t0:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_queue(Path(tmp) / "queue")
        store.add_reviewer("ann")
        enqueue([s for s, _ in past], store)
        review_all(store, truth, rng, args.noise)
        rule = fit_rule(decided_examples(store), approve_precision=args.approve_precision,
                        reject_precision=args.reject_precision, audit_rate=args.audit_rate)
        save_rule(store, rule)
        for group, g in sorted(rule.groups.items()):
            h = g.report["heldout"]
            print(f"  held out {group:18s} n={h['n']:4d}  auto-approve precision {h['auto_approve']['precision']} "
                  f"recall {h['auto_approve']['recall']}  auto-reject precision {h['auto_reject']['precision']} "
                  f"recall {h['auto_reject']['recall']}  review share {h['review_share']}")
        enqueue([s for s, _ in fresh], store)
        with store.db.read() as tx:
            routed = tx.all("SELECT i.key, r.route, r.predicted FROM routing r JOIN items i ON i.id = r.item_id")
        review_all(store, truth, rng, 0.0)
        stats = routing_stats(store)
        store.close()
    n = len(routed)
    people = sum(route in ("review", "audit") for _k, route, _p in routed)
    approved = [truth[k] for k, route, p in routed if route == "auto" and p == "approve"]
    rejected = [not truth[k] for k, route, p in routed if route == "auto" and p == "reject"]
    print(f"fresh batch: {n} candidates, people reviewed {people} = {people / n:.1%} (target <= 30%); "
          f"auto-approved {len(approved)} with true precision {np.mean(approved) if approved else float('nan'):.3f}; "
          f"auto-rejected {len(rejected)} with true precision {np.mean(rejected) if rejected else float('nan'):.3f}")
    audit = stats["audit"]
    print(f"audit sample: rule's approvals {audit['approve']['agreed']}/{audit['approve']['decided']} confirmed "
          f"(precision {audit['approve']['precision']}), rejections {audit['reject']['agreed']}/"
          f"{audit['reject']['decided']} (precision {audit['reject']['precision']}); "
          f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
