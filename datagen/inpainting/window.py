"""Where a fixed-resolution inpainting model looks: a window around the hole.

Learned inpainters work at a fixed size (SD: 512 px, MAT: multiples of 512). Running them on the
whole frame wastes compute on large images and shrinks the hole to a few latent pixels; running
them on a tight crop gives no context. Both backends therefore crop a window that holds the hole
plus some surrounding context, and paste the result back.

``Window`` coordinates are integer pixels in the full image: rows ``top:top+height``, columns
``left:left+width``; ``pad_bottom``/``pad_right`` extra rows/columns are appended when the model
needs a larger canvas than the image has.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    top: int
    left: int
    height: int
    width: int
    pad_bottom: int = 0
    pad_right: int = 0

    def crop(self, array: np.ndarray) -> np.ndarray:
        return array[self.top:self.top + self.height, self.left:self.left + self.width]

    def as_dict(self) -> dict:
        return asdict(self)


def hole_bbox(hole: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the True pixels, bottom/right exclusive. Hole must be non-empty."""
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def _place(center: float, size: int, limit: int) -> int:
    """Start of a ``size``-long span centred on ``center`` and kept inside ``[0, limit)``."""
    return int(min(max(round(center - size / 2), 0), limit - size))


def context_window(hole: np.ndarray, *, context: float, min_side: int) -> Window:
    """Square-ish window for SD: the hole's bbox grown by ``context`` x its longer side on every
    side, at least ``min_side`` px (so small holes keep the model's native scale), clipped to the
    image (a window larger than the image along an axis becomes the whole axis)."""
    h, w = hole.shape
    top, left, bottom, right = hole_bbox(hole)
    longest = max(bottom - top, right - left)
    side = max(int(math.ceil(longest * (1 + 2 * context))), min_side)
    wh, ww = min(side, h), min(side, w)
    return Window(_place((top + bottom) / 2, wh, h), _place((left + right) / 2, ww, w), wh, ww)


def tile_window(hole: np.ndarray, *, tile: int, context: int) -> Window:
    """Window whose padded sides are multiples of ``tile`` (MAT): the hole's bbox plus ``context``
    px per side, rounded up to whole tiles, cut from the image when it fits. Along an axis where it
    does not, the window is the whole axis, padded at the bottom/right to the next whole tile."""
    h, w = hole.shape
    top, left, bottom, right = hole_bbox(hole)
    wh, pad_h = _tiled_span(bottom - top + 2 * context, h, tile)
    ww, pad_w = _tiled_span(right - left + 2 * context, w, tile)
    return Window(_place((top + bottom) / 2, wh, h), _place((left + right) / 2, ww, w), wh, ww, pad_h, pad_w)


def _tiled_span(needed: int, size: int, tile: int) -> tuple[int, int]:
    """(span taken from the image, padding added) along one axis of ``size`` pixels."""
    span = tile * math.ceil(needed / tile)
    if span <= size:
        return span, 0
    return size, tile * math.ceil(size / tile) - size
