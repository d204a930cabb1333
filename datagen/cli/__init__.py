"""Command-line entry point with a subcommand registry.

Each subcommand lives in its own module exposing ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Modules are imported only when their subcommand runs, so ``--help``
stays fast and a heavy dependency of one command never slows down another.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). The help is duplicated here so ``--help`` imports nothing.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "scenes": ("datagen.cli.scenes", "write N built-in demo scenes as a COCO-format catalog"),
    "perception": ("datagen.cli.perception", "turn a catalog's instances into 'Mark the ... in red' samples"),
    "understanding": ("datagen.cli.understanding", "remove / add / replace samples (mask, inpaint, paste, harmonize)"),
    "reasoning": ("datagen.cli.reasoning", "world-knowledge edit candidates into the review queue"),
    "import": ("datagen.cli.importer", "import a public dataset (RefCOCO, gRefCOCO, ReasonSeg, COCO-Stuff, IP2P, MagicBrush, Reason-Edit)"),
    "publish-reviewed": ("datagen.cli.publish", "write approved review-queue samples to shards + manifest"),
    "review": ("datagen.cli.review", "review queue: serve the web UI, add reviewers, export decisions"),
    "inspect": ("datagen.cli.inspect", "counts and samples of a manifest; verify every shard's checksum"),
    "contact-sheet": ("datagen.cli.contact_sheet", "grid of src | tgt | mask with instructions, as a PNG"),
    "calibrate": ("datagen.cli.calibrate", "fit auto-approve / auto-reject rules on review decisions; route new candidates by them"),
    "judge": ("datagen.cli.judge", "score waiting review candidates with a local vision-language judge (1-5 + reason)"),
    "split": ("datagen.cli.split", "split a manifest into a training and a held-out evaluation split (stable by key)"),
    "demo": ("datagen.cli.demo", "the whole pipeline on demo scenes with the classical CPU backends"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m datagen",
        description="SmartEdit training-data pipeline (understanding, reasoning and perception edit pairs).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 0
        parser.parse_args(argv)  # prints help or the "invalid choice" error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"python -m datagen {name}", description=SUBCOMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    return int(module.run(args) or 0)
