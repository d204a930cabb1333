"""The data contracts every part of the pipeline shares.

* ``EditSample`` (DESIGN.md contract 1): one edit pair. Images are ``HxWx3 uint8 RGB``; the mask
  is ``HxW bool`` (True = region the edit may change). ``key`` is content-derived (see
  ``sample_key``) so a rerun with the same inputs and settings yields the same key.
* ``Instance`` / ``ImageRecord``: what a catalog yields: an image with annotated object
  instances. Boxes are ``XYXY`` in pixels (float), ``x`` to the right, ``y`` down.
* ``Quarantined``: a record a source or builder could not use, with a machine-readable reason.

Validation raises ``SampleError`` with one sentence saying what is wrong; nothing is silently
coerced (a float image is an error, not something we rescale).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCENARIOS = ("understanding", "reasoning", "perception", "editing")
# "edit": an imported edit whose kind the source does not say (InstructPix2Pix, MagicBrush);
# "keep": the instruction names nothing in the image (gRefCOCO no-target), so tgt == src and the
# mask is empty.
OPS = ("replace", "add", "remove", "recolor", "mark", "addon", "edit", "keep")
EMPTY_MASK_OPS = ("keep",)
REVIEW_STATUSES = ("pending", "approved", "rejected", "conflicted")
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class SampleError(ValueError):
    """An ``EditSample`` or catalog record breaks the contract."""


def sample_key(*parts: Any) -> str:
    """Stable key from the inputs that determine a sample.

    ``parts`` are JSON-serialisable values (source id, instance id, op, backend settings, seed...).
    Returns 24 lowercase hex characters: no dots (a WebDataset key ends at the first dot) and
    identical across processes and reruns.
    """
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:24]


def check_key(key: Any) -> None:
    """Raise ``SampleError`` unless ``key`` can name a WebDataset sample (no dots, no slashes)."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise SampleError(
            f"key {key!r} must be 1-128 characters of letters, digits, '_' or '-' (no dots)"
        )


