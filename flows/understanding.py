"""``synth-understanding``: remove / add / replace edit pairs (mask -> inpaint -> paste -> harmonize).

    prefect deployment run synth-understanding/demo --param limit=16 --watch
    python -m flows synth-understanding --param source=demo:8     # in-process, no deployment

The defaults run on the built-in demo scenes with the classical CPU backends; ``prefect.yaml``
has a deployment with the learned ones (SAM, LaMa, PIH) and their options.
"""
from __future__ import annotations

from typing import Literal

from prefect import flow

from datagen.jobs import Backend, JobConfig
from flows.params import Execution, UnderstandingBackends

OPS = ("remove", "add", "replace")
from flows.tasks import serial_runner, synthesize


def job_config(source: str, out: str, name: str, images: str | None, manifest_dir: str, limit: int | None,
               seed: int, batch_size: int, backends: UnderstandingBackends, donors: str = "demo",
               ops: list[str] | None = None) -> JobConfig:
    builder_options: dict = {"donors": donors, "ops": list(ops or OPS)}
    if backends.quality_options:
        builder_options["quality"] = dict(backends.quality_options)
    return JobConfig(
        "understanding", source=source, out=out, name=name, images=images, manifest_dir=manifest_dir,
        limit=limit, seed=seed, batch_size=batch_size, builder_options=builder_options,
        backends={
            "masker": Backend(backends.masker, backends.masker_options),
            "inpainter": Backend(backends.inpainter, backends.inpainter_options),
            "harmonizer": Backend(backends.harmonizer, backends.harmonizer_options),
        },
    )


@flow(task_runner=serial_runner(), name="synth-understanding", log_prints=True)
def synth_understanding(
    source: str = "demo:48",
    out: str = "data/understanding",
    name: str = "understanding",
    images: str | None = None,
    manifest_dir: str = "manifests",
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    donors: str = "demo",
    ops: list[Literal["remove", "add", "replace"]] = ["remove", "add", "replace"],  # noqa: B006 (copied by pydantic)
    backends: UnderstandingBackends = UnderstandingBackends(),
    execution: Execution = Execution(),
) -> dict:
    """Understanding-scenario samples from ``source`` into shards under ``out`` and the manifest
    ``manifest_dir/name.json``.

    Args:
        source: catalog: ``demo:N[:SEED]`` (built-in scenes), a COCO instances JSON, or an image
            folder with ``annotations.json``.
        out: data folder for this dataset's shards (one dataset per folder).
        name: dataset name: the manifest's file name and the shard prefix.
        images: image folder of a COCO JSON (default: the JSON's folder).
        manifest_dir: where the manifest goes (the trainer reads every manifest in it).
        limit: use only the first N catalog records.
        seed: varies instance, donor, attribute and template choices (part of every key).
        batch_size: catalog records per task.
        donors: objects pasted by ``replace``: ``demo`` or a folder of RGBA cutouts ``CATEGORY_*.png``.
        ops: which of remove / add / replace to emit.
        backends: masker / inpainter / harmonizer and their options, quality-check options.
        execution: runner (default or dask), retries.
    """
    config = job_config(source, out, name, images, manifest_dir, limit, seed, batch_size, backends, donors, ops)
    return synthesize(config, execution)
