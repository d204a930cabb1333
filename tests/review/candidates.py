"""Candidates for the review tests: real photographs (scikit-image ships them, no download) with
a real recolour edit, and tiny ones for the 2,000-item concurrency runs."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from datagen.schema import EditSample, sample_key


@lru_cache(maxsize=None)
def _coffee() -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.coffee()).resize((300, 200), Image.BILINEAR))


@lru_cache(maxsize=None)
def _saucer_mask() -> np.ndarray:
    """The red saucer and cup of ``skimage.data.coffee`` at 300x200: saturated red pixels inside an
    ellipse around them, closed, filled and reduced to the largest blob (what a segmenter gives)."""
    from scipy import ndimage

    src = _coffee()
    hsv = np.asarray(Image.fromarray(src).convert("HSV")).astype(int)
    h, w = src.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    ellipse = ((xx - 139) / 118.0) ** 2 + ((yy - 118) / 90.0) ** 2 <= 1.0
    red = ((hsv[..., 0] < 14) | (hsv[..., 0] > 240)) & (hsv[..., 1] > 120)
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(ellipse & red, iterations=3))
    mask = ndimage.binary_opening(mask, iterations=2)
    labels, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    return labels == int(np.argmax(sizes)) + 1


def _recolor(image: np.ndarray, mask: np.ndarray, hue_shift: int) -> np.ndarray:
    """Rotate the hue inside ``mask``, keeping value (shading) and saturation."""
    hsv = np.asarray(Image.fromarray(image).convert("HSV")).copy()
    hue = hsv[..., 0].astype(np.int16)
    hsv[..., 0] = np.where(mask, (hue + hue_shift) % 256, hue).astype(np.uint8)
    return np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"))


PARAPHRASES = ["Recolour the thing under the cup.", "Paint the cup's plate another colour.", "Make it pink."]

PHRASES = [
    ("What holds the cup? Change it into blue.", 150),
    ("Which object keeps a hot drink from marking the table? Make it green.", 80),
    ("What is the thing a cup stands on? Change it into purple.", 190),
]


def photo_candidate(index: int, *, instruction: str | None = None, case_id: str = "coffee-saucer") -> EditSample:
    """A reasoning-style recolour candidate of the coffee photo; ``index`` picks the colour."""
    src = _coffee()
    mask = _saucer_mask()
    text, shift = PHRASES[index % len(PHRASES)]
    return EditSample(
        key=sample_key("review-test", "coffee", index, instruction),
        src=src, tgt=_recolor(src, mask, shift), mask=mask,
        instruction=instruction or text, scenario="reasoning", op="recolor",
        target={"category": "saucer", "box": [38, 35, 240, 193]},
        provenance={"case_id": case_id, "builder": "tests", "seed": index},
        paraphrases=list(PARAPHRASES),
    )


@lru_cache(maxsize=None)
def _tiny_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = np.full((16, 16, 3), 90, np.uint8)
    tgt = src.copy()
    tgt[4:12, 4:12] = (200, 40, 40)
    mask = np.zeros((16, 16), bool)
    mask[3:13, 3:13] = True
    return src, tgt, mask


def tiny_candidate(index: int, tag: str = "bulk") -> EditSample:
    """A 16x16 candidate; every one shares the same pixels (so the blob store holds 4 files) but
    has its own key and instruction."""
    src, tgt, mask = _tiny_arrays()
    return EditSample(key=sample_key("review-test", tag, index), src=src, tgt=tgt, mask=mask,
                      instruction=f"Remove the red square number {index}", scenario="reasoning", op="remove",
                      provenance={"case_id": f"{tag}-{index // 4}"})
