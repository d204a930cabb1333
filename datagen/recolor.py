"""Classical recolour: give an object a new hue inside its mask while keeping its shading.

In HSV the hue carries the colour name and the value carries the shading (a shadowed flank, a
highlight, texture). ``recolor`` sets every masked pixel's hue to the target's, lifts saturation
so that a white or gray object takes the colour at all (``s' = floor + (1 - floor) * s``, which
keeps the object's own saturation contrast), and keeps value. Only a very dark object (median
value below ``dark_median``) gets one uniform gain on value: near-black pixels cannot show any hue,
and a single gain keeps the relative shading exactly.

Whether the result *reads* as the colour is checked with the same namer the referring expressions
use (``datagen.instructions.colors.color_name``): a dark object turned "yellow" reads brown, and
``recolor_named`` reports that so a caller can try another colour.

Images ``HxWx3 uint8 RGB``; masks ``HxW bool``; pixels outside the mask are returned unchanged.
"""
from __future__ import annotations

import cv2
import numpy as np

from datagen.instructions.colors import color_name

# Target hue (degrees) per colour name: the middle of each name's hue bucket in ``colors``.
HUES: dict[str, float] = {
    "red": 0.0, "orange": 28.0, "yellow": 56.0, "green": 120.0, "blue": 220.0, "purple": 272.0, "pink": 315.0,
}


def _bbox(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def recolor(image: np.ndarray, mask: np.ndarray, colour: str, *, saturation_floor: float = 0.6,
            dark_median: float = 0.35, lift_to: float = 0.55, max_gain: float = 2.5) -> np.ndarray:
    """``image`` (HxWx3 uint8) with the pixels under ``mask`` (HxW bool) turned ``colour`` (a key
    of ``HUES``); returns a new HxWx3 uint8 array, identical outside ``mask``."""
    if colour not in HUES:
        raise ValueError(f"colour must be one of {sorted(HUES)}, got {colour!r}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8, got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2] or mask.dtype != np.bool_:
        raise ValueError(f"mask must be HxW bool matching the image, got {mask.dtype} {mask.shape}")
    out = image.copy()
    if not mask.any():
        return out
    ys, xs = _bbox(mask)
    inside = mask[ys, xs]
    hsv = cv2.cvtColor(image[ys, xs].astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H deg, S/V in [0, 1]
    s, v = hsv[..., 1], hsv[..., 2]
    median = float(np.median(v[inside]))
    gain = 1.0 if median >= dark_median else min(lift_to / max(median, 1e-3), max_gain)
    new = np.stack([np.full_like(s, HUES[colour]), saturation_floor + (1.0 - saturation_floor) * s,
                    np.clip(v * gain, 0.0, 1.0)], axis=-1)
    rgb = np.clip(np.rint(cv2.cvtColor(new, cv2.COLOR_HSV2RGB) * 255.0), 0, 255).astype(np.uint8)
    region = out[ys, xs]
    region[inside] = rgb[inside]
    return out


def recolor_named(image: np.ndarray, mask: np.ndarray, colours, **options) -> tuple[np.ndarray, str] | None:
    """Try ``colours`` in order; return ``(recoloured image, colour)`` for the first whose result
    ``color_name`` reads as that colour, or None when none does."""
    for colour in colours:
        if colour not in HUES:
            continue
        out = recolor(image, mask, colour, **options)
        if color_name(out[mask]) == colour:
            return out, colour
    return None
