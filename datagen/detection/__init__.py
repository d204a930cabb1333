"""Detection stage: object instances from category prompts, for images nobody annotated.

Protocol (``Detector``)::

    detector.detect(images, prompts) -> list[Detections]

* ``images``: a list of HxWx3 uint8 RGB arrays (one forward pass per batch where the model allows).
* ``prompts``: category names, e.g. ``["cat", "dog", "cup"]``; a detection's ``category`` is one
  of them, verbatim.
* returns one ``Detections`` per image: ``boxes`` Nx4 float64 XYXY pixels of that image (x right,
  y down, clipped to the frame), ``scores`` N float64 in [0, 1], ``categories`` N prompt strings,
  sorted by score (highest first), after score thresholding and non-maximum suppression *across*
  prompts (one object found as "cat" and as "dog" stays once, under the better-scoring prompt).

Backends (``build_detector(name, **options)``), both ``transformers`` zero-shot detectors loaded
from a local folder (``save_pretrained`` layout) with ``local_files_only=True``:

* ``owlv2`` -- ``Owlv2ForObjectDetection`` + ``Owlv2Processor``.
* ``grounding_dino`` -- ``GroundingDinoForObjectDetection`` + ``GroundingDinoProcessor``.

Options of both: ``model_dir`` (folder, required), ``threshold=0.3`` (lowest score kept),
``nms_iou=0.5``, ``max_detections=20`` per image, ``min_box_px=4`` (shorter side of a kept box),
``batch_size=4``, ``device=None`` (cuda when available).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from datagen.backends import BackendUnavailable, Registry

__all__ = ["Detections", "Detector", "DETECTORS", "build_detector", "parse_prompts", "BackendUnavailable"]


@dataclass
class Detections:
    """Detections in one image: ``boxes`` Nx4 float64 XYXY pixels, ``scores`` N float64,
    ``categories`` N prompt strings; highest score first."""

    boxes: np.ndarray
    scores: np.ndarray
    categories: list[str]

    def __len__(self) -> int:
        return len(self.categories)

    def of(self, category: str) -> "Detections":
        """Only the detections of ``category``."""
        keep = [i for i, c in enumerate(self.categories) if c == category]
        return Detections(self.boxes[keep].reshape(-1, 4), self.scores[keep], [self.categories[i] for i in keep])


@runtime_checkable
class Detector(Protocol):
    name: str

    def detect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Detections]: ...

    def settings(self) -> dict: ...


DETECTORS = Registry("detection")


@DETECTORS.register("owlv2")
def _build_owlv2(**options: Any) -> Detector:
    from datagen.detection.zero_shot import ZeroShotDetector

    return ZeroShotDetector.from_pretrained(family="owlv2", **options)


@DETECTORS.register("grounding_dino")
def _build_grounding_dino(**options: Any) -> Detector:
    from datagen.detection.zero_shot import ZeroShotDetector

    return ZeroShotDetector.from_pretrained(family="grounding_dino", **options)


def build_detector(name: str, **options: Any) -> Detector:
    """Build the detection backend ``name`` (see the module docstring for its options)."""
    return DETECTORS.build(name, **options)


def parse_prompts(text: str | Sequence[str]) -> list[str]:
    """``"cat, dog,cup"`` (or a list) -> ``["cat", "dog", "cup"]``: stripped, unique, in order.
    Raises ``ValueError`` when no category is left or a prompt contains a '.' (Grounding DINO
    separates prompts with it)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    prompts = list(dict.fromkeys(p.strip() for p in items if p and p.strip()))
    if not prompts:
        raise ValueError(f"--detect needs at least one category name, got {text!r}")
    bad = [p for p in prompts if "." in p]
    if bad:
        raise ValueError(f"--detect category names may not contain '.', got {bad}")
    return prompts


def nms_across_prompts(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by class-agnostic NMS (``torchvision.ops.nms``), highest score first.
    ``boxes`` Nx4 XYXY float, ``scores`` N float."""
    import torch
    from torchvision.ops import nms

    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = nms(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(scores, dtype=torch.float32), float(iou))
    return keep.numpy().astype(np.int64)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two XYXY boxes (0 when either has no area)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
