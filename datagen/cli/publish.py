"""``datagen publish-reviewed``: write approved review-queue candidates to shards + manifest.

    python -m datagen publish-reviewed --db review-queue/queue.db --out data/reasoning --name reasoning

Safe to run again whenever more candidates are approved: each approved sample is published once.
"""
from __future__ import annotations

import argparse
import sys

HELP = "write approved review-queue samples to shards + manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from datagen.shards.encoding import ImageEncoding

    parser.add_argument("--db", default="review-queue/queue.db",
                        help="queue database: a path, sqlite:///path or postgresql://... (default review-queue/queue.db)")
    parser.add_argument("--blobs", default=None, help="image folder, if not the one remembered in the queue")
    parser.add_argument("--out", required=True, help="data folder for the shards (DATA_DIR)")
    parser.add_argument("--name", required=True, help="dataset name: writes MANIFESTS/NAME.json")
    parser.add_argument("--manifests", default="manifests", help="manifest folder (default manifests)")
    parser.add_argument("--prefix", default="reviewed", help="shard file prefix (default reviewed)")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard (default 1000)")
    parser.add_argument("--image-format", type=ImageEncoding.argument, default="png", metavar="png|jpg[:Q]|webp[:Q]")


def run(args: argparse.Namespace) -> int:
    from datagen.review import QueueMissing, open_store
    from datagen.review.publish import publish_reviewed

    try:
        store = open_store(args.db, blob_dir=args.blobs, create=False)
    except QueueMissing as exc:
        print(f"error: --db: {exc.detail}", file=sys.stderr)
        return 2
    try:
        result = publish_reviewed(store, args.out, args.name, args.manifests, prefix=args.prefix,
                                  maxcount=args.maxcount, image_format=args.image_format)
    finally:
        store.close()
    print(f"published {result.written} newly approved sample(s) to {args.out}"
          + (f" ({result.already} were already there)" if result.already else ""))
    if result.manifest is None:
        print("no approved sample yet: no manifest written")
    else:
        print(f"manifest: {result.manifest}")
    return 0
