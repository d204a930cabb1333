"""What the shard-writing subcommands share: their common arguments and one way to run a job.

``perception`` and ``understanding`` turn their arguments into a ``datagen.jobs.JobConfig`` and run
it with ``run_job_command``: the same batches, writer prefixes and completion markers the Prefect
flows use, so a run started by the CLI can be finished by a flow and the other way round.
"""
from __future__ import annotations

import argparse
import sys

from datagen.jobs import JobConfig


def add_job_arguments(parser: argparse.ArgumentParser, *, name: str) -> None:
    """Source, output and run-size arguments; ``name`` is the default dataset name."""
    parser.add_argument("--source", default="demo:50",
                        help="catalog spec: demo:N[:SEED], a COCO instances JSON, or an image folder with annotations")
    parser.add_argument("--images", default=None, help="image folder for a COCO JSON (default: the JSON's folder)")
    parser.add_argument("--out", required=True, help="data folder for the shards (one dataset per folder)")
    parser.add_argument("--name", default=name, help="dataset name: manifest NAME.json and shard prefix")
    parser.add_argument("--manifests", default="manifests", help="folder the manifest is written to")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N records of the catalog")
    parser.add_argument("--seed", type=int, default=0, help="varies attribute, template and edit choices")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="records per batch (the unit of resume; the flows' tasks use the same)")
    parser.add_argument("--maxcount", type=int, default=1000, help="samples per shard")
    parser.add_argument("--image-format", choices=("png", "jpg"), default="png", help="src/tgt encoding in shards")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def job_config(args: argparse.Namespace, scenario: str, **fields) -> JobConfig:
    """``JobConfig`` from ``add_job_arguments``' values plus scenario-specific ``fields``."""
    return JobConfig(scenario, source=args.source, images=args.images, out=args.out, name=args.name,
                     manifest_dir=args.manifests, limit=args.limit, seed=args.seed, batch_size=args.batch_size,
                     maxcount=args.maxcount, image_format=args.image_format, **fields)


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
        batches = plan_batches(config)
        if unfinished(config, batches):  # a finished job reruns without loading a model
            get_builder(config)  # builds the backends now, so a missing weight file fails before any work
    except (BackendUnavailable, CatalogError, ValueError, TypeError) as exc:
        hint = " (here: --backend-opt STAGE.KEY=VALUE)" if isinstance(exc, BackendUnavailable) else ""
        print(f"datagen {command}: {exc}{hint}", file=sys.stderr)
        return 2
    with tqdm(total=sum(len(b.ids) for b in batches), unit="rec", desc=command, disable=not progress) as bar:
        result = run_job(config, on_batch=lambda batch, _stats: bar.update(len(batch.ids)))
    new, dataset = (count := count_summary(result.new, result.manifest))["new_this_run"], count["in_dataset"]
    print(f"new this run: {new['samples']} samples {new['by_op']}; skipped {new['skipped']}; "
          f"quarantined {new['quarantined']}; {result.resumed} of {result.batches} batches done earlier; "
          f"{result.seconds:.1f} s", file=sys.stderr)
    if dataset is not None:
        print(f"in the dataset: {dataset['samples']} samples {dataset['by_op']}; skipped {dataset['skipped']}; "
              f"quarantined {dataset['quarantined']}", file=sys.stderr)
    if result.manifest is None:
        print(f"datagen {command}: no manifest written: no sample was committed", file=sys.stderr)
        return 1
    print(f"shards in {config.out}; manifest {result.manifest}")
    return 0
