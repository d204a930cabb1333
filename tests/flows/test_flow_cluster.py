"""The Dask option: the same flow with its batches on a local 2-worker cluster gives the same
samples (keys) as the default runner, with GPU-bound tasks carrying a ``GPU`` resource and running
on one worker per GPU, each pinned to its own device id."""
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
    # Batches ran in the cluster's worker processes, not in this one, each worker on its own GPU id.
    markers = [json.loads(m.read_text()) for m in (tmp_path / "data" / ".jobs").glob("*.done.json")]
    pids = {m["pid"] for m in markers}
    assert len(pids) >= 1 and __import__("os").getpid() not in pids
    gpu_of = {m["pid"]: m["gpu"] for m in markers}
    assert set(gpu_of.values()) <= {"0", "1"} and len(set(gpu_of.values())) == len(pids)


def test_gpu_annotation_follows_the_backends():
    import dask

    from datagen.jobs import Backend, JobConfig
    from flows.cluster import gpu_annotation, make_task_runner
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
    assert runner.cluster_kwargs == {"gpus": ["0", "1"], "slots_per_gpu": 1, "threads_per_worker": 1}
    cpu_runner = make_task_runner(classical, on_dask)
    assert cpu_runner.cluster_kwargs["n_workers"] == 2 and "resources" not in cpu_runner.cluster_kwargs
    assert make_task_runner(learned, Execution(runner="dask", dask_address="tcp://10.0.0.5:8786")).address


def test_one_worker_per_gpu_each_with_its_own_device_id(monkeypatch):
    """A 2-worker ``gpu_cluster``: GPU-annotated work lands on both workers, each process pinned to
    one device id (on a CPU machine: the id it would use), and a worker keeps its id for good."""
    import os

    from distributed import Client

    from flows.cluster import gpu_cluster, visible_gpus, worker_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,6")
    assert visible_gpus(2) == ["3", "5"]
    with pytest.raises(ValueError, match="dask_workers=4"):
        visible_gpus(4)

    def where(_):
        import time

        time.sleep(0.2)  # long enough that both workers take some of the work
        return worker_gpu(), os.getpid()

    with gpu_cluster(gpus=visible_gpus(2)) as cluster, Client(cluster) as client:
        assert sorted(client.run(worker_gpu).values()) == ["3", "5"]
        seen = client.gather(client.map(where, range(8), resources={"GPU": 1}))
        by_gpu: dict = {}
        for gpu, pid in seen:
            by_gpu.setdefault(gpu, set()).add(pid)
    assert set(by_gpu) == {"3", "5"} and all(len(p) == 1 for p in by_gpu.values())
    assert by_gpu["3"] != by_gpu["5"] and os.getpid() not in by_gpu["3"] | by_gpu["5"]


def test_no_module_of_flows_hides_a_package():
    """Prefect puts ``flows/`` on ``sys.path`` to load an entrypoint: a ``flows/NAME.py`` then
    shadows any installed package ``NAME`` (``flows/dask.py`` hid ``dask``)."""
    import importlib.util
    from pathlib import Path

    import flows

    folder = Path(flows.__file__).parent
    names = [p.stem for p in folder.glob("*.py") if p.stem not in ("__init__", "__main__")]
    hidden = [name for name in names
              if (spec := importlib.util.find_spec(name)) is not None and Path(spec.origin or "").parent != folder]
    assert not hidden, f"modules of flows/ named after installed packages: {hidden}"
