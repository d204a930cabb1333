"""One real Prefect server per test session, on 127.0.0.1 with a throwaway PREFECT_HOME.

Prefect reads its settings when it is first imported, so the environment (home, API URL,
offline switches) is set here, at collection time, before any test module imports prefect; the
server itself starts lazily, the first time a test asks for ``prefect_server``, and is shared by
every flow test (starting one costs ~10 s). Flows run in-process then report to that server, as
they would under a worker.
"""
from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="datagen-prefect-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)  # the server's database and logs


def _load_stack_module():
    spec = importlib.util.spec_from_file_location("datagen_stack", ROOT / "scripts" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["datagen_stack"] = module
    spec.loader.exec_module(module)
    return module


stack_module = _load_stack_module()
_STACK = stack_module.Stack(home=_HOME, port=stack_module.free_port(), pool="datagen", root=ROOT)
os.environ.update({k: v for k, v in _STACK.env().items()
                   if k.startswith("PREFECT_") or k in stack_module.OFFLINE_ENV})
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"  # keep test output readable


@pytest.fixture(scope="session")
def prefect_server():
    """The session's ``Stack`` with its server up (no worker: tests that need one start it)."""
    _STACK.start_server()
    yield _STACK
    _flush_prefect_clients()
    for name in ("worker", "server"):
        _STACK.stop(name, timeout=10)


def _flush_prefect_clients() -> None:
    """Send queued logs and events while the server is still up (else they fail noisily at exit)."""
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler, APILogWorker

    APILogHandler().flush()
    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)


@pytest.fixture(scope="session")
def demo_reference(tmp_path_factory):
    """Keys of the understanding job on a few demo scenes, run plainly (no Prefect)."""
    from datagen.jobs import JobConfig, run_job

    out = tmp_path_factory.mktemp("reference")
    config = JobConfig("understanding", source=DEMO_SOURCE, out=str(out / "data"), name="ref",
                       manifest_dir=str(out / "manifests"), batch_size=2)
    result = run_job(config)
    return {"source": DEMO_SOURCE, "keys": keys_in(out / "data"), "manifest": result.manifest, "stats": result.stats}


DEMO_SOURCE = "demo:6"  # the source every flow test runs on: 3 batches of 2 scenes, ~45 samples


@pytest.fixture(scope="session")
def committed_keys():
    """``committed_keys(data_dir) -> list[str]``: keys of every committed shard, duplicates kept."""
    return keys_in


def keys_in(data_dir) -> list[str]:
    """Every key in every committed shard, read from the tar members themselves (duplicates kept)."""
    import tarfile

    from datagen.shards.layout import committed_shards

    keys = []
    for shard in committed_shards(data_dir):
        with tarfile.open(shard.tar) as tf:
            keys += [m.name.split(".", 1)[0] for m in tf.getmembers() if m.name.endswith(".json")]
    return keys
