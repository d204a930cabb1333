"""``python -m datagen contact-sheet MANIFEST -o sheet.png``: the first N samples of a dataset as
a grid of src | tgt | mask with their instructions."""
from __future__ import annotations

import sys
from itertools import islice
from pathlib import Path

from datagen.contact_sheet import render
from datagen.imageio import encode_image
from datagen.shards import ManifestError, read_samples


def add_arguments(parser) -> None:
    parser.add_argument("manifest", help="a manifest JSON, or a folder of them")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--n", type=int, default=12, help="number of samples (default 12)")
    parser.add_argument("--cols", type=int, default=2, help="samples per row (default 2)")
    parser.add_argument("--thumb", type=int, default=160, help="side of each image in pixels (default 160)")


def run(args) -> int:
    if args.n < 1:
        print("error: --n must be at least 1", file=sys.stderr)
        return 2
    try:
        samples = list(islice(read_samples(args.manifest), args.n))
        sheet = render(samples, cols=args.cols, thumb=args.thumb)
    except (ManifestError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_image(sheet, "png"))
    print(f"contact sheet of {len(samples)} samples: {out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0
