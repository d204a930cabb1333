"""The mask outline the reviewer toggles over both images (key ``m``).

Drawn once at enqueue time as a transparent RGBA PNG the size of the image, so the browser only
stacks two ``<img>`` elements: no canvas work per item, and it scales with the image.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

CORE_RGB = (255, 212, 0)  # bright yellow line...
HALO_RGB = (0, 0, 0)      # ...with a dark halo, so it reads on light and dark pictures alike


def _erode(mask: np.ndarray) -> np.ndarray:
    """One step of 4-neighbour erosion; pixels outside the image count as background."""
    padded = np.pad(mask, 1, constant_values=False)
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1]
            & padded[1:-1, :-2] & padded[1:-1, 2:])


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        padded = np.pad(mask, 1, constant_values=False)
        mask = (padded[1:-1, 1:-1] | padded[:-2, 1:-1] | padded[2:, 1:-1]
                | padded[1:-1, :-2] | padded[1:-1, 2:])
    return mask


def outline_rgba(mask: np.ndarray) -> np.ndarray:
    """``HxW bool`` mask -> ``HxWx4 uint8`` image: a line along the mask's border, transparent elsewhere.

    The line is about 0.5 % of the longer side thick (at least 1 px) so it stays visible when a
    small image is shown enlarged.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    width = max(1, round(max(h, w) / 200))
    edge = mask & ~_erode(mask)
    core = _dilate(edge, width - 1) if width > 1 else edge
    halo = _dilate(core, max(1, width // 2)) & ~core
    out = np.zeros((h, w, 4), dtype=np.uint8)
    out[halo] = (*HALO_RGB, 170)
    out[core] = (*CORE_RGB, 255)
    return out


def outline_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(outline_rgba(mask), mode="RGBA").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
