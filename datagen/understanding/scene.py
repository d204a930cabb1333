"""Scene-level steps of the understanding builder that need no backend.

* ``record_problem``: record-level reasons to skip (bad image, too few instances, broken box/mask);
* ``with_masks``: fill masker masks into box-only instances so referring expressions see them;
* ``usable_refs``: drop expressions that truncation makes untrue;
* ``find_anchor``: the remaining instance an "add" instruction is phrased against;
* ``reflection_index``: the reflection of an instance in a mirror, when the source says so;
* ``restrict_to``: keep an edit inside the pixels it may change.

Images ``HxWx3 uint8 RGB``, masks ``HxW bool``, boxes ``XYXY`` float.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from datagen.instructions.referring import Referring, anchor_phrase, relation_to
from datagen.quality import bbox_slices
from datagen.schema import ImageRecord, Instance
from datagen.schema import record_problem as check_record



def record_problem(record: ImageRecord) -> tuple[str, str] | None:
    """Record-level reasons to skip, or None: an understanding edit needs two instances (one to
    name against, one to anchor an addition to)."""
    return check_record(record, min_instances=2)


def has_repeated_category(record: ImageRecord) -> bool:
    """True when some category has two or more instances (the paper's understanding case)."""
    seen: set[str] = set()
    for inst in record.instances:
        if inst.category in seen:
            return True
        seen.add(inst.category)
    return False


def with_masks(record: ImageRecord, masks: np.ndarray) -> ImageRecord:
    """The record with masker masks filled in where none was annotated, so referring expressions
    (size by mask area, colour of the masked pixels) see the same object the edit removes."""
    instances = [inst if inst.mask is not None else replace(inst, mask=masks[k]) for k, inst in enumerate(record.instances)]
    return replace(record, instances=instances)


def usable_refs(record: ImageRecord, inst: Instance, refs: list[Referring], truncated: set[str]) -> list[Referring]:
    """Drop ``size`` when any instance of the category is cut by the frame (visible != real size)."""
    if any(i.id in truncated for i in record.instances if i.category == inst.category):
        return [r for r in refs if r.attribute != "size"]
    return list(refs)


def find_anchor(record: ImageRecord, removed: Instance) -> tuple[Instance, str, str] | None:
    """A remaining instance to phrase the addition against: ``(anchor, relation, phrase)``."""
    def centre(i: Instance) -> tuple[float, float]:
        return (i.box[0] + i.box[2]) / 2.0, (i.box[1] + i.box[3]) / 2.0

    mirrored = bool(removed.attributes.get("in_mirror", False))
    cx, cy = centre(removed)
    gone = {removed.id}  # removing an object removes its reflection with it
    reflection = reflection_index(record, removed)
    if reflection is not None:
        gone.add(record.instances[reflection].id)
    others = [i for i in record.instances
              if i.id not in gone and bool(i.attributes.get("in_mirror", False)) == mirrored]
    others.sort(key=lambda i: (i.category != removed.category, (centre(i)[0] - cx) ** 2 + (centre(i)[1] - cy) ** 2))
    for other in others:
        relation = relation_to(record, removed.id, other.id)
        if relation is None:
            continue
        phrase = anchor_phrase(record, other.id, ignore=gone)
        if phrase is not None:
            return other, relation, phrase
    return None


def reflection_index(record: ImageRecord, inst: Instance) -> int | None:
    """Index in ``record.instances`` of the reflection that shows ``inst`` (an instance whose
    ``attributes["reflection_of"]`` is ``inst.id``), or None."""
    return next((k for k, i in enumerate(record.instances)
                 if i.attributes.get("reflection_of") == inst.id and i.id != inst.id), None)


def restrict_to(edited: np.ndarray, original: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``edited`` inside ``allowed`` (HxW bool), ``original`` everywhere else (HxWx3 uint8)."""
    out = original.copy()
    ys, xs = bbox_slices(allowed, 0)
    out[ys, xs] = np.where(allowed[ys, xs, None], edited[ys, xs], original[ys, xs])
    return out
