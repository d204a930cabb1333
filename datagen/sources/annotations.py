"""Turning one instance annotation (box and/or COCO-style segmentation) into an ``Instance``.

Shared by the COCO and folder catalogs. Masks are decoded with pycocotools; boxes come in as
XYXY float pixels. A broken annotation raises ``InstanceProblem`` with a stable reason code; the
catalog then drops that one instance, keeps the rest of the image, and lists the drop in
``record.meta["dropped_instances"]`` (``[{"id", "reason", "detail"}]``) so runs can count it:

* ``bad_box``: non-finite, no area, or more than ``BOX_TOLERANCE`` pixels outside the image
  (boxes within the tolerance are clipped: exporters often round a box edge past the border);
* ``empty_polygon``: no polygon with at least 3 points, or one that covers no pixel;
* ``bad_polygon``: a vertex absurdly far outside the image (more than one image size beyond
  it; rasterising such a polygon would allocate memory in proportion to its perimeter);
* ``bad_mask``: an RLE whose size differs from the image or whose run lengths do not add up to
  height x width, or a mask that covers no pixel;
* ``unknown_category``: a category the catalog does not define;
* ``bad_attribute``: an attribute the instruction writers read holds a value they cannot use
  (``color`` must be one of the basic colour names of ``datagen.instructions.colors``,
  ``in_mirror`` a boolean); ``attributes`` itself must be an object. Other attribute keys are
  kept as facts if they hold JSON scalars or lists of them.

Segmentation forms accepted (as in COCO): a list of polygons ``[[x0, y0, x1, y1, ...], ...]``,
an uncompressed RLE ``{"size": [h, w], "counts": [int, ...]}`` or a compressed RLE with a string
``counts``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from datagen.instructions.colors import COLOR_NAMES
from datagen.schema import Instance

# Pixels a box may overshoot the image before it counts as broken rather than rounded.
BOX_TOLERANCE = 1.0


class InstanceProblem(ValueError):
    """One annotation cannot be used; ``reason`` is a stable code (see the module docstring)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# Spellings of a colour name that mean one of ``COLOR_NAMES``.
_COLOR_SPELLINGS = {"grey": "gray"}


def checked_attributes(attributes: Any) -> dict:
    """Validate an instance's ``attributes`` object; return a normalised copy.

    ``color``: one of ``COLOR_NAMES`` (case and surrounding blanks ignored; ``grey`` = ``gray``);
    ``in_mirror``: ``true`` / ``false`` (0 / 1 accepted). Any other key: a JSON scalar or a list of
    scalars. Raises ``InstanceProblem('bad_attribute')`` naming the key and what it must be.
    """
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise InstanceProblem("bad_attribute", f"attributes must be an object, got {type(attributes).__name__}")
    out = {}
    for key, value in attributes.items():
        if key == "color":
            name = _COLOR_SPELLINGS.get(value.strip().lower(), value.strip().lower()) if isinstance(value, str) else None
            if name not in COLOR_NAMES:
                raise InstanceProblem("bad_attribute", f"color must be one of {', '.join(COLOR_NAMES)}; got {value!r}")
            out[key] = name
        elif key == "in_mirror":
            if not (isinstance(value, bool) or (type(value) is int and value in (0, 1))):
                raise InstanceProblem("bad_attribute", f"in_mirror must be true or false; got {value!r}")
            out[key] = bool(value)
        elif _is_fact(value) or (isinstance(value, list) and all(_is_fact(v) for v in value)):
            out[str(key)] = value
        else:
            raise InstanceProblem("bad_attribute", f"attribute {key!r} must be a string, number, boolean or a list "
                                                    f"of them; got {type(value).__name__}")
    return out


def _is_fact(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value))


def dropped_entry(instance_id: str, problem: InstanceProblem, category: str | None = None) -> dict:
    """The ``record.meta["dropped_instances"]`` item for a dropped annotation. ``category``: the
    (known) category it named, if any: the object is still in the picture, so referring
    expressions for that category cannot be trusted (``datagen.instructions.referring``)."""
    entry = {"id": instance_id, "reason": problem.reason, "detail": problem.detail}
    if category is not None:
        entry["category"] = category
    return entry


def checked_box(box: Any, hw: tuple[int, int], tolerance: float = BOX_TOLERANCE) -> tuple[float, float, float, float]:
    """Validate an XYXY box against image size ``hw = (H, W)``; clip overshoots up to
    ``tolerance`` pixels. Raises ``InstanceProblem('bad_box')``."""
    if not isinstance(box, (list, tuple, np.ndarray)):
        raise InstanceProblem("bad_box", f"box must be a list of 4 numbers, got {box!r}")
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise InstanceProblem("bad_box", f"box must be 4 numbers, got {box!r}") from exc
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise InstanceProblem("bad_box", f"non-finite coordinate in {box!r}")
    h, w = hw
    if x0 < -tolerance or y0 < -tolerance or x1 > w + tolerance or y1 > h + tolerance:
        raise InstanceProblem("bad_box", f"box {[x0, y0, x1, y1]} lies outside the {w}x{h} image")
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
    if x1 <= x0 or y1 <= y0:
        raise InstanceProblem("bad_box", f"box {[x0, y0, x1, y1]} has no area")
    return (x0, y0, x1, y1)


