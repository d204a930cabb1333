"""``annotation`` masker: hand the catalog's own instance masks through unchanged."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from datagen.masking import check_masker_inputs


class AnnotationMasker:
    """Returns the annotated masks; a box without one is a ``ValueError`` naming its index
    (use ``grabcut`` or ``sam`` for catalogs that only have boxes)."""

    name = "annotation"

    def masks(
        self, image: np.ndarray, boxes: np.ndarray, annotated: Sequence[np.ndarray | None] | None = None
    ) -> np.ndarray:
        """image HxWx3 uint8, boxes Nx4 XYXY, annotated N x (HxW bool) -> NxHxW bool (copies)."""
        hw, boxes, items = check_masker_inputs(image, boxes, annotated)
        missing = [i for i, m in enumerate(items) if m is None]
        if missing:
            raise ValueError(
                f"the 'annotation' masker needs a mask for every box, but boxes {missing} have none; "
                f"use --masker grabcut or sam for box-only annotations."
            )
        if not items:
            return np.zeros((0, *hw), dtype=bool)
        return np.stack([m.copy() for m in items])

    def settings(self) -> dict:
        return {"backend": self.name}
