"""Prefect flows over ``datagen``: thin wrappers that batch, retry, resume and report.

Flows (deployed from ``prefect.yaml``; run in-process with ``python -m flows NAME``):

* ``synth-understanding`` (``flows.understanding``): remove / add / replace samples -> shards + manifest
* ``synth-perception`` (``flows.perception``): "Mark the left cat in red" samples -> shards + manifest
* ``synth-reasoning`` (``flows.reasoning``): world-knowledge edit candidates -> the review queue
* ``publish-reviewed`` (``flows.publish``): approved review-queue samples -> shards + manifest
* ``import-dataset`` (``flows.dataset_import``): a public dataset of the paper's mix -> shards + manifest

The work is ``datagen.jobs`` (shared with the CLI); ``flows.tasks`` adds batch tasks with retries,
resume and progress, ``flows.reporting`` the artifacts, ``flows.cluster`` the Dask runner option.
Importing this package imports no flow module (and no prefect): ``python -m flows --list`` is fast.
"""
