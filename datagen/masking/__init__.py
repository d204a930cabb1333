"""Masking stage: object masks from box prompts.

Protocol (``Masker``)::

    masker.masks(image, boxes, annotated=None) -> NxHxW bool

* ``image``: HxWx3 uint8 RGB.
* ``boxes``: Nx4 float XYXY pixels (x right, y down), one per wanted object.
* ``annotated``: optional list of N entries, each an HxW bool mask from the catalog or ``None``.
* returns one HxW bool mask per box (True = object). A row may be all False when a segmenter
  finds nothing in its box; callers count that as a skip (``empty_mask``), never crash on it.

Batches across records: ``masks_batch(masker, images, boxes, annotated=None)`` (module level)
calls the backend's own ``masker.masks_batch(images, boxes, annotated)`` when it has one (``sam``
encodes several images in one forward pass) and loops over ``masks`` otherwise; either way the
result equals calling ``masks`` per image.

Backends (``build_masker(name, **options)``):

* ``annotation`` -- the catalog's own masks; a missing one is an error. No options.
* ``grabcut`` -- OpenCV GrabCut initialised from each box, largest component kept; CPU, no weights.
  Options: ``iterations=5``, ``margin=0.25``, ``prefer_annotated=True``.
* ``sam`` -- segment-anything from a local checkpoint. Options: ``checkpoint`` (path, required),
  ``model_type="vit_h"|"vit_l"|"vit_b"|"custom"``, ``sam_config`` (dict or JSON path, only with
  ``custom``), ``device=None``, ``multimask=False``, ``prefer_annotated=False``,
  ``precision=None`` ("fp32"/"fp16"/"bf16"; fp32 unless asked, CUDA only for half),
  ``image_batch=4`` (images per encoder pass in ``masks_batch``).
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from datagen.backends import BackendUnavailable, Registry

__all__ = ["Masker", "MASKERS", "build_masker", "masks_batch", "check_boxes", "BackendUnavailable"]


@runtime_checkable
class Masker(Protocol):
    name: str

    def masks(
        self, image: np.ndarray, boxes: np.ndarray, annotated: Sequence[np.ndarray | None] | None = None
    ) -> np.ndarray: ...

    def settings(self) -> dict: ...


MASKERS = Registry("masking")


@MASKERS.register("annotation")
def _build_annotation(**options: Any) -> Masker:
    from datagen.masking.annotation import AnnotationMasker

    return AnnotationMasker(**options)


@MASKERS.register("grabcut")
def _build_grabcut(**options: Any) -> Masker:
    from datagen.masking.grabcut import GrabCutMasker

    return GrabCutMasker(**options)


@MASKERS.register("sam")
def _build_sam(**options: Any) -> Masker:
    from datagen.masking.sam import SamMasker

    return SamMasker.from_checkpoint(**options)


def build_masker(name: str, **options: Any) -> Masker:
    """Build the masking backend ``name`` (see the module docstring for its options)."""
    return MASKERS.build(name, **options)


def masks_batch(masker: Masker, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                annotated: Sequence[Sequence[np.ndarray | None] | None] | None = None) -> list[np.ndarray]:
    """Masks for several images: ``images`` B x (HxWx3 uint8), ``boxes`` B x (Nx4 float XYXY),
    ``annotated`` None or B entries (each None or N optional HxW bool masks) -> B x (NxHxW bool).

    Uses ``masker.masks_batch`` when the backend batches across images, else one ``masks`` call
    per image."""
    if len(boxes) != len(images) or (annotated is not None and len(annotated) != len(images)):
        raise ValueError(f"masks_batch got {len(images)} images, {len(boxes)} box arrays and "
                         f"{'no' if annotated is None else len(annotated)} annotation lists; pass one per image")
    per_image = list(annotated) if annotated is not None else [None] * len(images)
    batched = getattr(masker, "masks_batch", None)
    if batched is not None:
        return list(batched(list(images), list(boxes), per_image))
    return [masker.masks(image, b, a) for image, b, a in zip(images, boxes, per_image)]


def check_masker_inputs(image: Any, boxes: Any, annotated: Sequence[np.ndarray | None] | None
                        ) -> tuple[tuple[int, int], np.ndarray, list]:
    """What every ``Masker.masks`` checks first: ``image`` HxWx3 uint8 RGB, ``boxes`` Nx4 XYXY,
    ``annotated`` None or N optional HxW bool masks. Returns ``(hw, boxes as Nx4 float64 clipped to
    the image, annotated as a list of N entries)``; raises ``ValueError`` on a contract violation."""
    from datagen.backends import check_rgb

    check_rgb(image)
    hw = image.shape[:2]
    boxes = check_boxes(boxes, hw)
    return hw, boxes, check_annotated(annotated, len(boxes), hw)


def check_boxes(boxes: Any, hw: tuple[int, int]) -> np.ndarray:
    """Return ``boxes`` as an Nx4 float64 XYXY array clipped to the image, or raise ``ValueError``."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(arr).all():
        raise ValueError("boxes contain a non-finite coordinate")
    h, w = hw
    arr = arr.copy()
    arr[:, [0, 2]] = arr[:, [0, 2]].clip(0, w)
    arr[:, [1, 3]] = arr[:, [1, 3]].clip(0, h)
    if (arr[:, 2] <= arr[:, 0]).any() or (arr[:, 3] <= arr[:, 1]).any():
        raise ValueError(f"every box must have area inside the {w}x{h} image (XYXY expected): {arr.tolist()}")
    return arr


def check_annotated(annotated: Sequence[np.ndarray | None] | None, n: int, hw: tuple[int, int]) -> list:
    """Normalise ``annotated`` to a list of N entries (HxW bool or None), or raise ``ValueError``."""
    if annotated is None:
        return [None] * n
    items = list(annotated)
    if len(items) != n:
        raise ValueError(f"annotated has {len(items)} entries for {n} boxes")
    for i, m in enumerate(items):
        if m is not None and (m.shape != tuple(hw) or m.dtype != np.bool_):
            raise ValueError(f"annotated[{i}] must be an HxW bool mask of shape {tuple(hw)}, got {m.dtype} {m.shape}")
    return items

