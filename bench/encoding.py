"""Cost and size of each shard image format, and what encoding each distinct image once saves.

    python bench/encoding.py [--scenes 6] [--repeats 3]

Part 1: per format (PNG zlib levels 0-6, ``jpg:90/95``, ``webp:80/90``): milliseconds per image
and KiB per image on demo scenes and on two photographs that ship with scikit-image (astronaut,
coffee), each as a ratio to the default (PNG level 1). Part 2: the understanding builder's samples
on demo scenes, encoded per sample (two images each, as before) and with ``SampleEncoder`` (each
distinct image once): images encoded and seconds, in one run.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

FORMATS = [("png", {"compress_level": level}) for level in (0, 1, 2, 3, 6)] + [
    ("jpeg", {"quality": 90}), ("jpeg", {"quality": 95}), ("webp", {"quality": 80}), ("webp", {"quality": 90})]


def _label(fmt: str, opts: dict) -> str:
    return f"png level {opts['compress_level']}" if fmt == "png" else f"{fmt} q{opts['quality']}"


def _best_ms(images, fmt: str, opts: dict, repeats: int) -> tuple[float, float]:
    """(ms per image, KiB per image), best of ``repeats``."""
    best, size = float("inf"), 0
    for _ in range(repeats):
        start, size = time.perf_counter(), 0
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format=fmt.upper(), **opts)
            size += buf.tell()
        best = min(best, time.perf_counter() - start)
    return 1000 * best / len(images), size / 1024 / len(images)


def formats_table(sets: dict, repeats: int) -> None:
    for name, images in sets.items():
        h, w = images[0].shape[:2]
        print(f"{name} ({len(images)} images, first {w}x{h}):")
        rows = [(fmt, opts, *_best_ms(images, fmt, opts, repeats)) for fmt, opts in FORMATS]
        base_ms, base_kib = next((ms, kib) for fmt, opts, ms, kib in rows if opts.get("compress_level") == 1)
        for fmt, opts, ms, kib in rows:
            print(f"  {_label(fmt, opts):>12}: {ms:6.1f} ms ({ms / base_ms:4.2f}x)  {kib:7.1f} KiB ({kib / base_kib:4.2f}x)")


def encode_once_vs_per_sample(scenes: int, seed: int) -> None:
    from datagen.harmonization import build_harmonizer
    from datagen.imageio import encode_image
    from datagen.inpainting import build_inpainter
    from datagen.masking import build_masker
    from datagen.shards.encoding import ImageEncoding, SampleEncoder
    from datagen.sources.demo import donor_objects, make_scene
    from datagen.understanding import UnderstandingBuilder

    builder = UnderstandingBuilder(build_masker("annotation"), build_inpainter("opencv"),
                                   build_harmonizer("classical"), donor_objects(), seed=seed)
    samples = [s for i in range(scenes) for s in builder(make_scene(i, seed)) if hasattr(s, "instruction")]
    start = time.perf_counter()
    for s in samples:
        encode_image(s.src, "png"), encode_image(s.tgt, "png")
    per_sample = time.perf_counter() - start
    encoder = SampleEncoder(ImageEncoding("png"))
    start = time.perf_counter()
    for s in samples:
        encoder.image_bytes(s.src), encoder.image_bytes(s.tgt)
    once = time.perf_counter() - start
    print(f"{len(samples)} samples of {scenes} demo scenes: per sample {2 * len(samples)} encodes {per_sample:.3f} s; "
          f"each distinct image once {encoder.encoded} encodes {once:.3f} s  (x{per_sample / once:.2f} faster)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from skimage import data

    from datagen.sources.demo import make_scene

    formats_table({"demo scenes": [make_scene(i, args.seed).image for i in range(args.scenes)],
                   "photographs": [data.astronaut(), data.coffee()]}, args.repeats)
    encode_once_vs_per_sample(args.scenes, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
