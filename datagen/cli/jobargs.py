"""What the shard-writing subcommands share: their common arguments and one way to run a job.

``perception`` and ``understanding`` turn their arguments into a ``datagen.jobs.JobConfig`` and run
it with ``run_job_command``: the same batches, writer prefixes and completion markers the Prefect
flows use, so a run started by the CLI can be finished by a flow and the other way round.
"""
from __future__ import annotations

import argparse
import sys

from datagen.cli.argtypes import (
    check_writable_dir,
    dataset_name,
    non_negative_int,
    positive_int,
)
from datagen.jobs import JobConfig
from datagen.shards.encoding import ImageEncoding


def add_job_arguments(parser: argparse.ArgumentParser, *, name: str) -> None:
    """Source, output and run-size arguments; ``name`` is the default dataset name."""
    parser.add_argument("--source", required=True,
                        help="catalog spec: demo:N[:SEED] (built-in scenes), a COCO instances JSON, "
                             "or an image folder with annotations")
    parser.add_argument("--images", default=None, help="image folder for a COCO JSON (default: the JSON's folder)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="let image and mask paths in the annotations lead outside the catalog's folder")
    parser.add_argument("--out", required=True, help="data folder for the shards (one dataset per folder)")
    parser.add_argument("--name", type=dataset_name, default=name,
                        help="dataset name: manifest NAME.json and shard prefix")
    parser.add_argument("--manifests", default=None,
                        help="folder the manifest NAME.json is written to (default: --out, beside the shards); "
                             "give the trainer's folder, e.g. --manifests manifests, to add the dataset there")
    parser.add_argument("--limit", type=non_negative_int, default=None,
                        help="use only the first N records of the catalog")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="varies attribute, template and edit choices")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="records per batch (the unit of resume; the flows' tasks use the same)")
    parser.add_argument("--maxcount", type=positive_int, default=1000, help="samples per shard")
    parser.add_argument("--image-format", type=ImageEncoding.argument, default="png", metavar="png|jpg[:Q]|webp[:Q]",
                        help="src/tgt encoding in shards (masks stay PNG)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_detect_arguments(parser)


def add_detect_arguments(parser: argparse.ArgumentParser) -> None:
    """``--detect`` and its detector options: instances from an open-vocabulary detector."""
    from datagen.detection import DETECTORS

    parser.add_argument("--detect", type=_prompt_list, default=None, metavar="CATEGORIES",
                        help="comma-separated categories to detect (e.g. 'cat,dog,cup'): --source may then be a "
                             "folder of unannotated images; a catalog's own annotations are ignored")
    parser.add_argument("--detector", choices=DETECTORS.names(), default="owlv2", help="detector for --detect")
    parser.add_argument("--detector-model", default=None, help="local transformers folder of the --detector weights")
    parser.add_argument("--detect-threshold", type=float, default=0.3, help="lowest detection score kept")


def _prompt_list(text: str) -> list[str]:
    from datagen.detection import parse_prompts

    try:
        return parse_prompts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def detector_backend(args: argparse.Namespace):
    """The ``detector`` stage ``Backend`` the ``--detect`` arguments ask for, or None without ``--detect``."""
    from datagen.jobs import Backend

    if not args.detect:
        return None
    options = {"prompts": list(args.detect), "threshold": args.detect_threshold}
    if args.detector_model:
        options["model_dir"] = args.detector_model
    return Backend(args.detector, options)


def job_config(args: argparse.Namespace, scenario: str, **fields) -> JobConfig:
    """``JobConfig`` from ``add_job_arguments``' values plus scenario-specific ``fields``."""
    manifests = args.manifests if args.manifests is not None else args.out
    detector = detector_backend(args)
    if detector is not None:
        fields["backends"] = {**fields.get("backends", {}), "detector": detector}
    return JobConfig(scenario, source=args.source, images=args.images, out=args.out, name=args.name,
                     manifest_dir=manifests, limit=args.limit, seed=args.seed, batch_size=args.batch_size,
                     maxcount=args.maxcount, image_format=args.image_format,
                     allow_outside_root=args.allow_outside_root, **fields)


def usage_error(command: str, message) -> int:
    """Print a usage problem as one sentence (no traceback); return exit status 2."""
    print(f"datagen {command}: {message}", file=sys.stderr)
    return 2


def run_job_command(command: str, config: JobConfig, *, progress: bool = True) -> int:
    """Run ``config`` with a progress bar; print counts and where the data is.

    Exit status: 0 with a manifest written; 1 when nothing was committed (every record skipped or
    quarantined; no manifest); 2 on a usage problem (bad source, unavailable backend, bad option),
    reported in one sentence without a traceback.
    """
    from tqdm import tqdm

    from datagen.backends import BackendUnavailable
    from datagen.jobs import count_summary, get_builder, plan_batches, run_job, unfinished
    from datagen.sources import CatalogError

    try:
        check_writable_dir(config.out, "--out")
        check_writable_dir(config.manifest_dir, "--manifests")
        batches = plan_batches(config)
        if unfinished(config, batches):  # a finished job reruns without loading a model
            get_builder(config)  # builds the backends now, so a missing weight file fails before any work
    except BackendUnavailable as exc:
        return usage_error(command, f"{exc} (here: --backend-opt STAGE.KEY=VALUE)")
    except (CatalogError, ValueError) as exc:  # a bad source or option; a bug keeps its traceback
        return usage_error(command, exc)
    with tqdm(total=sum(len(b.ids) for b in batches), unit="rec", desc=command, disable=not progress) as bar:
        result = run_job(config, on_batch=lambda batch, _stats: bar.update(len(batch.ids)))
    new, dataset = (count := count_summary(result.new, result.manifest))["new_this_run"], count["in_dataset"]
    print(f"new this run: {new['samples']} samples {new['by_op']}; skipped {new['skipped']}; "
          f"quarantined {new['quarantined']}; {result.resumed} of {result.batches} batches done earlier; "
          f"{result.seconds:.1f} s", file=sys.stderr)
    if dataset is not None:
        print(f"in the dataset: {dataset['samples']} samples {dataset['by_op']}; skipped {dataset['skipped']}; "
              f"quarantined {dataset['quarantined']}", file=sys.stderr)
    dropped = dropped_annotation_counts(result.new, config)
    if dropped:
        print(f"{sum(dropped.values())} annotations dropped this run: "
              + ", ".join(f"{n} {reason}" for reason, n in dropped.most_common())
              + f" (each with its reason in {config.out}/*.quarantine.jsonl)", file=sys.stderr)
    if result.manifest is None:
        print(f"datagen {command}: no manifest written: no sample was committed", file=sys.stderr)
        return 1
    print(f"shards in {config.out}; manifest {result.manifest}")
    return 0


def dropped_annotation_counts(stats, config: JobConfig):
    """Annotations dropped this run (from records it loaded) plus the catalog's own problems
    (orphans, unusable categories), by reason (a ``Counter``)."""
    from datagen.jobs import log_catalog_problems

    return stats.dropped_annotations + log_catalog_problems(config)
