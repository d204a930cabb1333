"""Kill the flow-run process with SIGKILL at several points, run the flow again with the same
parameters, and find every sample exactly once (counted by key, read from the tar members).

The run being killed is ``python -m flows synth-understanding ...`` (what a process worker runs,
minus the worker) reporting to the session's server; the rerun is an in-process flow call.
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

ROOT = Path(__file__).resolve().parents[2]
BATCHES = 3  # demo:6 in batches of 2


def _partial_shards(data: Path) -> bool:
    partial = data / ".partial"
    return partial.is_dir() and any(partial.glob("*.tar.part"))


def _markers(data: Path) -> int:
    folder = data / ".jobs"
    return len(list(folder.glob("*.done.json"))) if folder.is_dir() else 0


# When to pull the plug, as a condition on the data folder.
KILL_POINTS = {
    # a shard of the first batch is being written; nothing is committed yet
    "mid-first-batch": lambda data: _partial_shards(data) and _markers(data) == 0,
    # one batch finished (marker written), the next one under way
    "after-first-batch": lambda data: _markers(data) >= 1,
    # every batch finished: the manifest and the artifacts are being written
    "while-finishing": lambda data: _markers(data) == BATCHES,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_rerun_gives_every_sample_once(point, prefect_server, tmp_path, demo_reference, committed_keys):
    from datagen.shards import verify_manifest
    from flows.understanding import synth_understanding

    data, manifests = tmp_path / "data", tmp_path / "manifests"
    params = {"source": demo_reference["source"], "out": str(data), "manifest_dir": str(manifests), "name": "killed",
              "batch_size": 2}
    cmd = [sys.executable, "-m", "flows", "synth-understanding", "--params", json.dumps(params)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=prefect_server.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    condition, deadline = KILL_POINTS[point], time.monotonic() + 120
    try:
        while not condition(data):
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before {point}: {proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    killed_keys = committed_keys(data)
    assert len(killed_keys) == len(set(killed_keys))  # a killed run never commits a key twice either

    summary = synth_understanding(**params)

    keys = committed_keys(data)
    assert len(keys) == len(set(keys)), "a key was committed twice"
    assert sorted(keys) == sorted(demo_reference["keys"]), "a sample is missing or unexpected"
    manifest = manifests / "killed.json"
    assert verify_manifest(manifest) == []
    assert json.loads(manifest.read_text())["nsamples"] == len(keys)
    assert summary["batches_resumed"] + summary["batches_run"] == BATCHES
