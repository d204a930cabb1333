"""``python -m datagen demo``: every scenario on the built-in demo scenes, classical backends,
in this process without Prefect (``make demo`` runs the same plan through the flows)."""
from __future__ import annotations

import argparse

from datagen.cli.argtypes import non_negative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", type=positive_int, default=24, help="number of demo scenes (default 24)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="scene set and builder seed (default 0)")
    parser.add_argument("--root", default="data/demo", help="data folder (default data/demo)")
    parser.add_argument("--manifests", default="manifests", help="manifest folder (default manifests)")
    parser.add_argument("--queue", default="review-queue",
                        help="review queue folder for the reasoning candidates (default review-queue, "
                             "the queue `publish-reviewed` reads)")


def run(args: argparse.Namespace) -> int:
    from datagen.contact_sheet import write_contact_sheet
    from datagen.demo import demo_jobs, sheet_path, summarize
    from datagen.jobs import run_job

    jobs = demo_jobs(scenes=args.scenes, seed=args.seed, root=args.root, manifest_dir=args.manifests,
                     queue=args.queue)
    results = {}
    for job in jobs:
        print(f"{job.scenario}: {args.scenes} demo scenes ...", flush=True)
        result = run_job(job)
        sheet = write_contact_sheet(result.manifest, sheet_path(job)) if result.manifest else None
        results[job.name] = {"stats": result.new.to_dict(), "in_dataset": result.in_dataset,
                             "manifest": result.manifest, "sheet": sheet}
    print(summarize(jobs, results))
    return 0
