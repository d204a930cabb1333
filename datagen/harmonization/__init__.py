"""Harmonization stage: make a pasted object's colour and tone fit its new background.

Protocol (``Harmonizer``)::

    harmonizer.harmonize(composite, fg_mask, *, background=None, alpha=None) -> HxWx3 uint8

* ``composite``: HxWx3 uint8 RGB, the object already pasted. ``fg_mask``: HxW bool, True = the
  pasted object.
* ``background``: optional HxWx3 uint8, the image *before* the paste (in the understanding
  pipeline: the inpainted y1). Backends that need what lies behind the object use it (PIH was
  trained with such backgrounds; the classical feathered blend mixes into it); without it they
  estimate it by OpenCV-inpainting the foreground region.
* ``alpha``: optional HxW float32 in [0, 1], the paste's soft alpha (zero outside ``fg_mask``;
  ``compositing.paste`` returns it). PIH reads the foreground's alpha channel, so feathered edge
  pixels get only their share of the colour change; backends that blend by their own rule
  (classical) ignore it.
* Only the foreground and a thin band around it (``band`` px, classical ``poisson`` blend only) may change;
  every other pixel is returned unchanged.

Backends (``build_harmonizer(name, **options)``):

* ``classical`` -- colour statistics then blending (CPU, no weights). Options:
  ``color="reinhard"|"curves"|"none"``, ``blend="feather"|"poisson"|"none"``, ``strength=0.6``,
  ``ring=16``, ``band=3``, ``feather=4``.
* ``pih`` -- PIH (adobe/PIH) from a checkout + checkpoint. Options: ``checkout`` and
  ``checkpoint`` (required), ``device=None``, ``light=False``, ``resolution=512``,
  ``precision=None`` ("fp32"/"fp16"/"bf16", half on CUDA only), ``batch_size=8``.

Batches across records: ``harmonize_batch(harmonizer, composites, fg_masks, backgrounds=None,
alphas=None)`` (module level) calls the backend's ``harmonize_batch`` when it has one (``pih``:
one forward pass for several composites) and loops over ``harmonize`` otherwise.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from datagen.backends import BackendUnavailable, Registry, check_mask, check_rgb

__all__ = ["Harmonizer", "HARMONIZERS", "build_harmonizer", "harmonize_batch", "BackendUnavailable", "check_inputs",
           "estimate_background"]


@runtime_checkable
class Harmonizer(Protocol):
    name: str

    def harmonize(self, composite: np.ndarray, fg_mask: np.ndarray, *, background: np.ndarray | None = None,
                  alpha: np.ndarray | None = None) -> np.ndarray: ...

    def settings(self) -> dict: ...


HARMONIZERS = Registry("harmonization")


@HARMONIZERS.register("classical")
def _build_classical(**options: Any) -> Harmonizer:
    from datagen.harmonization.classical import ClassicalHarmonizer

    return ClassicalHarmonizer(**options)


@HARMONIZERS.register("pih")
def _build_pih(**options: Any) -> Harmonizer:
    from datagen.harmonization.pih import PihHarmonizer

    return PihHarmonizer.from_checkout(**options)


def build_harmonizer(name: str, **options: Any) -> Harmonizer:
    """Build the harmonization backend ``name`` (see the module docstring for its options)."""
    return HARMONIZERS.build(name, **options)


def harmonize_batch(harmonizer: Harmonizer, composites: Sequence[np.ndarray], fg_masks: Sequence[np.ndarray], *,
                    backgrounds: Sequence[np.ndarray | None] | None = None,
                    alphas: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Harmonize several composites: ``composites`` B x (HxWx3 uint8), ``fg_masks`` B x (HxW
    bool), ``backgrounds`` / ``alphas`` None or B optional entries -> B x (HxWx3 uint8).

    Uses ``harmonizer.harmonize_batch`` when the backend batches, else one ``harmonize`` each."""
    backgrounds = list(backgrounds) if backgrounds is not None else [None] * len(composites)
    alphas = list(alphas) if alphas is not None else [None] * len(composites)
    if not len(composites) == len(fg_masks) == len(backgrounds) == len(alphas):
        raise ValueError(f"harmonize_batch got {len(composites)} composites, {len(fg_masks)} masks, "
                         f"{len(backgrounds)} backgrounds and {len(alphas)} alphas; pass one of each per item")
    batched = getattr(harmonizer, "harmonize_batch", None)
    if batched is not None:
        return list(batched(list(composites), list(fg_masks), backgrounds=backgrounds, alphas=alphas))
    return [harmonizer.harmonize(c, m, background=b, alpha=a)
            for c, m, b, a in zip(composites, fg_masks, backgrounds, alphas)]


def check_inputs(composite: Any, fg_mask: Any, background: Any = None) -> None:
    """Raise ``ValueError`` unless the arrays follow the protocol's shapes and dtypes."""
    check_rgb(composite, "composite")
    check_mask(fg_mask, composite.shape[:2], "fg_mask")
    if background is not None:
        check_rgb(background, "background")
        if background.shape != composite.shape:
            raise ValueError(f"background shape {background.shape} differs from composite shape {composite.shape}")


def estimate_background(composite: np.ndarray, fg_mask: np.ndarray) -> np.ndarray:
    """What probably lies behind the object: the composite with ``fg_mask`` filled by OpenCV Telea
    (HxWx3 uint8). Cheap, and close to the inpainted backgrounds PIH was trained with."""
    import cv2

    return cv2.inpaint(np.ascontiguousarray(composite), fg_mask.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
