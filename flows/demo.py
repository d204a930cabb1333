"""``demo``: the whole pipeline on the built-in demo scenes with the classical CPU backends, through
the same flows users deploy (perception, understanding, reasoning into the review queue).

    python -m flows demo                      # what `make demo` runs; a throwaway Prefect server
    python -m flows demo --param scenes=8     # starts unless PREFECT_API_URL is set

The plan (sources, folders, names) is ``datagen.demo.demo_jobs``, the same one
``python -m datagen demo`` runs without Prefect, so both write the same samples to the same places.
Each part is a child flow run, so the Prefect UI shows the demo as one run with three children,
their batch tasks and artifacts. Rerunning it is cheap: every finished batch is skipped.
"""
from __future__ import annotations

from prefect import flow

from datagen.demo import REVIEW_QUEUE, demo_jobs, sheet_path, summarize
from flows.perception import synth_perception
from flows.reasoning import synth_reasoning
from flows.understanding import synth_understanding


@flow(name="demo", log_prints=True)
def demo(scenes: int = 24, seed: int = 0, data: str = "data/demo", manifest_dir: str = "manifests",
         batch_size: int = 8, queue: str = REVIEW_QUEUE) -> dict:
    """Perception and understanding samples (shards + manifests) and reasoning candidates (the
    review queue ``review-queue/``) from ``scenes`` demo scenes. Returns ``{"report": text, "parts": {job
    name: flow summary}}``.

    Args:
        scenes: how many built-in demo scenes.
        seed: scene set and builder seed.
        data: parent folder of the datasets' shard folders.
        manifest_dir: where the manifests go.
        batch_size: scenes per batch task.
        queue: review queue folder (holding ``queue.db``) for the reasoning candidates; the
            default is the one ``publish-reviewed/demo`` publishes from.
    """
    jobs = demo_jobs(scenes=scenes, seed=seed, root=data, manifest_dir=manifest_dir, batch_size=batch_size,
                     queue=queue)
    results = {}
    for job in jobs:
        common = {"source": job.source, "out": job.out, "name": job.name, "seed": job.seed,
                  "batch_size": job.batch_size}
        if job.scenario == "perception":
            summary = synth_perception(manifest_dir=job.manifest_dir, **common)
        elif job.scenario == "understanding":
            summary = synth_understanding(manifest_dir=job.manifest_dir, **common)
        else:
            summary = synth_reasoning(queue=job.queue, **common)
        sheet = sheet_path(job)
        results[job.name] = {**summary, "sheet": sheet if sheet.exists() else None}
    report = summarize(jobs, results)
    print(report)
    return {"report": report, "parts": results}
