"""``python -m datagen perception``: a catalog's instances as "Mark the left cat in red" samples.

catalog -> ``PerceptionBuilder`` -> shards in ``--out`` -> ``MANIFESTS/NAME.json``, run as a
``datagen.jobs`` job (the work of the ``synth-perception`` flow). Rerunning the same command
resumes: finished batches are skipped and committed keys are never written twice.
"""
from __future__ import annotations

import argparse

from datagen.cli.argtypes import unit_fraction
from datagen.cli.jobargs import add_job_arguments, job_config, run_job_command, usage_error

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
    add_job_arguments(parser, name="perception")
    parser.add_argument("--colors", type=_colour_list, default=None,
                        help="comma-separated overlay colours (default: red,green,blue,yellow,purple,orange)")
    from datagen.masking import MASKERS

    parser.add_argument("--masker", choices=MASKERS.names(), default=None,
                        help="mask box-only instances (e.g. --detect's) with this backend; options as "
                             "--backend-opt masker.KEY=VALUE (default: skip them as no_mask)")
    parser.add_argument("--backend-opt", action="append", default=[], metavar="masker.KEY=VALUE",
                        help="option for --masker, e.g. masker.checkpoint=/weights/sam_vit_h_4b8939.pth")
    parser.add_argument("--opacity", type=unit_fraction, default=0.5,
                        help="overlay opacity, greater than 0 and at most 1 (InstructDiffusion: 0.5)")


def run(args: argparse.Namespace) -> int:
    options = {"opacity": args.opacity}
    if args.colors:
        options["colors"] = args.colors
    from datagen.backends import parse_stage_options
    from datagen.jobs import Backend

    try:
        masker_options = parse_stage_options(args.backend_opt, ("masker",))["masker"]
    except ValueError as exc:
        return usage_error("perception", exc)
    if masker_options and args.masker is None:
        return usage_error("perception", "--backend-opt masker.* needs --masker")
    backends = {"masker": Backend(args.masker, masker_options)} if args.masker else {}
    config = job_config(args, "perception", builder_options=options, backends=backends)
    return run_job_command("perception", config, progress=not args.no_progress)
