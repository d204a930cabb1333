"""``python -m datagen understanding``: remove / add / replace samples from a catalog.

catalog (``datagen.sources.open_catalog``) -> ``UnderstandingBuilder`` (mask -> inpaint -> paste ->
harmonize) -> ``ShardWriter`` via ``datagen.runner.run_builder`` -> ``build_manifest``
(``MANIFESTS/NAME.json``). Rerunning the same command resumes where it stopped.

Backend options go through ``--backend-opt STAGE.KEY=VALUE`` (repeatable), e.g.
``--masker sam --backend-opt masker.checkpoint=/weights/sam_vit_b.pth --backend-opt masker.model_type=vit_b``;
quality thresholds the same way (``quality.max_seam_ratio=6``, ``quality.clip=/weights/clip``).
"""
from __future__ import annotations

import argparse
import sys

HELP = "remove / add / replace samples (mask, inpaint, paste, harmonize)"

MASKERS = ("annotation", "grabcut", "sam")
INPAINTERS = ("opencv", "lama", "sd", "mat")
HARMONIZERS = ("classical", "pih")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default="demo:50",
                        help="catalog spec: demo:N[:SEED], a COCO instances JSON, or an image folder with annotations")
    parser.add_argument("--images", default=None, help="image folder for a COCO JSON (default: the JSON's folder)")
    parser.add_argument("--out", required=True, help="data folder for the shards (created if missing)")
    parser.add_argument("--name", default="understanding", help="dataset name: manifest NAME.json and shard prefix")
    parser.add_argument("--manifests", default="manifests", help="folder the manifest is written to")
    parser.add_argument("--masker", choices=MASKERS, default="grabcut",
                        help="object masks: catalog annotation, GrabCut from boxes (CPU), or SAM (weights)")
    parser.add_argument("--inpainter", choices=INPAINTERS, default="opencv", help="removal backend")
    parser.add_argument("--harmonizer", choices=HARMONIZERS, default="classical", help="harmonization backend")
    parser.add_argument("--backend-opt", action="append", default=[], metavar="STAGE.KEY=VALUE",
                        help="option for a backend or the quality checks (STAGE: masker, inpainter, harmonizer, quality)")
    parser.add_argument("--donors", default="demo",
                        help="objects to paste for replace: 'demo' or a folder of RGBA PNG cutouts named CATEGORY_*.png")
    parser.add_argument("--ops", default="remove,add,replace", help="comma-separated subset of remove,add,replace")
    parser.add_argument("--border", choices=("clip", "skip"), default="clip",
                        help="instances cut by the image border: keep (paste clipped at the frame) or skip")
    parser.add_argument("--dilate", type=int, default=6, help="hole margin in pixels around the instance mask")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N records of the catalog")
    parser.add_argument("--seed", type=int, default=0, help="varies attribute, template, donor and inpainting seeds")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png", help="src/tgt encoding in shards")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _open_source(spec: str, images: str | None):
    from datagen.sources import open_catalog

    return open_catalog(spec, images=images) if images else open_catalog(spec)


def _build(args: argparse.Namespace):
    from datagen.understanding import build_understanding, parse_options

    return build_understanding(
        masker=args.masker, inpainter=args.inpainter, harmonizer=args.harmonizer,
        options=parse_options(args.backend_opt), donors=args.donors, seed=args.seed,
        dilate_px=args.dilate, border=args.border, ops=[o.strip() for o in args.ops.split(",") if o.strip()],
    )


def run(args: argparse.Namespace) -> int:
    from datagen.backends import BackendUnavailable
    from datagen.runner import run_builder
    from datagen.shards import ShardWriter, build_manifest

    try:
        builder = _build(args)
    except (BackendUnavailable, ValueError) as exc:  # a usage problem: one sentence, no traceback
        hint = " (here: --backend-opt STAGE.KEY=VALUE)" if isinstance(exc, BackendUnavailable) else ""
        print(f"datagen understanding: {exc}{hint}", file=sys.stderr)
        return 2
    catalog = _open_source(args.source, args.images)
    ids = catalog.ids()
    if args.limit is not None:
        ids = ids[: max(args.limit, 0)]
    writer = ShardWriter(args.out, args.name, maxcount=args.maxcount, image_format=args.image_format)
    try:
        stats = run_builder(catalog, builder, writer, ids=ids, progress=not args.no_progress)
    finally:
        writer.close()
    settings = builder.settings()
    print(f"{stats.samples_written} samples {dict(stats.by_op)}; skipped {dict(stats.skipped)}; "
          f"quarantined {dict(stats.quarantined)}; {stats.seconds:.1f} s", file=sys.stderr)
    backends = {stage: settings[stage] for stage in ("masker", "inpainter", "harmonizer")}
    try:
        manifest = build_manifest(args.out, args.name, manifest_dir=args.manifests,
                                  extra={"builder": builder.name, "settings": settings, "backends": backends,
                                         "source": args.source})
    except ValueError as exc:  # nothing committed: every record was skipped or quarantined
        print(f"datagen understanding: no manifest written: {exc}", file=sys.stderr)
        return 1
    print(f"shards in {args.out}; manifest {manifest}")
    return 0
