"""``python -m datagen calibrate --db QUEUE``: fit the routing rule on reviewers' decisions.

Reads every candidate people approved or rejected, fits per scenario/op a logistic rule on its
quality scores (``datagen.calibration``), prints the held-out report (precision and recall of
auto-approve / auto-reject, share still reviewed by people) and stores the rule in the queue, so
that candidates added from then on are routed (``datagen.review.routing``). ``--route-pending``
also routes the candidates already waiting; ``--dry-run`` only reports.
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "fit auto-approve / auto-reject rules on review decisions; route new candidates by them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="review queue: a folder (holds queue.db), a .db path or a URL")
    parser.add_argument("--approve-precision", type=float, default=0.95,
                        help="auto-approve only where at least this share of approvals is good")
    parser.add_argument("--reject-precision", type=float, default=0.95,
                        help="auto-reject only where at least this share of rejections is bad")
    parser.add_argument("--holdout", type=float, default=0.3, help="share of decisions held out for the report")
    parser.add_argument("--audit-rate", type=float, default=0.05,
                        help="share of the rule's calls still shown to people, to measure it")
    parser.add_argument("--min-decisions", type=int, default=40, help="fewest training decisions for a group's rule")
    parser.add_argument("--dry-run", action="store_true", help="report only; keep the queue's current rule")
    parser.add_argument("--route-pending", action="store_true", help="also route candidates already waiting")


def run(args: argparse.Namespace) -> int:
    from datagen.calibration import fit_rule
    from datagen.reasoning.queue import open_queue
    from datagen.review.routing import decided_examples, route_backlog, save_rule

    for name in ("approve_precision", "reject_precision", "holdout", "audit_rate"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            print(f"datagen calibrate: --{name.replace('_', '-')} must be in [0, 1], got {value}", file=sys.stderr)
            return 2
    store = open_queue(args.db)
    try:
        examples = decided_examples(store)
        rule = fit_rule(examples, approve_precision=args.approve_precision, reject_precision=args.reject_precision,
                        holdout=args.holdout, min_decisions=args.min_decisions, audit_rate=args.audit_rate)
        print(json.dumps(rule.to_dict(), indent=1))
        for group, g in rule.groups.items():
            h = g.report["heldout"] or {}
            approve, reject = h.get("auto_approve", {}), h.get("auto_reject", {})
            print(f"{group}: trained on {g.report['train']}, held out {h.get('n', 0)}: auto-approve precision "
                  f"{approve.get('precision')} recall {approve.get('recall')}; auto-reject precision "
                  f"{reject.get('precision')} recall {reject.get('recall')}; people review {h.get('review_share')}",
                  file=sys.stderr)
        if not rule.groups:
            print(f"datagen calibrate: no scenario/op has {args.min_decisions} decisions of both kinds yet "
                  f"({len(examples)} decided); nothing stored", file=sys.stderr)
            return 1
        if args.dry_run:
            return 0
        version = save_rule(store, rule)
        print(f"stored routing rule {version}", file=sys.stderr)
        if args.route_pending:
            print(f"routed pending candidates: {dict(route_backlog(store))}", file=sys.stderr)
        return 0
    finally:
        store.close()
