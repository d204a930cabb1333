"""``lama`` inpainter: a TorchScript LaMa export such as ``big-lama.pt`` (Apache-2.0).

The exported module is called as ``model(image, mask)`` and returns Bx3xHxW in [0, 1]. Every
input convention follows LaMa's own prediction path (advimman/lama):

* value range and channel order: ``saicinpainting/evaluation/data.py`` ``load_image`` -- RGB
  (PIL ``convert("RGB")``), ``float32 / 255``, CHW;
* mask polarity: ``load_image(mode="L")`` then ``bin/predict.py`` ``batch['mask'] = (batch['mask']
  > 0) * 1`` -- 1 = hole, 0 = known;
* padding: ``data.py`` ``pad_img_to_modulo(img, mod)`` (called for the image *and* the mask when
  ``pad_out_to_modulo=8``, the value of ``configs/prediction/default.yaml``): bottom/right up to the
  next multiple of 8 with ``np.pad(mode='symmetric')``, the same for both, so a hole that touches
  the bottom/right edge is mirrored into the padding as hole too (not handed to LaMa as known
  mirrored object pixels); ``predict.py`` crops the output back with ``[:orig_h, :orig_w]``;
* resize: none -- LaMa runs at the input's resolution (``scale_factor`` unset in the default
  prediction config).

Our additions, both outside the network: on images whose longer side exceeds ``crop_trigger`` the
model sees a window around the hole (the hole's box plus ``crop_margin`` px per side, rounded up
to ``CROP_TILE`` px so windows of similar holes share a shape and batch together), as inpainting
front-ends do for large photos (IOPaint's "crop" HD strategy); and only the hole's pixels are
pasted back. ``inpaint_batch`` runs windows of one padded shape together; since an item's window
depends only on its own hole, its pixels do not depend on what it was batched with.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datagen.backends import autocast, file_fingerprint, pick_device, require_path, resolve_precision
from datagen.inpainting import check_inputs, grow, paste_hole
from datagen.inpainting.window import Window, tile_window

MULTIPLE = 8
CROP_TILE = 64


class LamaInpainter:
    name = "lama"

    def __init__(self, model: Any, *, checkpoint: Path, device: str, dilate: int = 0, crop_trigger: int = 1024,
                 crop_margin: int = 128, batch_size: int = 8, precision: str = "fp32"):
        self.model = model
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.dilate = max(0, int(dilate))
        if int(crop_margin) < 0 or int(batch_size) < 1:
            raise ValueError(f"the 'lama' backend needs crop_margin >= 0 and batch_size >= 1, "
                             f"got crop_margin={crop_margin}, batch_size={batch_size}")
        self.crop_trigger = int(crop_trigger)
        self.crop_margin = int(crop_margin)
        self.batch_size = int(batch_size)
        self.precision = precision
        self.last_run: dict = {}

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None = None, *, device: str | None = None,
                        precision: str | None = None, **options: Any) -> "LamaInpainter":
        """Load a TorchScript file with ``torch.jit.load`` (to CPU first: exports made on a GPU
        then move cleanly to whichever device we run on)."""
        path = require_path(checkpoint, option="checkpoint", what="a TorchScript LaMa file such as big-lama.pt",
                            backend="lama")
        device = pick_device(device)
        precision = resolve_precision(precision, device, backend="lama")
        import torch

        model = torch.jit.load(str(path), map_location="cpu").to(device).eval()
        return cls(model, checkpoint=path, device=device, precision=precision, **options)

    def inpaint(self, image: np.ndarray, hole: np.ndarray, *, prompt: str | None = None, seed: int = 0) -> np.ndarray:
        """image HxWx3 uint8 RGB, hole HxW bool -> HxWx3 uint8; ``prompt`` is ignored (LaMa is
        unconditional) and ``seed`` too (the network is deterministic)."""
        return self.inpaint_batch([image], [hole], prompts=[prompt], seeds=[seed])[0]

    def inpaint_batch(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray], *,
                      prompts: Sequence[str | None] | None = None,
                      seeds: Sequence[int] | None = None) -> list[np.ndarray]:
        """B images (HxWx3 uint8) and holes (HxW bool) -> B inpainted images; windows of the same
        padded shape go through the network ``batch_size`` at a time."""
        seeds = list(seeds) if seeds is not None else [0] * len(images)
        for image, hole in zip(images, holes):
            check_inputs(image, hole)
        outs = [image.copy() for image in images]
        runs = [{"seed": int(seed), "prompt": None} for seed in seeds]
        prepared: dict[tuple[int, int], list[tuple[int, Window, np.ndarray, np.ndarray]]] = {}
        for i, (image, hole) in enumerate(zip(images, holes)):
            if hole.any():
                given = grow(hole, self.dilate)
                window = self.window(given)
                pixels, mask = model_inputs(image, given, window)
                prepared.setdefault(mask.shape[-2:], []).append((i, window, pixels, mask))
        for group in prepared.values():
            for start in range(0, len(group), self.batch_size):
                chunk = group[start:start + self.batch_size]
                painted = self._forward(np.stack([c[2] for c in chunk]), np.stack([c[3] for c in chunk]))
                for (i, window, _, _), rgb in zip(chunk, painted):
                    filled = images[i].copy()
                    filled[window.top:window.top + window.height, window.left:window.left + window.width] = \
                        rgb[:window.height, :window.width]
                    outs[i] = paste_hole(images[i], filled, holes[i])
                    runs[i]["window"] = window.as_dict()
        self.last_run = runs[-1] if runs else {}
        return outs

    def window(self, hole: np.ndarray) -> Window:
        """The part of the image LaMa sees: the whole frame up to ``crop_trigger`` px, else the
        hole's box plus ``crop_margin`` in whole ``CROP_TILE``s. Padding = up to a multiple of 8."""
        h, w = hole.shape
        if max(h, w) <= self.crop_trigger:
            return Window(0, 0, h, w, -h % MULTIPLE, -w % MULTIPLE)
        win = tile_window(hole, tile=CROP_TILE, context=self.crop_margin)
        return replace(win, pad_bottom=-win.height % MULTIPLE, pad_right=-win.width % MULTIPLE)

    def _forward(self, pixels: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Bx3xHxW float32 in [0, 1] + Bx1xHxW 0/1 -> BxHxWx3 uint8."""
        import torch

        with torch.inference_mode(), autocast(self.device, self.precision):
            out = self.model(torch.from_numpy(pixels).to(self.device), torch.from_numpy(masks).to(self.device))
        return (out.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    def settings(self) -> dict:
        return {"backend": self.name, "checkpoint": file_fingerprint(self.checkpoint), "dilate": self.dilate,
                "crop_trigger": self.crop_trigger, "crop_margin": self.crop_margin, "precision": self.precision}


def pad_to_modulo(array: np.ndarray, mod: int = MULTIPLE) -> np.ndarray:
    """HxW[xC] padded at the bottom/right to multiples of ``mod`` by mirroring (LaMa's
    ``pad_img_to_modulo``, ``np.pad(mode='symmetric')``)."""
    h, w = array.shape[:2]
    pad = ((0, -h % mod), (0, -w % mod)) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, pad, mode="symmetric")


def model_inputs(image: np.ndarray, hole: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """``window`` of HxWx3 uint8 + HxW bool -> (3xH'xW' float32 in [0, 1], 1xH'xW' float32 with
    1 = hole), H', W' the next multiples of 8; image and mask padded alike (symmetric)."""
    pixels = pad_to_modulo(window.crop(image)).astype(np.float32).transpose(2, 0, 1) / 255
    mask = pad_to_modulo(window.crop(hole)).astype(np.float32)[None]
    return np.ascontiguousarray(pixels), np.ascontiguousarray(mask)
