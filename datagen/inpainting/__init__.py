"""Inpainting stage: fill a hole so the object that was there is gone.

Protocol (``Inpainter``)::

    inpainter.inpaint(image, hole, *, prompt=None, seed=0) -> HxWx3 uint8

* ``image``: HxWx3 uint8 RGB. ``hole``: HxW bool, True = pixels to fill.
* ``prompt``: what to paint into the hole (prompt-driven backends only); ``None`` = remove the
  object and continue the background. ``seed``: the same seed gives the same pixels.
* Every backend composites its result back: pixels outside ``hole`` are returned unchanged, bit
  for bit (a learned model's VAE/resampling round trip never leaks into the background).
* ``last_run``: a dict describing the latest call (seed, prompt, window...) for provenance.

Batches across records: ``inpaint_batch(inpainter, images, holes, prompts=None, seeds=None)``
(module level) calls the backend's ``inpainter.inpaint_batch`` when it has one (``lama``: several
hole crops of one size in one forward pass; ``sd``: the candidates of one case in one pipeline
call) and loops over ``inpaint`` otherwise; either way item ``i`` equals
``inpaint(images[i], holes[i], prompt=prompts[i], seed=seeds[i])``.

Backends (``build_inpainter(name, **options)``):

* ``opencv`` -- Telea / Navier-Stokes (CPU, no weights). Options: ``method="telea"|"ns"``,
  ``radius=5``, ``dilate=3``.
* ``lama`` -- TorchScript ``big-lama.pt``. Options: ``checkpoint`` (required), ``device=None``,
  ``dilate=0``, ``crop_trigger=1024`` (images whose longer side exceeds this are inpainted in a
  window around the hole), ``crop_margin=128`` (context px around the hole in that window),
  ``batch_size=8`` (crops per forward pass in ``inpaint_batch``), ``precision=None``.
* ``sd`` -- diffusers Stable-Diffusion inpainting from a local folder. Options: ``model_dir``
  (required), ``device=None``, ``steps=30``, ``guidance=7.5``, ``resolution=None`` (the model's
  native size), ``context=0.5``, ``dilate=0``, ``removal_prompt="background"``,
  ``removal_negative_prompt=...``, ``negative_prompt=None``, ``precision=None`` (fp16 on CUDA,
  fp32 on CPU; the pipeline is loaded in that dtype), ``batch_size=4`` (items per pipeline call
  in ``inpaint_batch``).
* ``mat`` -- MAT from a checkout + ``.pkl``. Options: ``checkout`` and ``checkpoint`` (required),
  ``device=None``, ``context=64``, ``truncation_psi=1.0``, ``dilate=0``, ``precision=None``.

``precision``: "fp32" / "fp16" / "bf16" (half precisions need CUDA; asking for one on a CPU is an
error), recorded in ``settings()``.

``dilate`` grows the hole the model is *given* by that many pixels, so the fill is not seeded
from the object's anti-aliased fringe; the output still changes only the caller's ``hole``.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from datagen.backends import BackendUnavailable, Registry, check_mask, check_rgb

__all__ = ["Inpainter", "INPAINTERS", "build_inpainter", "inpaint_batch", "BackendUnavailable", "check_inputs",
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


def inpaint_batch(inpainter: Inpainter, images: Sequence[np.ndarray], holes: Sequence[np.ndarray], *,
                  prompts: Sequence[str | None] | None = None, seeds: Sequence[int] | None = None) -> list[np.ndarray]:
    """Inpaint several (image, hole) pairs: ``images`` B x (HxWx3 uint8), ``holes`` B x (HxW bool),
    ``prompts`` None or B entries, ``seeds`` None (all 0) or B ints -> B x (HxWx3 uint8).

    Uses ``inpainter.inpaint_batch`` when the backend batches, else one ``inpaint`` call each."""
    prompts = list(prompts) if prompts is not None else [None] * len(images)
    seeds = [int(s) for s in seeds] if seeds is not None else [0] * len(images)
    if not len(images) == len(holes) == len(prompts) == len(seeds):
        raise ValueError(f"inpaint_batch got {len(images)} images, {len(holes)} holes, {len(prompts)} prompts and "
                         f"{len(seeds)} seeds; pass one of each per item")
    batched = getattr(inpainter, "inpaint_batch", None)
    if batched is not None:
        return list(batched(list(images), list(holes), prompts=prompts, seeds=seeds))
    return [inpainter.inpaint(i, h, prompt=p, seed=s) for i, h, p, s in zip(images, holes, prompts, seeds)]


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
