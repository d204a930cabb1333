"""``python -m datagen import DATASET``: a public dataset, as distributed, into shards + manifest.

    python -m datagen import refcoco --source data/refcoco --images coco/train2014 --split train \\
        --out data/refcoco --name refcoco
    python -m datagen import magicbrush --source MagicBrush/data --out data/magicbrush

Runs as a ``datagen.jobs`` job of scenario ``import`` (the work of the ``import-dataset`` flow):
rerunning the same command resumes, broken records are quarantined with a reason. Datasets and
their options: ``datagen.importers`` (``docs/DATASETS.md``).
"""
from __future__ import annotations

import argparse
import json
import sys

from datagen.cli.jobargs import add_job_arguments, job_config, run_job_command
from datagen.importers import importer_names

HELP = "import a public dataset (RefCOCO, gRefCOCO, ReasonSeg, COCO-Stuff, IP2P, MagicBrush, Reason-Edit)"


def _option(text: str) -> tuple[str, object]:
    """``KEY=VALUE``; VALUE parsed as JSON when it is JSON (numbers, true/false), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--opt takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=importer_names(), help="which dataset the --source folder holds")
    add_job_arguments(parser, name="import")
    parser.set_defaults(source=None, name=None)
    helps = {"source": "the dataset as distributed: its folder (COCO-Stuff: the label-map folder or the stuff JSON)",
             "images": "COCO image folder (refcoco, grefcoco: train2014; cocostuff: train2017)",
             "name": "manifest NAME.json and shard prefix (default: the dataset name)",
             "seed": "varies template and colour choices"}
    for action in parser._actions:  # the shared job arguments, described for importing
        action.help = helps.get(action.dest, action.help)
    parser.add_argument("--split", default=None,
                        help="import one split (refcoco/grefcoco: train, val, testA...; reasonseg: a split folder)")
    parser.add_argument("--opt", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="importer option, e.g. split_by=umd, things=true, max_per_image=5 (repeatable)")


def run(args: argparse.Namespace) -> int:
    if not args.source:
        print(f"datagen import: pass the {args.dataset} folder (or file) as --source", file=sys.stderr)
        return 2
    options = {"dataset": args.dataset, **dict(args.opt)}
    if args.split is not None:
        options["split"] = args.split
    args.name = args.name or args.dataset.replace("-", "_")
    config = job_config(args, "import", builder_options=options)
    return run_job_command(f"import {args.dataset}", config, progress=not args.no_progress)
