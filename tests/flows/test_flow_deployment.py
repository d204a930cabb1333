"""End to end through real Prefect machinery: server on loopback, `process` work pool,
`prefect deploy --all` from the project's prefect.yaml, a worker, `prefect deployment run`.
Then the worker is SIGKILLed in the middle of a run, and the rerun still yields every sample once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.prefect

DEPLOYMENT = "synth-understanding/demo"


@pytest.fixture(scope="module")
def deployed(prefect_server):
    """The session's stack with the pool, every deployment of prefect.yaml, and a worker."""
    prefect_server.create_pool()
    output = prefect_server.deploy()
    prefect_server.start_worker()
    return prefect_server, output


def _run_deployment(stack, params: dict, *, watch: bool = True, timeout: float = 150) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "prefect", "deployment", "run", DEPLOYMENT]
    for key, value in params.items():
        cmd += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    if watch:
        cmd += ["--watch", "--watch-timeout", str(int(timeout))]
    return subprocess.run(cmd, cwd=stack.root, env=stack.env(), capture_output=True, text=True, timeout=timeout + 30)


def _params(tmp_path: Path, source: str) -> dict:
    return {"source": source, "out": str(tmp_path / "data"), "manifest_dir": str(tmp_path / "manifests"),
            "name": "e2e", "batch_size": 2}


def test_every_deployment_of_prefect_yaml_is_on_the_server(deployed):
    import yaml
    from prefect.client.orchestration import get_client

    stack, output = deployed
    spec = yaml.safe_load((stack.root / "prefect.yaml").read_text())
    with get_client(sync_client=True) as client:
        on_server = {(d.name, client.read_flow(d.flow_id).name, d.work_pool_name) for d in client.read_deployments()}
    for dep in spec["deployments"]:
        flow_name = {"synth_understanding": "synth-understanding", "synth_perception": "synth-perception",
                     "synth_reasoning": "synth-reasoning", "publish_reviewed": "publish-reviewed",
                     "import_dataset": "import-dataset"}[dep["entrypoint"].split(":")[1]]
        assert (dep["name"], flow_name, "datagen") in on_server, output


def _assert_artifacts(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = {}
        for suffix in ("progress", "counts", "report"):
            arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{name}-{suffix}"])))
            assert arts, f"no artifact {name}-{suffix}"
            found[suffix] = max(arts, key=lambda a: a.created)  # the rerun's, not the killed run's
    assert float(found["progress"].data) == 100.0
    rows = found["counts"].data if isinstance(found["counts"].data, list) else json.loads(found["counts"].data)
    assert {r["group"] for r in rows} >= {"op", "attribute"}
    assert "data:image/jpeg;base64," in found["report"].data


def _running(pid: int) -> bool:
    """True unless the process is gone or a zombie (dead, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _pid_children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_worker_killed_mid_run_then_a_rerun_finishes_with_every_sample_once(deployed, tmp_path, demo_reference,
                                                                          committed_keys):
    """`prefect deployment run` through the worker; SIGKILL the worker and the flow run it started
    (as when the worker's machine or container dies) once the first batch is committed; start a new worker and run the deployment again with the same parameters. The
    second run must finish the job: a verified manifest, every key exactly once, the same keys as
    the plain job layer, and the artifacts listed under their keys."""
    from datagen.shards import verify_manifest

    stack, _ = deployed
    params = _params(tmp_path, demo_reference["source"])
    started = _run_deployment(stack, params, watch=False)
    assert started.returncode == 0, started.stdout + started.stderr
    markers = tmp_path / "data" / ".jobs"
    deadline = time.monotonic() + 120
    while not (markers.is_dir() and any(markers.glob("*.done.json"))):
        assert time.monotonic() < deadline, "the deployment run never finished a batch"
        time.sleep(0.05)
    worker = stack.pid("worker")
    flow_runs = _pid_children(worker)
    assert flow_runs, "the flow run should be a child of the worker"
    # Prefect starts each flow run in a session of its own (a signal to the worker's group does not
    # reach it), so the machine dying is: the flow run's group and the worker's group, SIGKILLed.
    for pid in flow_runs:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    os.killpg(worker, signal.SIGKILL)
    stack.stop("worker")  # reap it and forget its pid
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in flow_runs):
        assert time.monotonic() < deadline, "the flow-run process survived SIGKILL"
        time.sleep(0.05)
    finished_before_kill = len(list(markers.glob("*.done.json")))
    assert finished_before_kill < 3, "the kill came too late to interrupt the run"
    assert not (tmp_path / "manifests" / "e2e.json").exists()

    stack.start_worker()
    done = _run_deployment(stack, params)
    assert done.returncode == 0, done.stdout + done.stderr

    manifest = tmp_path / "manifests" / "e2e.json"
    assert verify_manifest(manifest) == []
    data = json.loads(manifest.read_text())
    keys = committed_keys(tmp_path / "data")
    assert len(keys) == len(set(keys)) == data["nsamples"]
    assert sorted(keys) == sorted(demo_reference["keys"])  # the same work as the plain job layer
    assert set(data["counts"]["op"]) == {"add", "remove", "replace"}
    assert (tmp_path / "data" / "e2e.contact-sheet.png").stat().st_size > 0
    _assert_artifacts("e2e")
