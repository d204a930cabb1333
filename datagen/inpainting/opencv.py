"""``opencv`` inpainter: Telea fast marching or Navier-Stokes (CPU, no weights, deterministic).

Good for small and medium holes on smooth or lightly textured backgrounds; large holes on
textured backgrounds come out smeared (use ``lama``/``mat`` there).
"""
from __future__ import annotations

import cv2
import numpy as np

from datagen.inpainting import check_inputs, grow, paste_hole

METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}


class OpenCVInpainter:
    """``method``: ``"telea"`` or ``"ns"``. ``radius``: neighbourhood (px) each filled pixel draws
    from. ``dilate``: px the hole is grown before filling (the output still changes only ``hole``)."""

    name = "opencv"

    def __init__(self, method: str = "telea", radius: int = 5, dilate: int = 3):
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        if radius < 1:
            raise ValueError(f"radius must be >= 1, got {radius}")
        self.method = method
        self.radius = int(radius)
        self.dilate = max(0, int(dilate))
        self.last_run: dict = {}

    def inpaint(self, image: np.ndarray, hole: np.ndarray, *, prompt: str | None = None, seed: int = 0) -> np.ndarray:
        """image HxWx3 uint8 RGB, hole HxW bool (True = fill) -> HxWx3 uint8. ``prompt``/``seed``
        are accepted for the protocol and ignored (the method is deterministic and prompt-free)."""
        check_inputs(image, hole)
        self.last_run = {"seed": int(seed), "prompt": None}
        if not hole.any():
            return image.copy()
        given = grow(hole, self.dilate).astype(np.uint8) * 255
        filled = cv2.inpaint(np.ascontiguousarray(image), given, self.radius, METHODS[self.method])
        return paste_hole(image, filled, hole)

    def settings(self) -> dict:
        return {"backend": self.name, "method": self.method, "radius": self.radius, "dilate": self.dilate,
                "opencv": cv2.__version__}
