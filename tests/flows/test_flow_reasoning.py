"""``synth-reasoning`` fills the review queue (exactly once across reruns); ``publish-reviewed``
writes what reviewers approved to shards + manifest, once."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.prefect


def test_reasoning_fills_the_queue_and_publish_writes_the_approved(prefect_server, tmp_path, committed_keys):
    from datagen.reasoning.queue import open_queue
    from datagen.shards import verify_manifest
    from flows.publish import publish_reviewed
    from flows.reasoning import synth_reasoning

    queue = str(tmp_path / "queue")
    params = {"source": "demo:3", "queue": queue, "out": str(tmp_path / "work"), "name": "reason", "batch_size": 2}
    first = synth_reasoning(**params)
    assert first["stats"]["samples_written"] > 0 and first["manifest"] is None
    again = synth_reasoning(**params)  # every batch finished: nothing is added twice
    assert again["batches_resumed"] == again["batches"] and again["batches_run"] == 0

    store = open_queue(queue)
    try:
        items = store.export_rows()
        queued = list(items)
        assert len(queued) == first["stats"]["samples_written"]
        store.add_reviewer("ann")
        approved = 0
        while (item := store.claim("ann")) is not None:
            verdict = "approve" if approved < 4 else "reject"
            store.decide(item["id"], "ann", verdict)
            approved += verdict == "approve"
    finally:
        store.close()

    out, manifests = tmp_path / "published", tmp_path / "manifests"
    pub = dict(queue=queue, out=str(out), name="reason-pub", manifest_dir=str(manifests))
    summary = publish_reviewed(**pub)
    assert summary["stats"]["samples_written"] == 4
    assert verify_manifest(manifests / "reason-pub.json") == []
    assert json.loads((manifests / "reason-pub.json").read_text())["nsamples"] == 4
    assert publish_reviewed(**pub)["stats"]["samples_written"] == 0  # published once
    keys = committed_keys(out)
    assert len(keys) == len(set(keys)) == 4
