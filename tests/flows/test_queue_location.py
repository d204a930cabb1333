"""One review queue: the demo fills the queue that the CLIs, the README and every deployment in
prefect.yaml read, so reviewing the demo's candidates and running ``publish-reviewed/demo``
publishes what was approved."""
from __future__ import annotations

import inspect
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _queue_db(location: str) -> Path:
    """A queue location (folder or ``*.db``) as its database file."""
    path = Path(location)
    return path if path.suffix == ".db" else path / "queue.db"


def test_demo_cli_flows_and_deployments_share_one_review_queue():
    from datagen.cli.review import DEFAULT_DB
    from datagen.demo import demo_jobs
    from datagen.jobs import queue_location
    from flows.demo import demo
    from flows.publish import publish_reviewed
    from flows.reasoning import synth_reasoning

    reasoning = next(j for j in demo_jobs() if j.scenario == "reasoning")
    expected = _queue_db(queue_location(reasoning))
    found = {
        "cli review default": DEFAULT_DB,
        "flows.demo": inspect.signature(demo.fn).parameters["queue"].default,
        "synth-reasoning default": inspect.signature(synth_reasoning.fn).parameters["queue"].default,
        "publish-reviewed default": inspect.signature(publish_reviewed.fn).parameters["queue"].default,
    }
    for deployment in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]:
        queue = (deployment.get("parameters") or {}).get("queue")
        if queue is not None:
            found[f"{deployment['entrypoint']} {deployment['name']}"] = queue
    assert {k: _queue_db(v) for k, v in found.items()} == {k: expected for k in found}
    readme = (ROOT / "README.md").read_text()
    assert "data/review" not in readme and "data/demo/review" not in readme