def check_image(name: str, image: Any) -> None:
    """Raise ``SampleError`` unless ``image`` is an ``HxWx3 uint8`` array."""
    if not isinstance(image, np.ndarray):
        raise SampleError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise SampleError(f"{name} must have shape HxWx3 (RGB), got {image.shape}")
    if image.dtype != np.uint8:
        raise SampleError(f"{name} must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise SampleError(f"{name} is empty: shape {image.shape}")


def check_mask(name: str, mask: Any, hw: tuple[int, int], *, allow_empty: bool = False) -> None:
    """Raise ``SampleError`` unless ``mask`` is an ``HxW bool`` array matching ``hw``."""
    if not isinstance(mask, np.ndarray):
        raise SampleError(f"{name} must be a numpy array, got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise SampleError(f"{name} must be bool, got {mask.dtype}")
    if mask.shape != tuple(hw):
        raise SampleError(f"{name} shape {mask.shape} does not match the image's {tuple(hw)}")
    if not allow_empty and not mask.any():
        raise SampleError(f"{name} is empty (no True pixel)")


def check_box(box: Any, hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """Validate an XYXY pixel box against image size ``hw=(H, W)``; return it as floats."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise SampleError(f"box must be 4 numbers XYXY, got {box!r}") from exc
    h, w = hw
    if not all(np.isfinite(v) for v in (x0, y0, x1, y1)):
        raise SampleError(f"box has a non-finite coordinate: {box!r}")
    if x1 <= x0 or y1 <= y0:
        raise SampleError(f"box has no area (XYXY expected): {box!r}")
    if x0 < 0 or y0 < 0 or x1 > w + 0.5 or y1 > h + 0.5:
        raise SampleError(f"box {box!r} lies outside the {w}x{h} image")
    return (x0, y0, x1, y1)


@dataclass
class EditSample:
    """One edit pair; see DESIGN.md contract 1.

    ``src``/``tgt``: HxWx3 uint8 RGB, same shape. ``mask``: HxW bool, True where the edit may
    change pixels. ``paraphrases``: further instructions with the same meaning (the trainer samples
    one of ``[instruction, *paraphrases]`` per step).
    """

    key: str
    src: np.ndarray
    tgt: np.ndarray
    mask: np.ndarray
    instruction: str
    scenario: str
    op: str
    target: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    quality: dict = field(default_factory=dict)
    review: dict | None = None
    paraphrases: list[str] = field(default_factory=list)

    def validate(self) -> "EditSample":
        """Raise ``SampleError`` on any contract violation; return self for chaining."""
        check_key(self.key)
        check_image("src", self.src)
        check_image("tgt", self.tgt)
        if self.src.shape != self.tgt.shape:
            raise SampleError(f"src shape {self.src.shape} differs from tgt shape {self.tgt.shape}")
        check_mask("mask", self.mask, self.src.shape[:2], allow_empty=self.op in EMPTY_MASK_OPS)
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise SampleError("instruction must be a non-empty string")
        if self.scenario not in SCENARIOS:
            raise SampleError(f"unknown scenario {self.scenario!r}; expected one of {SCENARIOS}")
        if self.op not in OPS:
            raise SampleError(f"unknown op {self.op!r}; expected one of {OPS}")
        for name in ("target", "provenance", "quality"):
            if not isinstance(getattr(self, name), dict):
                raise SampleError(f"{name} must be a dict")
        if self.review is not None:
            if not isinstance(self.review, dict) or self.review.get("status") not in REVIEW_STATUSES:
                raise SampleError(f"review must be None or a dict with status in {REVIEW_STATUSES}")
        if not all(isinstance(p, str) and p.strip() for p in self.paraphrases):
            raise SampleError("paraphrases must be non-empty strings")
        try:
            json.dumps(self.metadata())
        except (TypeError, ValueError) as exc:
            raise SampleError(f"metadata is not JSON-serialisable: {exc}") from exc
        return self

    def metadata(self) -> dict:
        """Everything except the arrays: the ``KEY.json`` member of a shard."""
        return {
            "key": self.key,
            "instruction": self.instruction,
            "paraphrases": list(self.paraphrases),
            "scenario": self.scenario,
            "op": self.op,
            "target": self.target,
            "provenance": self.provenance,
            "quality": self.quality,
            "review": self.review,
            "size": [int(self.src.shape[1]), int(self.src.shape[0])],
        }

    @classmethod
    def from_parts(cls, meta: dict, src: np.ndarray, tgt: np.ndarray, mask: np.ndarray) -> "EditSample":
        """Inverse of ``metadata()`` plus the decoded arrays."""
        return cls(
            key=meta["key"],
            src=src,
            tgt=tgt,
            mask=mask,
            instruction=meta["instruction"],
            scenario=meta["scenario"],
            op=meta["op"],
            target=meta.get("target", {}),
            provenance=meta.get("provenance", {}),
            quality=meta.get("quality", {}),
            review=meta.get("review"),
            paraphrases=list(meta.get("paraphrases", [])),
        )


@dataclass
class Instance:
    """One annotated object in an ``ImageRecord``.

    ``box``: XYXY pixels. ``mask``: HxW bool of the record's image, or None when only a box is
    annotated (a masker then derives one). ``attributes``: optional facts such as
    ``{"in_mirror": True}`` or ``{"color": "red"}`` that referring expressions may use.
    """

    id: str
    category: str
    box: tuple[float, float, float, float]
    mask: np.ndarray | None = None
    attributes: dict = field(default_factory=dict)


@dataclass
class ImageRecord:
    """An image from a catalog with its instances. ``image``: HxWx3 uint8 RGB, EXIF-oriented.

    ``id`` is stable across runs (e.g. ``coco:val2017:139``, ``demo:s7:00012``) and is what
    sample keys are derived from.
    """

    id: str
    image: np.ndarray
    instances: list[Instance]
    source: str = ""
    meta: dict = field(default_factory=dict)

    def validate(self) -> "ImageRecord":
        check_image(f"record {self.id} image", self.image)
        hw = self.image.shape[:2]
        seen = set()
        for inst in self.instances:
            if inst.id in seen:
                raise SampleError(f"record {self.id}: duplicate instance id {inst.id!r}")
            seen.add(inst.id)
            if not inst.category:
                raise SampleError(f"record {self.id}: instance {inst.id} has no category")
            check_box(inst.box, hw)
            if inst.mask is not None:
                check_mask(f"record {self.id} instance {inst.id} mask", inst.mask, hw)
        return self


@dataclass
class Quarantined:
    """A record that could not be used. ``reason`` is a short stable code (``undecodable``,
    ``truncated``, ``oversized``, ``bad_box``, ``empty_polygon``, ``unknown_category``...) that runs
    count by; ``detail`` is the human sentence."""

    id: str
    reason: str
    detail: str = ""
    source: str = ""
    # ``record``: a whole record; ``annotation``: one annotation the catalog dropped from a record
    # that was kept (id ``RECORD#INSTANCE``); ``catalog``: an entry that belongs to no record
    # (an orphan annotation, an unusable category).
    level: str = "record"

    def to_dict(self) -> dict:
        out = {"id": self.id, "reason": self.reason, "detail": self.detail, "source": self.source}
        if self.level != "record":
            out["level"] = self.level
        return out


def record_problem(record: ImageRecord, *, min_instances: int = 1) -> tuple[str, str] | None:
    """Why a builder must skip ``record`` as a whole, as ``(reason, detail)``, or None.

    Reasons: ``bad_image`` (not HxWx3 uint8), ``no_instances``, ``one_instance`` (fewer than
    ``min_instances``), ``bad_box``, ``bad_mask``. Broken annotations skip the whole record:
    referring expressions compare every instance, so one unreadable instance can make "the left
    cat" wrong.
    """
    image = record.image
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        return "bad_image", f"image must be HxWx3 uint8, got {getattr(image, 'dtype', None)} {getattr(image, 'shape', None)}"
    if not record.instances:
        return "no_instances", "the record has no annotated instance"
    if len(record.instances) < min_instances:
        return "one_instance", f"{len(record.instances)} instance(s); this builder needs {min_instances}"
    hw = image.shape[:2]
    for inst in record.instances:
        try:
            check_box(inst.box, hw)
        except SampleError as exc:
            return "bad_box", f"instance {inst.id}: {exc}"
        if inst.mask is not None and (not isinstance(inst.mask, np.ndarray) or inst.mask.shape != hw):
            return "bad_mask", f"instance {inst.id}: mask shape {getattr(inst.mask, 'shape', None)} != image {hw}"
    return None
