"""``python -m datagen scenes --n 100 --seed 0 --out data/scenes``: write demo scenes to disk.

The result is a COCO-format catalog (``OUT/instances.json`` + ``OUT/images/*.png``, masks as RLE,
attributes on each annotation) that any later command can read back with ``--source OUT``.
"""
from __future__ import annotations

import argparse
import time

from datagen.cli.argtypes import non_negative_int, positive_int

HELP = "write N built-in demo scenes as a COCO-format catalog"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=positive_int, default=100, help="number of scenes (default 100)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="scene set; the same seed gives the same scenes")
    parser.add_argument("--out", default="data/scenes", help="output folder (default data/scenes)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from datagen.sources.demo import DemoScenes, write_coco

    if args.n < 0 or args.seed < 0:
        print("error: --n and --seed must be >= 0")
        return 2
    start = time.perf_counter()
    path = write_coco(DemoScenes(args.n, args.seed), args.out, progress=not args.no_progress)
    print(f"wrote {args.n} demo scenes (seed {args.seed}) in {time.perf_counter() - start:.1f} s")
    print(f"catalog: {path}")
    print(f"images:  {path.parent / 'images'}")
    print(f"read it back with: open_catalog({str(path)!r}) or --source {path.parent}")
    return 0
