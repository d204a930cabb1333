"""``import-dataset``: a public dataset of SmartEdit's stage-2 mix into shards + manifest.

    prefect deployment run import-dataset/reasonseg --param source=/data/reason_seg/ReasonSeg --watch

The work is ``datagen.jobs`` with scenario ``import`` (the same batches and completion markers
as ``python -m datagen import``), so a run started by the CLI can be finished here.
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from datagen.jobs import JobConfig
from flows.params import Execution
from flows.tasks import serial_runner, synthesize


@flow(task_runner=serial_runner(), name="import-dataset", log_prints=True)
def import_dataset(
    dataset: str,
    source: str,
    out: str,
    name: str,
    images: str | None = None,
    split: str | None = None,
    options: dict[str, Any] | None = None,
    manifest_dir: str = "manifests",
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    image_format: str = "png",
    execution: Execution = Execution(),
) -> dict:
    """Import ``dataset`` (a ``datagen.importers`` name) from ``source`` (its folder, or the
    stuff JSON for COCO-Stuff) into shards under ``out`` and ``manifest_dir/name.json``.
    ``images``: the COCO image folder (RefCOCO family, COCO-Stuff); ``split``: one split only;
    ``options``: further importer options (``{"split_by": "umd"}``, ``{"things": true}``)."""
    from datagen.importers import importer_class

    importer_class(dataset)  # an unknown name fails here, naming the choices, before any task runs
    builder_options = {"dataset": dataset, **(options or {})}
    if split is not None:
        builder_options["split"] = split
    config = JobConfig("import", source=source, out=out, name=name, images=images, manifest_dir=manifest_dir,
                       limit=limit, seed=seed, batch_size=batch_size, image_format=image_format,
                       builder_options=builder_options)
    return synthesize(config, execution)
