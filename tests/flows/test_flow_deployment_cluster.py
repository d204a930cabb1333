"""`synth-understanding/demo-dask` as a user runs it: `prefect deploy --all` from prefect.yaml, a
process worker, `prefect deployment run`. The flow run loads `flows/understanding.py` the way
Prefect does (with `flows/` on `sys.path`), so a module of `flows/` named after a package (the
old `flows/dask.py`) breaks it here, as it did for users (issue 11 §3).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

# ~3 min on 2 busy cores (deploy, worker poll, a 2-process Dask cluster); the default suite keeps
# the fast guard against the same bug: test_flow_cluster.py::test_no_module_of_flows_hides_a_package.
pytestmark = [pytest.mark.prefect, pytest.mark.slow]

DEPLOYMENT = "synth-understanding/demo-dask"


@pytest.fixture(scope="module")
def stack_with_worker(prefect_server):
    prefect_server.create_pool()
    prefect_server.deploy()
    prefect_server.start_worker()  # reused if another module started it
    return prefect_server


def test_demo_dask_deployment_runs_through_a_worker_on_a_two_worker_cluster(stack_with_worker, tmp_path,
                                                                          demo_reference, committed_keys):
    from datagen.shards import verify_manifest

    stack = stack_with_worker
    params = {"source": demo_reference["source"], "out": str(tmp_path / "data"), "name": "e2e-dask",
              "manifest_dir": str(tmp_path / "manifests"), "batch_size": 2}
    cmd = [sys.executable, "-m", "prefect", "deployment", "run", DEPLOYMENT, "--watch", "--watch-timeout", "300"]
    for key, value in params.items():
        cmd += ["--param", f"{key}={value}"]
    done = subprocess.run(cmd, cwd=stack.root, env=stack.env(), capture_output=True, text=True, timeout=330)
    assert done.returncode == 0, done.stdout + done.stderr

    manifest = tmp_path / "manifests" / "e2e-dask.json"
    assert verify_manifest(manifest) == []
    keys = committed_keys(tmp_path / "data")
    assert len(keys) == len(set(keys)) == json.loads(manifest.read_text())["nsamples"]
    assert sorted(keys) == sorted(demo_reference["keys"])  # the same work as the plain job layer
    # The deployment's execution (runner: dask) was used: its batches ran under the child flow run
    # `run-batches-on-dask`, and in processes other than the worker and this one.
    assert _completed_dask_runs("e2e-dask") == 1
    pids = {json.loads(m.read_text())["pid"] for m in (tmp_path / "data" / ".jobs").glob("*.done.json")}
    assert pids and not pids & {stack.pid("worker"), __import__("os").getpid()}


def _completed_dask_runs(name: str) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["run-batches-on-dask"])))
    return sum(1 for r in runs if r.state and r.state.is_completed() and name in json.dumps(r.parameters, default=str))
