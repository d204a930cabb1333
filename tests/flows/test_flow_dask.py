"""The Dask option: the same flow with its batches on a local 2-worker cluster gives the same
samples (keys) as the default runner, with GPU-bound tasks carrying a ``GPU`` resource."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.prefect


def test_dask_runner_gives_the_same_keys_as_the_default_runner(prefect_server, tmp_path, demo_reference,
                                                               committed_keys):
    from datagen.shards import verify_manifest
    from flows.understanding import synth_understanding

    summary = synth_understanding(
        source=demo_reference["source"], out=str(tmp_path / "data"), manifest_dir=str(tmp_path / "manifests"),
        name="dasked", batch_size=2,
        # gpu_resource=True: tasks are annotated resources={"GPU": 1} and each local worker
        # declares one GPU slot, as on a GPU machine (the classical backends ignore the GPU).
        execution={"runner": "dask", "dask_workers": 2, "gpu_resource": True},
    )
    keys = committed_keys(tmp_path / "data")
    assert len(keys) == len(set(keys))
    assert sorted(keys) == sorted(demo_reference["keys"])
    assert summary["batches_run"] == summary["batches"]
    manifest = tmp_path / "manifests" / "dasked.json"
    assert verify_manifest(manifest) == []
    # Batches ran in the cluster's worker processes, not in this one.
    pids = {json.loads(m.read_text()).get("pid") for m in (tmp_path / "data" / ".jobs").glob("*.done.json")}
    assert len(pids) >= 1 and __import__("os").getpid() not in pids


def test_gpu_annotation_follows_the_backends():
    import dask

    from datagen.jobs import Backend, JobConfig
    from flows.dask import gpu_annotation, make_task_runner
    from flows.params import Execution

    classical, learned = JobConfig("understanding"), JobConfig("understanding", backends={"inpainter": Backend("lama")})
    on_dask = Execution(runner="dask")
    with gpu_annotation(learned, on_dask):
        assert dask.get_annotations() == {"resources": {"GPU": 1}}
    with gpu_annotation(classical, on_dask):
        assert "resources" not in dask.get_annotations()
    with gpu_annotation(learned, Execution()):  # no Dask, nothing to annotate
        assert "resources" not in dask.get_annotations()
    runner = make_task_runner(learned, on_dask)
    assert runner.cluster_kwargs["resources"] == {"GPU": 1} and runner.cluster_kwargs["n_workers"] == 2
    assert make_task_runner(learned, Execution(runner="dask", dask_address="tcp://10.0.0.5:8786")).address
