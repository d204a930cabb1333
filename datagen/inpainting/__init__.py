"""Inpainting stage: fill a hole so the object that was there is gone.

Protocol (``Inpainter``)::

    inpainter.inpaint(image, hole, *, prompt=None, seed=0) -> HxWx3 uint8

* ``image``: HxWx3 uint8 RGB. ``hole``: HxW bool, True = pixels to fill.
* ``prompt``: what to paint into the hole (prompt-driven backends only); ``None`` = remove the
  object and continue the background. ``seed``: the same seed gives the same pixels.
* Every backend composites its result back: pixels outside ``hole`` are returned unchanged, bit
  for bit (a learned model's VAE/resampling round trip never leaks into the background).
* ``last_run``: a dict describing the latest call (seed, prompt, window...) for provenance.

Backends (``build_inpainter(name, **options)``):

* ``opencv`` -- Telea / Navier-Stokes (CPU, no weights). Options: ``method="telea"|"ns"``,
  ``radius=5``, ``dilate=3``.
* ``lama`` -- TorchScript ``big-lama.pt``. Options: ``checkpoint`` (required), ``device=None``,
  ``dilate=0``.
* ``sd`` -- diffusers Stable-Diffusion inpainting from a local folder. Options: ``model_dir``
  (required), ``device=None``, ``steps=30``, ``guidance=7.5``, ``resolution=None`` (the model's
  native size), ``context=0.5``, ``dilate=0``, ``removal_prompt="background"``,
  ``removal_negative_prompt=...``, ``negative_prompt=None``, ``dtype=None`` ("float16"/"float32").
* ``mat`` -- MAT from a checkout + ``.pkl``. Options: ``checkout`` and ``checkpoint`` (required),
  ``device=None``, ``context=64``, ``truncation_psi=1.0``, ``dilate=0``.

``dilate`` grows the hole the model is *given* by that many pixels, so the fill is not seeded
from the object's anti-aliased fringe; the output still changes only the caller's ``hole``.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from datagen.backends import BackendUnavailable, Registry, check_mask, check_rgb

__all__ = ["Inpainter", "INPAINTERS", "build_inpainter", "BackendUnavailable", "check_inputs",
           "paste_hole", "grow"]


@runtime_checkable
class Inpainter(Protocol):
    name: str

    def inpaint(self, image: np.ndarray, hole: np.ndarray, *, prompt: str | None = None,
                seed: int = 0) -> np.ndarray: ...

    def settings(self) -> dict: ...


INPAINTERS = Registry("inpainting")


@INPAINTERS.register("opencv")
def _build_opencv(**options: Any) -> Inpainter:
    from datagen.inpainting.opencv import OpenCVInpainter

    return OpenCVInpainter(**options)


@INPAINTERS.register("lama")
def _build_lama(**options: Any) -> Inpainter:
    from datagen.inpainting.lama import LamaInpainter

    return LamaInpainter.from_checkpoint(**options)


@INPAINTERS.register("sd")
def _build_sd(**options: Any) -> Inpainter:
    from datagen.inpainting.sd import SdInpainter

    return SdInpainter.from_pretrained(**options)


@INPAINTERS.register("mat")
def _build_mat(**options: Any) -> Inpainter:
    from datagen.inpainting.mat import MatInpainter

    return MatInpainter.from_checkout(**options)


def build_inpainter(name: str, **options: Any) -> Inpainter:
    """Build the inpainting backend ``name`` (see the module docstring for its options)."""
    return INPAINTERS.build(name, **options)


def check_inputs(image: Any, hole: Any) -> None:
    """Raise ``ValueError`` unless image is HxWx3 uint8 and hole a matching HxW bool mask."""
    check_rgb(image)
    check_mask(hole, image.shape[:2], "hole")


def paste_hole(image: np.ndarray, filled: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Copy of ``image`` with ``filled``'s pixels where ``hole`` is True (all HxW[x3], uint8)."""
    out = image.copy()
    out[hole] = filled[hole]
    return out


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """HxW bool dilated by ``pixels`` with a round kernel (``pixels <= 0``: unchanged copy)."""
    if pixels <= 0:
        return mask.copy()
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)
