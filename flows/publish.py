"""``publish-reviewed``: approved review-queue candidates -> shards + manifest, exactly once.

    prefect deployment run publish-reviewed/demo --watch

Run it whenever reviewers have approved more: ``datagen.review.publish.publish_reviewed`` claims
what is approved and not yet published (from then on a reviewer cannot undo it), writes and
commits the shards, then marks the items published, so a retry or a rerun after a crash never
publishes an item twice and never publishes one that was rejected. A queue that does not exist is
an error, not an empty queue.
"""
from __future__ import annotations

import time

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import reporting
from flows.tasks import retry_transient


@task(name="publish-approved", retries=3, retry_delay_seconds=[2, 4, 8], retry_jitter_factor=0.5,
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def publish_approved(queue: str, blobs: str | None, out: str, name: str, manifest_dir: str, prefix: str,
                     maxcount: int, image_format: str) -> dict:
    from datagen.reasoning.queue import open_queue
    from datagen.review.publish import publish_reviewed as publish

    store = open_queue(queue, blob_dir=blobs, create=False)  # a mistyped queue is an error
    try:
        result = publish(store, out, name, manifest_dir, prefix=prefix, maxcount=maxcount, image_format=image_format)
    finally:
        store.close()
    return {"written": result.written, "already": result.already,
            "manifest": str(result.manifest) if result.manifest else None, "shards": [str(s) for s in result.shards]}


@flow(name="publish-reviewed", log_prints=True)
def publish_reviewed(
    queue: str = "review-queue/queue.db",
    out: str = "data/reasoning",
    name: str = "reasoning",
    manifest_dir: str = "manifests",
    blobs: str | None = None,
    prefix: str = "reviewed",
    maxcount: int = 1000,
    image_format: str = "png",
) -> dict:
    """Write approved candidates of the review ``queue`` to shards in ``out`` and the manifest
    ``manifest_dir/name.json``.

    Args:
        queue: the review queue: a ``*.db`` file, a folder holding ``queue.db``, ``sqlite:///path``
            or ``postgresql://...``.
        out: data folder of the published dataset.
        name: dataset (manifest) name.
        manifest_dir: where the manifest goes.
        blobs: the queue's image folder, if not the one it remembers.
        prefix: shard file prefix (one publisher per prefix at a time).
        maxcount: samples per shard.
        image_format: ``png`` or ``jpg`` for src/tgt in the shards.
    """
    start = time.perf_counter()
    result = publish_approved(queue, blobs, out, name, manifest_dir, prefix, maxcount, image_format)
    get_run_logger().info("published %d newly approved sample(s) (%d already there); manifest %s",
                          result["written"], result["already"], result["manifest"])
    summary = {"name": name, "scenario": "reasoning", "out": out, "manifest": result["manifest"], "queue": queue,
               "batches": 1, "batches_run": 1, "batches_resumed": 0, "batches_failed": 0,
               "seconds": round(time.perf_counter() - start, 3),
               "stats": {"samples_written": result["written"], "duplicates": result["already"]}}
    reporting.publish_report(name, out, summary, result["manifest"])
    return summary
