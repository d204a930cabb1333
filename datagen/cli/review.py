"""``datagen review serve | add-reviewer | export | stats``: run and administer the review queue.

    python -m datagen review add-reviewer alice --db queue/queue.db      # prints alice's token
    python -m datagen review serve --db queue/queue.db                    # http://127.0.0.1:8765
    python -m datagen review export --db queue/queue.db -o decisions.jsonl
    python -m datagen review stats --db queue/queue.db
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import sys

HELP = "review queue: serve the web UI, add reviewers, export decisions"
DEFAULT_DB = "review-queue/queue.db"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="review_command", metavar="ACTION", required=True)

    def with_db(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--db", default=DEFAULT_DB,
                       help=f"queue database: a path or sqlite:///path (SQLite) or postgresql://... (default {DEFAULT_DB})")
        p.add_argument("--blobs", default=None,
                       help="image folder (default: blobs/ beside a SQLite file; remembered in the database)")
        return p

    serve = with_db(sub.add_parser("serve", help="serve the reviewers' web app"))
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default loopback only)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--lease-seconds", type=float, default=300.0,
                       help="how long a reviewer holds an item before others may take it (default 300)")
    serve.add_argument("--reviews-per-item", type=int, default=None,
                       help="reviews each item needs: new items and pending ones nobody has reviewed yet "
                       "(stored in the queue)")
    serve.add_argument("--agreement", choices=("unanimous", "majority"), default=None,
                       help="how several reviews combine into a status (stored in the queue)")
    serve.add_argument("--secure-cookie", action="store_true", help="HTTPS-only sign-in cookie (behind a TLS proxy)")
    serve.add_argument("--sign-in-failures", type=int, default=20,
                       help="failed sign-ins per client address and minute before it is answered 429 (default 20)")

    add = with_db(sub.add_parser("add-reviewer", help="create a reviewer (or renew their token) and print the token"))
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may resolve conflicted items")

    export = with_db(sub.add_parser("export", help="write every item with its decisions as JSONL"))
    export.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    export.add_argument("--status", choices=("pending", "approved", "rejected", "conflicted"), default=None)
    export.add_argument("--audit", action="store_true", help="write the audit log instead of the items")

    stats = with_db(sub.add_parser("stats", help="print queue statistics and agreement"))
    stats.add_argument("--json", action="store_true", help="print the raw JSON")


def run(args: argparse.Namespace) -> int:
    from datagen.review import QueueMissing, open_store

    lease = getattr(args, "lease_seconds", 300.0)
    try:
        # Only the commands that fill a queue create one: a mistyped --db is an error here.
        store = open_store(args.db, blob_dir=args.blobs, lease_seconds=lease, create=False)
    except QueueMissing as exc:
        print(f"error: --db: {exc.detail}", file=sys.stderr)
        return 2
    try:
        return {"serve": _serve, "add-reviewer": _add_reviewer, "export": _export,
                "stats": _stats}[args.review_command](store, args)
    finally:
        store.close()


def _serve(store, args) -> int:
    import uvicorn

    from datagen.review.app import create_app

    store.configure(reviews_per_item=args.reviews_per_item, agreement=args.agreement)
    if not _is_loopback(args.host):
        print(f"warning: serving on {args.host}, reachable from other machines; put TLS in front "
              "and pass --secure-cookie", file=sys.stderr)
    print(f"review queue {args.db}: open http://{args.host}:{args.port}/ and sign in with a token from "
          "'python -m datagen review add-reviewer NAME'", flush=True)
    if args.sign_in_failures < 1:
        print(f"error: --sign-in-failures must be at least 1, got {args.sign_in_failures}", file=sys.stderr)
        return 2
    app = create_app(store, secure_cookie=args.secure_cookie, sign_in_failures=args.sign_in_failures)
    uvicorn.run(app, host=args.host, port=args.port,
                log_level="warning", access_log=False)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _add_reviewer(store, args) -> int:
    try:
        token = store.add_reviewer(args.name, admin=args.admin)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(token)
    print(f"reviewer {args.name}{' (admin)' if args.admin else ''}: sign in with the token above; "
          "it is shown only now", file=sys.stderr)
    return 0


def _export(store, args) -> int:
    rows = store.audit_rows() if args.audit else store.export_rows()
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    n = 0
    try:
        for row in rows:
            if args.status and not args.audit and row["status"] != args.status:
                continue
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"wrote {n} {'audit events' if args.audit else 'items'} to {args.output}", file=sys.stderr)
    return 0


def _stats(store, args) -> int:
    from datagen.review.stats import queue_stats

    stats = queue_stats(store)
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    s = stats["by_status"]
    print(f"items {stats['total']}: pending {s['pending']}, approved {s['approved']}, "
          f"rejected {s['rejected']}, conflicted {s['conflicted']} (leased now {stats['leased_now']})")
    print(f"settings: {stats['settings']['reviews_per_item']} review(s) per item, {stats['settings']['agreement']}")
    a = stats["agreement"]
    if a["items"]:
        print(f"agreement over {a['items']} multiply-reviewed items: unanimous {a['unanimous']:.1%}, "
              f"pairwise {a['pairwise']:.1%}, Fleiss kappa {a['kappa']}")
    for op, counts in stats["by_op"].items():
        print(f"  {op:<10} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    for r in stats["reviewers"]:
        rate = "-" if r["approve_rate"] is None else f"{r['approve_rate']:.0%}"
        print(f"  {r['reviewer']:<16} decisions {r['decisions']:>6}  approve {rate:>4}  "
              f"skips {r['skips']}  undos {r['undos']}")
    return 0
