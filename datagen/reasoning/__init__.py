"""Reasoning-scenario candidates: world-knowledge descriptions, edits, the human review queue.

* ``ReasoningBuilder`` (``builder``): the builder; its module docstring gives the pipeline and
  every skip reason.
* ``build_editor`` / ``ClassicalEditor`` / ``SdEditor`` (``editors``): how an object is removed,
  recoloured, replaced or given an add-on.
* ``enqueue`` / ``fill_queue`` / ``QueueWriter`` / ``queue_url`` / ``open_queue`` (``queue``):
  candidates into the review queue, grouped by case.
"""
from datagen.reasoning.builder import ReasoningBuilder
from datagen.reasoning.editors import (
    EDITORS, ClassicalEditor, EditFailed, EditRequest, EditResult, SdEditor, build_editor,
)
from datagen.reasoning.queue import (
    EnqueueStats, QueueWriter, enqueue, fill_queue, open_queue, queue_url, review_hint,
)

__all__ = [
    "EDITORS", "ClassicalEditor", "EditFailed", "EditRequest", "EditResult", "EnqueueStats", "QueueWriter",
    "ReasoningBuilder", "SdEditor", "build_editor", "enqueue", "fill_queue", "open_queue",
    "queue_url", "review_hint",
]
