"""``synth-perception``: "Mark the left cat in red" samples from a catalog's instance masks.

    prefect deployment run synth-perception/demo --watch
"""
from __future__ import annotations

from prefect import flow

from datagen.jobs import JobConfig
from flows.params import Execution
from flows.tasks import serial_runner, synthesize


@flow(task_runner=serial_runner(), name="synth-perception", log_prints=True)
def synth_perception(
    source: str = "demo:48",
    out: str = "data/perception",
    name: str = "perception",
    images: str | None = None,
    manifest_dir: str = "manifests",
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    opacity: float = 0.5,
    execution: Execution = Execution(),
) -> dict:
    """Perception samples (mask overlaid at ``opacity``) into shards under ``out`` and the manifest
    ``manifest_dir/name.json``. Parameters as in ``synth-understanding``; no model is involved."""
    config = JobConfig("perception", source=source, out=out, name=name, images=images, manifest_dir=manifest_dir,
                       limit=limit, seed=seed, batch_size=batch_size, builder_options={"opacity": opacity})
    return synthesize(config, execution)
