"""The demo: every scenario on built-in demo scenes with the classical CPU backends.

``demo_jobs`` is the plan (one ``JobConfig`` per scenario); ``python -m datagen demo`` runs it
in-process through ``datagen.jobs`` and ``python -m flows.demo`` (what ``make demo`` runs) runs
the same plan through the Prefect flows. Both end with ``summarize``, so a newcomer sees the same
report whichever way the work ran.
"""
from __future__ import annotations

from pathlib import Path

from datagen.jobs import JobConfig, queue_location

SCENARIOS = ("perception", "understanding", "reasoning")
# The one review queue: the demo, the README, the CLIs' defaults and every deployment in
# prefect.yaml use it, so reviewing the demo's candidates and then running
# ``publish-reviewed/demo`` publishes what was approved.
REVIEW_QUEUE = "review-queue"


def demo_jobs(*, scenes: int = 24, seed: int = 0, root: str = "data/demo",
              manifest_dir: str = "manifests", batch_size: int = 8,
              queue: str = REVIEW_QUEUE) -> list[JobConfig]:
    """One job per scenario over the same ``scenes`` demo scenes; shards under ``root/NAME``,
    manifests ``manifest_dir/demo-NAME.json``; reasoning candidates into the review ``queue``
    (a folder holding ``queue.db``; default the project's one queue, ``REVIEW_QUEUE``)."""
    source = f"demo:{int(scenes)}:{int(seed)}"
    jobs = []
    for scenario in SCENARIOS:
        name = f"demo-{scenario}"
        jobs.append(JobConfig(scenario, source=source, out=str(Path(root) / scenario), name=name,
                              manifest_dir=manifest_dir, seed=seed, batch_size=batch_size,
                              queue=queue if scenario == "reasoning" else None))
    return jobs


def sheet_path(job: JobConfig) -> Path:
    """Where a job's contact sheet goes (the flows' report writes the same file)."""
    return Path(job.out) / f"{job.name}.contact-sheet.png"


def summarize(jobs: list[JobConfig], results: dict[str, dict]) -> str:
    """The closing report: per scenario the counts, the shards, the manifest and the contact sheet;
    for reasoning the queue and how to open it. ``results[name]`` holds ``stats`` (a
    ``RunStats.to_dict()``), ``manifest`` (path or None) and ``sheet`` (path or None)."""
    from datagen.reasoning.queue import queue_url, review_hint

    lines = []
    for job in jobs:
        res = results.get(job.name, {})
        stats = res.get("stats", {})
        by_op = ", ".join(f"{op} {n}" for op, n in sorted(stats.get("by_op", {}).items())) or "none"
        skipped = sum(stats.get("skipped", {}).values()) + sum(stats.get("quarantined", {}).values())
        noun = "candidates" if job.scenario == "reasoning" else "samples"
        in_dataset = f"; {res['in_dataset']} in the dataset" if res.get("in_dataset") is not None else ""
        lines.append(f"{job.scenario}: {stats.get('samples_written', 0)} new {noun} this run ({by_op}); "
                     f"{skipped} cases skipped or quarantined (counted by reason){in_dataset}")
        if job.scenario == "reasoning":
            db = queue_url(queue_location(job))
            lines.append(f"  candidates wait in the review queue {db}")
            lines.extend("  " + line for line in review_hint(db).splitlines())
            continue
        lines.append(f"  shards:        {job.out}/")
        lines.append(f"  manifest:      {res.get('manifest')}")
        lines.append(f"  contact sheet: {res.get('sheet')}")
    lines.append("train on every manifest:  python -m trainer.stage2 --shards manifests/ --max-steps 20")
    return "\n".join(lines)