def xywh_to_xyxy(bbox: Any) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` -> XYXY. Raises ``InstanceProblem('bad_box')`` on a malformed list."""
    if not isinstance(bbox, (list, tuple)):
        raise InstanceProblem("bad_box", f"bbox must be a list [x, y, w, h], got {bbox!r}")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError) as exc:
        raise InstanceProblem("bad_box", f"bbox must be 4 numbers [x, y, w, h], got {bbox!r}") from exc
    return (x, y, x + w, y + h)


def box_from_mask(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight XYXY box of an ``HxW bool`` mask, pixel edges: a pixel at column c spans [c, c+1)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def _compressed_rle_total(counts: str) -> int | None:
    """Sum of the run lengths in COCO's compressed RLE string; None if the string is malformed.

    pycocotools' C decoder trusts the runs and reads uninitialised memory when they fall short of
    h*w, so the total is checked here before decoding (the same 6-bit, delta-coded scheme).
    """
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts):
                return None
            c = ord(counts[pos]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            pos += 1
            shift += 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            return None
        runs.append(value)
    return sum(runs)


def _rle_size(rle: dict) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in rle["size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InstanceProblem("bad_mask", f"RLE needs a size [h, w], got {rle.get('size')!r}") from exc
    return h, w


def rle_to_mask(rle: dict, hw: tuple[int, int]) -> np.ndarray:
    """Decode a COCO RLE (compressed or not) to an ``HxW bool`` mask of size ``hw``."""
    h, w = _rle_size(rle)
    if (h, w) != tuple(hw):
        raise InstanceProblem("bad_mask", f"RLE size {[h, w]} differs from the image's {list(hw)}")
    counts = rle.get("counts")
    if isinstance(counts, (bytes, bytearray)):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        total = _compressed_rle_total(counts)
        encoded = {"size": [h, w], "counts": counts.encode("ascii", errors="replace")}
    elif isinstance(counts, list) and all(isinstance(c, int) and c >= 0 for c in counts):
        total = sum(counts)
        encoded = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        raise InstanceProblem("bad_mask", "RLE counts must be a string or a list of non-negative ints")
    if total != h * w:
        raise InstanceProblem("bad_mask", f"RLE runs cover {total} pixels, the image has {h * w}")
    return mask_utils.decode(encoded).astype(bool)


def _polygon_rings(polygons: list) -> list[list[float]]:
    rings = []
    for ring in polygons:
        if not isinstance(ring, (list, tuple)):
            continue
        try:
            flat = [float(v) for v in ring]
        except (TypeError, ValueError):
            continue
        if len(flat) >= 6 and len(flat) % 2 == 0 and all(math.isfinite(v) for v in flat):
            rings.append(flat)
    return rings


def polygons_to_mask(polygons: list, hw: tuple[int, int]) -> np.ndarray:
    """Rasterise COCO polygons (``[[x0, y0, x1, y1, ...], ...]``, pixel coordinates) to HxW bool."""
    rings = _polygon_rings(polygons)
    if not rings:
        raise InstanceProblem("empty_polygon", "no polygon with at least 3 finite points")
    h, w = hw
    reach = max(h, w)
    for ring in rings:
        xs, ys = ring[0::2], ring[1::2]
        if min(xs) < -reach or min(ys) < -reach or max(xs) > w + reach or max(ys) > h + reach:
            raise InstanceProblem("bad_polygon", f"a vertex lies far outside the {w}x{h} image")
    mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(rings, h, w))).astype(bool)
    if not mask.any():
        raise InstanceProblem("empty_polygon", "the polygon covers no pixel of the image")
    return mask


def segmentation_to_mask(segmentation: Any, hw: tuple[int, int]) -> np.ndarray:
    """Any COCO segmentation form -> ``HxW bool``; raises ``InstanceProblem``."""
    if isinstance(segmentation, dict):
        mask = rle_to_mask(segmentation, hw)
        if not mask.any():
            raise InstanceProblem("bad_mask", "the RLE mask covers no pixel")
        return mask
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, hw)
    raise InstanceProblem("bad_mask", f"segmentation must be polygons or RLE, got {type(segmentation).__name__}")


def mask_to_rle(mask: np.ndarray) -> dict:
    """``HxW bool`` -> compressed COCO RLE with a JSON-friendly string ``counts``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def make_instance(
    instance_id: str,
    category: str | None,
    hw: tuple[int, int],
    *,
    box_xyxy: Any = None,
    segmentation: Any = None,
    mask: np.ndarray | None = None,
    attributes: Any = None,
    known_categories: set[str] | None = None,
) -> Instance:
    """Build a validated ``Instance`` for an image of size ``hw = (H, W)``.

    ``box_xyxy``: XYXY pixels or None (then the mask's tight box is used). ``segmentation``: any
    COCO form, or ``mask`` an HxW bool array, or neither (box-only instance, ``mask=None``). ``known_categories``: when given, other
    category names are ``unknown_category``. Raises ``InstanceProblem``.
    """
    if not category or not isinstance(category, str):
        raise InstanceProblem("unknown_category", f"instance has no category name ({category!r})")
    if known_categories is not None and category not in known_categories:
        raise InstanceProblem("unknown_category", f"category {category!r} is not defined")
    if mask is not None:
        if mask.shape != tuple(hw):
            raise InstanceProblem("bad_mask", f"mask shape {mask.shape} differs from the image's {tuple(hw)}")
        if not mask.any():
            raise InstanceProblem("bad_mask", "the mask covers no pixel")
        mask = mask.astype(bool, copy=False)
    elif segmentation is not None:
        mask = segmentation_to_mask(segmentation, hw)
    if box_xyxy is None:
        if mask is None:
            raise InstanceProblem("bad_box", "instance has neither a box nor a segmentation")
        box_xyxy = box_from_mask(mask)
    box = checked_box(box_xyxy, hw)
    return Instance(instance_id, category, box, mask, checked_attributes(attributes))
