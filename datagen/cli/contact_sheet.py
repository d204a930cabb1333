"""``python -m datagen contact-sheet MANIFEST -o sheet.png``: N samples picked across a dataset
(varied records and ops) as a grid of src | tgt | mask with their instructions."""
from __future__ import annotations

import sys

from datagen.cli.argtypes import positive_int
from datagen.contact_sheet import pick_samples, save_contact_sheet
from datagen.shards import ManifestError


def add_arguments(parser) -> None:
    parser.add_argument("manifest", help="a manifest JSON, or a folder of them")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--n", type=positive_int, default=12, help="number of samples (default 12)")
    parser.add_argument("--cols", type=positive_int, default=2, help="samples per row (default 2)")
    parser.add_argument("--thumb", type=positive_int, default=160, help="side of each image in pixels (default 160)")


def run(args) -> int:
    if args.n < 1:
        print("error: --n must be at least 1", file=sys.stderr)
        return 2
    try:
        samples = pick_samples(args.manifest, args.n)
        if not samples:
            print(f"error: {args.manifest} holds no samples", file=sys.stderr)
            return 1
        out = save_contact_sheet(samples, args.output, cols=args.cols, thumb=args.thumb)
    except (ManifestError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"contact sheet of {len(samples)} samples: {out}")
    return 0
