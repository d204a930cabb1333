"""``python -m datagen understanding``: remove / add / replace samples from a catalog.

catalog -> ``UnderstandingBuilder`` (mask -> inpaint -> paste -> harmonize) -> shards in ``--out``
-> ``MANIFESTS/NAME.json``, run as a ``datagen.jobs`` job (the work of the ``synth-understanding``
flow). Rerunning the same command resumes where it stopped.

Backend options go through ``--backend-opt STAGE.KEY=VALUE`` (repeatable), e.g.
``--masker sam --backend-opt masker.checkpoint=/weights/sam_vit_b.pth --backend-opt masker.model_type=vit_b``;
quality thresholds the same way (``quality.max_seam_ratio=6``, ``quality.clip=/weights/clip``).
"""
from __future__ import annotations

import argparse

from datagen.cli.argtypes import non_negative_int
from datagen.cli.jobargs import add_job_arguments, job_config, run_job_command, usage_error

HELP = "remove / add / replace samples (mask, inpaint, paste, harmonize)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Backend names come from the stage registries (importing them loads no model).
    from datagen.harmonization import HARMONIZERS
    from datagen.inpainting import INPAINTERS
    from datagen.masking import MASKERS

    add_job_arguments(parser, name="understanding")
    parser.add_argument("--masker", choices=MASKERS.names(), default="grabcut",
                        help="object masks: catalog annotation, GrabCut from boxes (CPU), or SAM (weights)")
    parser.add_argument("--inpainter", choices=INPAINTERS.names(), default="opencv", help="removal backend")
    parser.add_argument("--harmonizer", choices=HARMONIZERS.names(), default="classical", help="harmonization backend")
    parser.add_argument("--backend-opt", action="append", default=[], metavar="STAGE.KEY=VALUE",
                        help="option for a backend or the quality checks (STAGE: masker, inpainter, harmonizer, quality)")
    parser.add_argument("--donors", default="demo",
                        help="objects to paste for replace: 'demo' or a folder of RGBA PNG cutouts named CATEGORY_*.png")
    parser.add_argument("--ops", default="remove,add,replace", help="comma-separated subset of remove,add,replace")
    parser.add_argument("--border", choices=("clip", "skip"), default="clip",
                        help="instances cut by the image border: keep (paste clipped at the frame) or skip")
    parser.add_argument("--dilate", type=non_negative_int, default=6, help="hole margin in pixels around the instance mask")


def run(args: argparse.Namespace) -> int:
    from datagen.jobs import Backend
    from datagen.understanding import parse_options

    try:
        options = parse_options(args.backend_opt)
    except ValueError as exc:
        return usage_error("understanding", exc)
    backends = {stage: Backend(getattr(args, stage), options[stage]) for stage in ("masker", "inpainter", "harmonizer")}
    builder_options = {"donors": args.donors, "dilate_px": args.dilate, "border": args.border,
                       "ops": [o.strip() for o in args.ops.split(",") if o.strip()], "quality": options["quality"]}
    config = job_config(args, "understanding", backends=backends, builder_options=builder_options)
    return run_job_command("understanding", config, progress=not args.no_progress)
