"""``synth-perception``: "Mark the left cat in red" samples from a catalog's instance masks.

    prefect deployment run synth-perception/demo --watch
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from datagen.jobs import Backend, JobConfig
from flows.params import Detection, Execution, MaskerName, catalog_images, with_detector
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
    detection: Detection = Detection(),
    masker: MaskerName | None = None,
    masker_options: dict[str, Any] | None = None,
    execution: Execution = Execution(),
) -> dict:
    """Perception samples ("Mark the left cat in red": the mask overlaid at ``opacity``) into
    shards under ``out`` and the manifest ``manifest_dir/name.json``; no model is involved.

    Args:
        source: catalog with instance masks: ``demo:N[:SEED]`` (built-in scenes), a COCO instances
            JSON, or an image folder with ``annotations.json``.
        out: data folder for this dataset's shards (one dataset per folder).
        name: dataset name: the manifest's file name and the shard prefix.
        images: image folder of a COCO JSON (default: the JSON's folder).
        manifest_dir: where the manifest goes (the trainer reads every manifest in it).
        limit: use only the first N catalog records.
        seed: varies attribute, template and mark colour choices (part of every key).
        batch_size: catalog records per task.
        opacity: how strongly the mark colour covers the object (0..1).
        detection: categories to detect with a local open-vocabulary detector, for a ``source``
            folder of unannotated images (empty: the catalog's annotations).
        masker: masks box-only instances (detected ones) with this backend (sam: pass its
            checkpoint in ``masker_options``); empty = such instances are skipped as ``no_mask``.
        masker_options: keyword options of the masker's builder.
        execution: runner (default or dask), retries.
    """
    config = JobConfig("perception", source=source, out=out, name=name, images=catalog_images(source, images),
                       manifest_dir=manifest_dir,
                       limit=limit, seed=seed, batch_size=batch_size, builder_options={"opacity": opacity},
                       backends=with_detector({"masker": Backend(masker, dict(masker_options or {}))} if masker else {},
                                              detection))
    return synthesize(config, execution)
