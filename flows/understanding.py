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
from flows.params import Detection, Execution, UnderstandingBackends, catalog_images, with_detector, with_weights

OPS = ("remove", "add", "replace")
from flows.tasks import serial_runner, synthesize


def job_config(source: str, out: str, name: str, images: str | None, manifest_dir: str, limit: int | None,
               seed: int, batch_size: int, backends: UnderstandingBackends, donors: str = "demo",
               ops: list[str] | None = None, weights: dict[str, str | None] | None = None,
               detection: Detection | None = None) -> JobConfig:
    """The job a ``synth-understanding`` run does; ``weights``: per stage (``masker`` /
    ``inpainter`` / ``harmonizer``) a local weight path for its learned backend, or None;
    ``detection``: instances from a detector instead of the catalog's annotations."""
    weights = weights or {}
    builder_options: dict = {"donors": donors, "ops": list(ops or OPS)}
    if backends.quality_options:
        builder_options["quality"] = dict(backends.quality_options)
    return JobConfig(
        "understanding", source=source, out=out, name=name, images=images, manifest_dir=manifest_dir,
        limit=limit, seed=seed, batch_size=batch_size, builder_options=builder_options,
        backends=with_detector({
            stage: Backend(getattr(backends, stage),
                           with_weights(stage, getattr(backends, stage), getattr(backends, f"{stage}_options"),
                                        weights.get(stage)))
            for stage in ("masker", "inpainter", "harmonizer")
        }, detection or Detection()),
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
    masker_weights: str | None = None,
    inpainter_weights: str | None = None,
    harmonizer_weights: str | None = None,
    detection: Detection = Detection(),
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
        masker_weights: local weights of a learned masker (sam: its checkpoint file).
        inpainter_weights: local weights of a learned inpainter (lama/mat: checkpoint file; sd: model folder).
        harmonizer_weights: local weights of a learned harmonizer (pih: its checkpoint file).
        detection: categories to detect with a local open-vocabulary detector, for a ``source``
            folder of unannotated images (empty: the catalog's annotations).
        execution: runner (default or dask), retries.
    """
    weights = {"masker": masker_weights, "inpainter": inpainter_weights, "harmonizer": harmonizer_weights}
    config = job_config(source, out, name, catalog_images(source, images), manifest_dir, limit, seed, batch_size,
                        backends, donors, ops, weights, detection)
    return synthesize(config, execution)
