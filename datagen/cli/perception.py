"""``python -m datagen perception``: a catalog's instances as "Mark the left cat in red" samples.

catalog (``datagen.sources.open_catalog``) -> ``PerceptionBuilder`` -> ``ShardWriter`` via
``datagen.runner.run_builder`` -> ``build_manifest`` (``MANIFESTS/NAME.json``). Rerunning the same
command resumes: samples whose keys are already committed in ``--out`` are skipped by the writer.
"""
from __future__ import annotations

import argparse
import sys

HELP = "turn a catalog's instances into 'Mark the ... in red' samples"


def _colour_list(text: str) -> list[tuple[str, tuple[int, int, int]]]:
    """``"red,blue"`` -> palette entries from ``MARK_COLORS``, else from ``COLOR_RGB``."""
    from datagen.instructions.colors import COLOR_RGB, MARK_COLORS

    known = {**COLOR_RGB, **dict(MARK_COLORS)}
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown colour(s) {unknown or text!r}; choose from {', '.join(sorted(known))}"
        )
    return [(n, known[n]) for n in names]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="demo:50",
                        help="catalog spec: demo:N[:SEED], a COCO instances JSON, or an image folder with annotations")
    parser.add_argument("--images", default=None, help="image folder for a COCO JSON (default: the JSON's folder)")
    parser.add_argument("--out", required=True, help="data folder for the shards (created if missing)")
    parser.add_argument("--name", default="perception", help="dataset name: manifest NAME.json and shard prefix")
    parser.add_argument("--manifests", default="manifests", help="folder the manifest is written to")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N records of the catalog")
    parser.add_argument("--seed", type=int, default=0, help="varies attribute, template and colour choices")
    parser.add_argument("--colors", type=_colour_list, default=None,
                        help="comma-separated overlay colours (default: red,green,blue,yellow,purple,orange)")
    parser.add_argument("--opacity", type=float, default=0.5, help="overlay opacity (InstructDiffusion: 0.5)")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png", help="src/tgt encoding in shards")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _open_source(spec: str, images: str | None):
    from datagen.sources import open_catalog

    return open_catalog(spec, images=images) if images else open_catalog(spec)


def run(args: argparse.Namespace) -> int:
    from datagen.perception import PerceptionBuilder
    from datagen.runner import run_builder
    from datagen.shards import ShardWriter, build_manifest

    options = {"seed": args.seed, "opacity": args.opacity}
    if args.colors:
        options["colors"] = args.colors
    try:
        builder = PerceptionBuilder(**options)
    except ValueError as exc:  # a usage problem: one sentence, no traceback
        print(f"datagen perception: {exc}", file=sys.stderr)
        return 2
    from datagen.sources import CatalogError

    try:
        catalog = _open_source(args.source, args.images)
    except CatalogError as exc:
        print(f"datagen perception: {exc}", file=sys.stderr)
        return 2
    ids = catalog.ids()
    if args.limit is not None:
        ids = ids[: max(args.limit, 0)]
    writer = ShardWriter(args.out, args.name, maxcount=args.maxcount, image_format=args.image_format)
    try:
        stats = run_builder(catalog, builder, writer, ids=ids, progress=not args.no_progress)
    finally:
        writer.close()
    print(f"{stats.samples_written} samples ({dict(stats.by_attribute)} by attribute); "
          f"skipped {dict(stats.skipped)}; quarantined {dict(stats.quarantined)}", file=sys.stderr)
    try:
        manifest = build_manifest(args.out, args.name, manifest_dir=args.manifests,
                                  extra={"builder": builder.name, "settings": builder.settings(), "source": args.source})
    except ValueError as exc:  # e.g. no instance in the catalog could be named uniquely
        print(f"datagen perception: no manifest written: {exc}", file=sys.stderr)
        return 1
    print(f"shards in {args.out}; manifest {manifest}")
    return 0
