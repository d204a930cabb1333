"""A synthetic review history with known ground truth, for calibration tests and ``bench/calibration.py``.

``demo_candidates(n_scenes, seed)`` runs the reasoning builder (annotation masks, classical
editor) on demo scenes, whose instance masks are exact, so every candidate it makes is a correct
edit of the named object. It then plants the defects real editors produce, each on a copy of a
correct candidate, and re-scores it with the same post-edit checks: the truth of every candidate
is known by construction. Every candidate keeps only the post-edit scores, recomputed on its own
pair, so nothing but the edit itself tells good from bad.

Defects (chosen per candidate by a seeded draw; ``bad_share`` of the copies get one):

* ``no_op``            - the target is the source: nothing was edited;
* ``elsewhere``        - the edit landed on another spot of the image (mask and change moved);
* ``partial``          - only half of the object's region was edited;
* ``faint``            - the edit blended at 25 %: barely visible;
* ``background``       - the edit is right but the rest of the image got blurred.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from datagen.postedit import PostEditChecker
from datagen.schema import EditSample

DEFECTS = ("no_op", "elsewhere", "partial", "faint", "background")


def plant(sample: EditSample, defect: str) -> EditSample:
    """A copy of ``sample`` with ``defect`` (see the module docstring) and a new key."""
    src, tgt, mask = sample.src, sample.tgt.copy(), sample.mask.copy()
    h, w = mask.shape
    if defect == "no_op":
        tgt = src.copy()
    elif defect == "elsewhere":
        dy, dx = h // 2, w // 2
        moved = np.roll(mask, (dy, dx), axis=(0, 1))
        shifted = np.roll(sample.tgt, (dy, dx), axis=(0, 1))
        tgt = src.copy()
        tgt[moved] = shifted[moved]
        mask = moved
    elif defect == "partial":
        x0, x1 = np.nonzero(mask.any(axis=0))[0][[0, -1]]
        keep = mask.copy()
        keep[:, : (x0 + x1) // 2] = False
        tgt = np.where(keep[..., None], sample.tgt, src)
    elif defect == "faint":
        tgt = (0.25 * sample.tgt.astype(np.float32) + 0.75 * src.astype(np.float32)).round().astype(np.uint8)
    elif defect == "background":
        soft = cv2.GaussianBlur(sample.tgt, (0, 0), 1.5)
        tgt = np.where(mask[..., None], sample.tgt, soft)
    else:
        raise ValueError(f"unknown defect {defect!r}; choose one of {DEFECTS}")
    provenance = {**sample.provenance, "case_id": f"{sample.provenance.get('case_id', sample.key)}-{defect}",
                  "planted_defect": defect}
    return dataclasses.replace(sample, key=f"{sample.key}x{DEFECTS.index(defect)}", tgt=tgt, mask=mask,
                               provenance=provenance)


def rescored(sample: EditSample, checker: PostEditChecker) -> EditSample:
    """``sample`` with only the post-edit scores (the builder's own checks saw the correct pair and
    would leak which copies are planted)."""
    return checker.attach(dataclasses.replace(sample, quality={}), skip_id=sample.key)


def demo_candidates(n_scenes: int, seed: int = 0, *, bad_share: float = 0.5,
                    checker: PostEditChecker | None = None) -> list[tuple[EditSample, bool]]:
    """``[(candidate, good)]`` from ``n_scenes`` demo scenes (see the module docstring)."""
    from datagen.reasoning import ReasoningBuilder
    from datagen.sources.demo import DemoScenes

    builder = ReasoningBuilder("annotation", "classical", seed=seed)
    checker = checker or PostEditChecker()
    rng = np.random.default_rng(seed)
    out: list[tuple[EditSample, bool]] = []
    for record in DemoScenes(n_scenes, seed):
        for sample in builder(record):
            if not isinstance(sample, EditSample):
                continue
            out.append((rescored(sample, checker), True))
            if rng.random() < bad_share:
                bad = plant(sample, DEFECTS[int(rng.integers(len(DEFECTS)))])
                if bad.mask.any():
                    out.append((rescored(bad, checker), False))
    return out
