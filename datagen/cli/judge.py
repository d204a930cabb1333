"""``python -m datagen judge --db QUEUE --model DIR``: a local vision-language model scores the
candidates waiting in a review queue (1-5 and a one-line reason each), in batches."""
from __future__ import annotations

import argparse
import json
import sys

HELP = "score waiting review candidates with a local vision-language judge (1-5 + reason)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="review queue: a folder (holds queue.db), a .db path or a URL")
    parser.add_argument("--model", required=True, help="local transformers image-text-to-text model folder")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per generate call")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--limit", type=int, default=None, help="judge at most N candidates")


def run(args: argparse.Namespace) -> int:
    from datagen.backends import BackendUnavailable
    from datagen.judge import VlmJudge
    from datagen.judge_queue import judge_queue
    from datagen.reasoning.queue import open_queue

    try:
        judge = VlmJudge.from_pretrained(args.model, device=args.device, batch_size=args.batch_size)
    except (BackendUnavailable, ValueError) as exc:
        print(f"datagen judge: {exc}", file=sys.stderr)
        return 2
    store = open_queue(args.db)
    try:
        print(json.dumps(judge_queue(store, judge, limit=args.limit)))
    finally:
        store.close()
    return 0
