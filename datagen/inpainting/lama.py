"""``lama`` inpainter: a TorchScript LaMa export such as ``big-lama.pt`` (Apache-2.0).

The exported module is called as ``model(image, mask)``: ``image`` 1x3xHxW float32 RGB in [0, 1],
``mask`` 1x1xHxW float32 with 1 = hole; it returns 1x3xHxW in [0, 1]. Its down/up-sampling needs
sides that are multiples of 8, so we pad (mirroring the border, mask 0 in the padding) and crop.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datagen.backends import file_fingerprint, pick_device, require_path
from datagen.inpainting import check_inputs, grow, paste_hole

MULTIPLE = 8


class LamaInpainter:
    name = "lama"

    def __init__(self, model: Any, *, checkpoint: Path, device: str, dilate: int = 0):
        self.model = model
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.dilate = max(0, int(dilate))
        self.last_run: dict = {}

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None = None, *, device: str | None = None,
                        dilate: int = 0) -> "LamaInpainter":
        """Load a TorchScript file with ``torch.jit.load`` (to CPU first: exports made on a GPU
        then move cleanly to whichever device we run on)."""
        path = require_path(checkpoint, option="checkpoint", what="a TorchScript LaMa file such as big-lama.pt",
                            backend="lama")
        device = pick_device(device)
        import torch

        model = torch.jit.load(str(path), map_location="cpu").to(device).eval()
        return cls(model, checkpoint=path, device=device, dilate=dilate)

    def inpaint(self, image: np.ndarray, hole: np.ndarray, *, prompt: str | None = None, seed: int = 0) -> np.ndarray:
        """image HxWx3 uint8 RGB, hole HxW bool -> HxWx3 uint8; ``prompt`` is ignored (LaMa is
        unconditional) and ``seed`` too (the network is deterministic)."""
        check_inputs(image, hole)
        self.last_run = {"seed": int(seed), "prompt": None}
        if not hole.any():
            return image.copy()
        import torch

        img_t, mask_t = to_model_inputs(image, grow(hole, self.dilate), self.device)
        with torch.inference_mode():
            out = self.model(img_t, mask_t)
        h, w = hole.shape
        filled = (out[0, :, :h, :w].permute(1, 2, 0).float().clamp(0, 1) * 255).round().byte().cpu().numpy()
        return paste_hole(image, filled, hole)

    def settings(self) -> dict:
        return {"backend": self.name, "checkpoint": file_fingerprint(self.checkpoint), "dilate": self.dilate}


def to_model_inputs(image: np.ndarray, hole: np.ndarray, device: str) -> tuple[Any, Any]:
    """HxWx3 uint8 + HxW bool -> (1x3xH'xW' float in [0,1], 1x1xH'xW' float, 1 = hole), H', W'
    the next multiples of 8. Padding mirrors the image and is marked known (mask 0)."""
    import torch

    h, w = hole.shape
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    img = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    mask = np.pad(hole, ((0, ph), (0, pw)), mode="constant", constant_values=False)
    img_t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div(255)
    mask_t = torch.from_numpy(mask)[None, None].float()
    return img_t.to(device), mask_t.to(device)
