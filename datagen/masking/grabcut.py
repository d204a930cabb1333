"""``grabcut`` masker: OpenCV GrabCut initialised from each box (CPU, no weights).

GrabCut runs on a crop around the box (box plus ``margin`` of its size on each side): the colour
models then learn the *local* background, which is what separates the object from its
surroundings, and a crop is much faster than the full frame. The result keeps only the largest
connected component, since GrabCut's colour model often also grabs small same-coloured
specks elsewhere in the crop.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from datagen.masking import check_masker_inputs


class GrabCutMasker:
    """Box-prompted GrabCut.

    ``iterations``: GrabCut EM iterations. ``margin``: context added around the box, as a fraction
    of its width/height. ``prefer_annotated``: when a box comes with an annotated mask, return that
    mask instead of segmenting (the CPU default for catalogs where only some instances have masks).
    """

    name = "grabcut"

    def __init__(self, iterations: int = 5, margin: float = 0.25, prefer_annotated: bool = True):
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.iterations = int(iterations)
        self.margin = float(margin)
        self.prefer_annotated = bool(prefer_annotated)

    def masks(
        self, image: np.ndarray, boxes: np.ndarray, annotated: Sequence[np.ndarray | None] | None = None
    ) -> np.ndarray:
        """image HxWx3 uint8 RGB, boxes Nx4 float XYXY -> NxHxW bool (one mask per box)."""
        hw, boxes, items = check_masker_inputs(image, boxes, annotated)
        out = np.zeros((len(boxes), *hw), dtype=bool)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        for i, box in enumerate(boxes):
            if self.prefer_annotated and items[i] is not None:
                out[i] = items[i]
            else:
                out[i] = self._segment(bgr, box)
        return out

    def _segment(self, bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        x0, y0, x1, y1 = _int_box(box, h, w)
        mx, my = int(round((x1 - x0) * self.margin)), int(round((y1 - y0) * self.margin))
        cx0, cy0, cx1, cy1 = max(0, x0 - mx), max(0, y0 - my), min(w, x1 + mx), min(h, y1 + my)
        crop = np.ascontiguousarray(bgr[cy0:cy1, cx0:cx1])
        rect = (x0 - cx0, y0 - cy0, x1 - x0, y1 - y0)
        full = np.zeros((h, w), dtype=bool)
        if rect[2] < 2 or rect[3] < 2 or _covers(rect, crop.shape[:2]):
            # GrabCut needs some pixels outside the rectangle to learn a background model; a box
            # that spans the whole crop (object filling the frame) gets the box itself.
            full[y0:y1, x0:x1] = True
            return full
        gc_mask = np.zeros(crop.shape[:2], dtype=np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut seeds its k-means from OpenCV's RNG: fix it for reproducible masks
        cv2.grabCut(crop, gc_mask, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
        fg = (gc_mask == cv2.GC_FGD) | (gc_mask == cv2.GC_PR_FGD)
        full[cy0:cy1, cx0:cx1] = largest_component(fg)
        return full

    def settings(self) -> dict:
        return {
            "backend": self.name,
            "iterations": self.iterations,
            "margin": self.margin,
            "prefer_annotated": self.prefer_annotated,
            "opencv": cv2.__version__,
        }


def largest_component(mask: np.ndarray) -> np.ndarray:
    """HxW bool -> HxW bool keeping only the largest 8-connected component (empty stays empty)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask.copy()
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == biggest


def _int_box(box: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    x1, y1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def _covers(rect: tuple[int, int, int, int], hw: tuple[int, int]) -> bool:
    x, y, rw, rh = rect
    return x <= 0 and y <= 0 and x + rw >= hw[1] and y + rh >= hw[0]
