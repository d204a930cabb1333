"""``synth-reasoning``: world-knowledge edit candidates ("the object that can tell the time") into
the human review queue. Nothing reaches shards until reviewers approve it and ``publish-reviewed``
runs.

    prefect deployment run synth-reasoning/demo --watch
    python -m datagen review add-reviewer alice                   # prints alice's sign-in token
    python -m datagen review serve --db review-queue/queue.db     # then review in the browser
    prefect deployment run publish-reviewed/demo --watch          # approved -> shards + manifest
"""
from __future__ import annotations

from typing import Literal

from prefect import flow

from datagen.jobs import Backend, JobConfig
from flows.params import Detection, Execution, ReasoningBackends, catalog_images, with_detector, with_weights
from flows.tasks import serial_runner, synthesize


@flow(task_runner=serial_runner(), name="synth-reasoning", log_prints=True)
def synth_reasoning(
    source: str = "demo:48",
    queue: str = "review-queue/queue.db",
    out: str = "data/reasoning-work",
    name: str = "reasoning",
    images: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    batch_size: int = 8,
    donors: str = "demo",
    ops: list[Literal["remove", "recolor", "replace", "addon"]] | None = None,
    candidates: int | None = None,
    knowledge: str | None = None,
    backends: ReasoningBackends = ReasoningBackends(),
    masker_weights: str | None = None,
    editor_weights: str | None = None,
    detection: Detection = Detection(),
    execution: Execution = Execution(),
) -> dict:
    """Reasoning candidates from ``source`` into the review ``queue``.

    Args:
        source: catalog: ``demo:N[:SEED]``, a COCO instances JSON, or an image folder.
        queue: the review queue: a SQLite path, ``sqlite:///path`` or ``postgresql://...``.
        out: work folder for batch markers and the quarantine log (candidates go to the queue).
        name: job name (batch prefixes, artifact keys).
        images: image folder of a COCO JSON.
        limit: use only the first N catalog records.
        seed: varies descriptions, edits and inpainting seeds (part of every key).
        batch_size: catalog records per task.
        donors: objects pasted by ``replace`` with the classical editor: ``demo`` or a folder.
        ops: subset of remove / recolor / replace / addon (default: all the editor can do).
        candidates: edits per case with the ``sd`` editor (default 3; classical makes 1).
        knowledge: JSON file extending the built-in world-knowledge table.
        backends: masker and editor (classical or sd) with their options.
        masker_weights: local weights of a learned masker (sam: its checkpoint file).
        editor_weights: local weights of a learned editor (sd: the diffusers model folder).
        detection: categories to detect with a local open-vocabulary detector, for a ``source``
            folder of unannotated images (empty: the catalog's annotations).
        execution: runner (default or dask), retries.
    """
    options = {"donors": donors, "ops": ops, "candidates": candidates, "knowledge": knowledge}
    config = JobConfig(
        "reasoning", source=source, out=out, name=name, images=catalog_images(source, images), limit=limit, seed=seed,
        batch_size=batch_size, queue=queue, builder_options={k: v for k, v in options.items() if v is not None},
        backends=with_detector(
            {"masker": Backend(backends.masker, with_weights("masker", backends.masker, backends.masker_options,
                                                             masker_weights)),
             "editor": Backend(backends.editor, with_weights("editor", backends.editor, backends.editor_options,
                                                             editor_weights))}, detection),
    )
    return synthesize(config, execution)
