"""``demo``: the whole pipeline on the built-in demo scenes with the classical CPU backends, through
the same flows users deploy (perception, understanding, reasoning into the review queue).

    python -m flows demo                      # a throwaway Prefect server starts unless PREFECT_API_URL is set
    python -m flows demo --param scenes=8

Each part is a child flow run, so the Prefect UI (when a server is up) shows the demo as one run
with three children, their batch tasks and artifacts. Rerunning it is cheap: every finished batch
is skipped.
"""
from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.perception import synth_perception
from flows.reasoning import synth_reasoning
from flows.understanding import synth_understanding


@flow(name="demo", log_prints=True)
def demo(scenes: int = 24, data: str = "data/demo", manifest_dir: str = "manifests",
         queue: str = "review-queue/queue.db", batch_size: int = 8) -> dict:
    """Perception and understanding samples (shards + manifests) and reasoning candidates (review
    queue) from ``scenes`` demo scenes.

    Args:
        scenes: how many built-in demo scenes.
        data: parent folder of the datasets' shard folders.
        manifest_dir: where the manifests go.
        queue: the review queue the reasoning candidates go to.
        batch_size: scenes per batch task.
    """
    source, root = f"demo:{scenes}", Path(data)
    common = {"source": source, "manifest_dir": manifest_dir, "batch_size": batch_size}
    results = {
        "perception": synth_perception(out=str(root / "perception"), name="demo-perception", **common),
        "understanding": synth_understanding(out=str(root / "understanding"), name="demo-understanding", **common),
        "reasoning": synth_reasoning(source=source, queue=queue, out=str(root / "reasoning-work"),
                                     name="demo-reasoning", batch_size=batch_size),
    }
    for part, summary in results.items():
        where = summary["manifest"] or f"review queue {summary['queue']}"
        print(f"{part:14s} {summary['stats']['samples_written']:5d} samples -> {where}")
        if summary["manifest"]:
            print(f"{'':14s} contact sheet {Path(summary['out']) / (summary['name'] + '.contact-sheet.png')}")
    print(f"review the reasoning candidates: python -m datagen review add-reviewer NAME; "
          f"python -m datagen review serve --db {queue}")
    return results
