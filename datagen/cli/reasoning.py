"""``python -m datagen reasoning``: world-knowledge edit candidates into the human review queue.

    python -m datagen reasoning --source demo:48 --queue review-queue --editor classical
    python -m datagen reasoning --source coco/instances_val2017.json --images coco/val2017 \\
        --queue review-queue --editor sd --sd-model /weights/sd-inpainting --candidates 4

catalog -> ``ReasoningBuilder`` (mask -> describe by world knowledge -> edit, ``--candidates``
seeded edits per case with ``--editor sd``) -> review queue (``--queue``: a folder holding
``queue.db``, a ``.db`` path, ``sqlite:///...`` or ``postgresql://...``). Nothing goes to shards
until reviewers approve it and ``python -m datagen publish-reviewed`` runs. Rerunning the command
adds only candidates the queue does not hold yet.

Backend options: ``--backend-opt STAGE.KEY=VALUE`` with STAGE ``masker``, ``editor`` or
``quality``, e.g. ``--backend-opt editor.guidance=9 --backend-opt masker.checkpoint=/w/sam.pth``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from datagen.cli.argtypes import non_negative_int, positive_int
from datagen.cli.jobargs import add_detect_arguments, detector_backend, usage_error

HELP = "world-knowledge edit candidates into the review queue"

MASKERS = ("annotation", "grabcut", "sam")
EDITORS = ("classical", "sd")
OPTION_STAGES = ("masker", "editor", "quality")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True,
                        help="catalog spec: demo:N[:SEED] (built-in scenes), a COCO instances JSON, "
                             "or an image folder with annotations")
    parser.add_argument("--images", default=None, help="image folder for a COCO JSON (default: the JSON's folder)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="let image and mask paths in the annotations lead outside the catalog's folder")
    parser.add_argument("--quarantine-log", default=None,
                        help="JSONL log of every record that could not be used, with its reason "
                             "(default: reasoning.quarantine.jsonl beside a SQLite queue, else in the current folder)")
    parser.add_argument("--queue", required=True,
                        help="review queue: a folder (holds queue.db), a .db path, sqlite:///PATH or postgresql://...")
    parser.add_argument("--blobs", default=None, help="image folder of a Postgres queue (default: beside a SQLite file)")
    parser.add_argument("--editor", choices=EDITORS, default="classical",
                        help="classical: CPU recolour / inpaint / donor paste; sd: Stable-Diffusion inpainting (weights)")
    parser.add_argument("--sd-model", default=None, help="local diffusers inpainting pipeline folder (--editor sd)")
    parser.add_argument("--device", default=None,
                        help="torch device for --editor sd / --rewriter-model (default: cuda if available)")
    parser.add_argument("--steps", type=positive_int, default=None, help="diffusion steps (--editor sd; default 30)")
    parser.add_argument("--masker", choices=MASKERS, default="grabcut",
                        help="object masks: catalog annotation, GrabCut from boxes (uses annotations when present), or SAM")
    parser.add_argument("--backend-opt", action="append", default=[], metavar="STAGE.KEY=VALUE",
                        help=f"option for a backend or the quality checks (STAGE: {', '.join(OPTION_STAGES)})")
    parser.add_argument("--donors", default="demo",
                        help="objects pasted by classical replace: 'demo' or a folder of RGBA PNG cutouts CATEGORY_*.png")
    parser.add_argument("--knowledge", default=None, help="JSON file extending the built-in knowledge table")
    parser.add_argument("--candidates", type=positive_int, default=None, help="edits per case with --editor sd (default 3)")
    parser.add_argument("--ops", default=None, help="comma-separated subset of remove,recolor,replace,addon "
                        "(default: all the editor can do; addon needs --editor sd)")
    parser.add_argument("--ops-per-instance", type=positive_int, default=None, help="at most this many ops per object")
    parser.add_argument("--dilate", type=non_negative_int, default=6, help="edit-region margin in pixels around the object mask")
    parser.add_argument("--min-area", type=positive_int, default=200, help="smallest object mask in pixels")
    parser.add_argument("--rewriter-model", default=None,
                        help="local causal LM folder that rewrites instructions for variety (checked; default: off)")
    parser.add_argument("--reviews-per-item", type=positive_int, default=None, help="reviews each new candidate needs")
    parser.add_argument("--limit", type=non_negative_int, default=None, help="use only the first N records of the catalog")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="varies descriptions, edits and inpainting seeds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_detect_arguments(parser)


def build_builder(args: argparse.Namespace):
    """The ``ReasoningBuilder`` the arguments describe (``BackendUnavailable`` / ``ValueError`` on
    a usage problem)."""
    from datagen.masking import build_masker
    from datagen.quality import QualityChecker
    from datagen.reasoning import ReasoningBuilder

    from datagen.backends import parse_stage_options

    options = parse_stage_options(args.backend_opt, OPTION_STAGES)
    editor_options = dict(options["editor"])
    if args.editor == "sd":
        if args.sd_model:
            editor_options["model_dir"] = args.sd_model
        if args.device:
            editor_options["device"] = args.device
        if args.steps:
            editor_options["steps"] = args.steps
    elif args.sd_model:
        raise ValueError("--sd-model is only used with --editor sd")
    rewriter = None
    if args.rewriter_model:
        from datagen.instructions.reasoning_rewrite import InstructionRewriter

        rewriter = InstructionRewriter.from_pretrained(args.rewriter_model, device=args.device)
    ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
    return ReasoningBuilder(
        build_masker(args.masker, **options["masker"]), args.editor, args.knowledge,
        editor_options=editor_options, candidates=args.candidates, seed=args.seed, donors=args.donors, ops=ops,
        ops_per_instance=args.ops_per_instance, dilate_px=args.dilate, min_area=args.min_area,
        quality=QualityChecker(**options["quality"]), rewriter=rewriter,
    )


def _quarantine_log(args: argparse.Namespace, db: str) -> Path:
    if args.quarantine_log:
        return Path(args.quarantine_log)
    if db.startswith(("postgresql://", "postgres://")):
        folder = Path(args.blobs) if args.blobs else Path.cwd()
    else:
        folder = Path(db.removeprefix("sqlite:///")).parent
    return folder / "reasoning.quarantine.jsonl"


def run(args: argparse.Namespace) -> int:
    from datagen.backends import BackendUnavailable
    from datagen.reasoning import fill_queue, open_queue, queue_url, review_hint
    from datagen.sources import CatalogError, open_catalog

    options = {"images": args.images} if args.images else {}
    if args.allow_outside_root and not args.source.startswith("demo:"):
        options["allow_outside_root"] = True
    try:
        detector = detector_backend(args)
        if detector is not None:  # builds the detector now: missing weights fail before any work
            from datagen.sources.detected import detected_catalog

            catalog = detected_catalog(args.source, detector.name, detector.options, images=args.images)
        else:
            catalog = open_catalog(args.source, **options)
        builder = build_builder(args)
    except BackendUnavailable as exc:
        return usage_error("reasoning", exc)
    except (CatalogError, ValueError) as exc:  # a usage problem: one sentence; a bug keeps its traceback
        return usage_error("reasoning", exc)
    ids = catalog.ids()
    if args.limit is not None:
        ids = ids[: args.limit]
    db = queue_url(args.queue)
    log = _quarantine_log(args, db)
    log.parent.mkdir(parents=True, exist_ok=True)
    store = open_queue(args.queue, blob_dir=args.blobs, reviews_per_item=args.reviews_per_item)
    try:
        summary = fill_queue(catalog, builder, store, ids=ids, progress=not args.no_progress, quarantine_log=log)
    finally:
        store.close()
    print(json.dumps(summary, indent=1), file=sys.stderr)
    print(f"{summary['added']} new candidates in {summary['cases']} cases ({summary['by_op']}); "
          f"{summary['already_queued']} already queued; skipped {summary['skipped']}; "
          f"quarantined {summary['quarantined']} (reasons in {log})")
    print(f"queue: {db}")
    print(review_hint(db))
    return 0
