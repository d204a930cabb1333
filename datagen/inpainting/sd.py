"""``sd`` inpainter: diffusers ``StableDiffusionInpaintPipeline`` from a local folder.

The folder is what ``save_pretrained`` writes (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``), e.g. a local copy of an SD-1.5 inpainting
checkpoint (9-channel UNet). It is loaded with ``local_files_only=True``: nothing is downloaded.

Large images: the model works at its native size (512 px for SD-1.5), so we cut a window around
the hole (``context`` x the hole's size of surroundings, at least the native size when the image
allows), resize it so its longer side is ``resolution`` (sides rounded to what the UNet accepts),
inpaint, resize back and paste only the hole's pixels.

Removal (``prompt=None``) is prompted with ``removal_prompt`` ("background") and a negative prompt
naming objects, which steers the model to continue the surroundings rather than invent a new
object in the hole.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from datagen.backends import BackendUnavailable, file_fingerprint, pick_device, require_path, torch_dtype_for
from datagen.inpainting import check_inputs, grow, paste_hole
from datagen.inpainting.window import Window, context_window

DEFAULT_REMOVAL_NEGATIVE = "object, person, animal, text, watermark, frame, blurry"


class SdInpainter:
    name = "sd"

    def __init__(self, pipe: Any, *, model_dir: Path, device: str, steps: int = 30, guidance: float = 7.5,
                 resolution: int | None = None, context: float = 0.5, dilate: int = 0,
                 removal_prompt: str = "background", removal_negative_prompt: str = DEFAULT_REMOVAL_NEGATIVE,
                 negative_prompt: str | None = None):
        self.pipe = pipe
        self.model_dir = Path(model_dir)
        self.device = device
        self.steps = int(steps)
        self.guidance = float(guidance)
        self.resolution = int(resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor)
        # Sides must survive the VAE's and the UNet's down-sampling without remainder.
        self.multiple = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
        self.context = float(context)
        self.dilate = max(0, int(dilate))
        self.removal_prompt = removal_prompt
        self.removal_negative_prompt = removal_negative_prompt
        self.negative_prompt = negative_prompt
        self.last_run: dict = {}

    @classmethod
    def from_pretrained(cls, model_dir: str | Path | None = None, *, device: str | None = None,
                        dtype: str | None = None, **options: Any) -> "SdInpainter":
        """Load the pipeline folder; ``dtype`` "float16"/"float32" (default fp16 on CUDA, fp32 on CPU)."""
        folder = require_path(model_dir, option="model_dir", is_dir=True, backend="sd",
                              what="a local diffusers inpainting pipeline folder (with model_index.json)")
        if not (folder / "model_index.json").is_file():
            raise BackendUnavailable(
                f"the 'sd' backend found no model_index.json in model_dir={str(folder)!r}; pass a folder written by "
                f"save_pretrained (e.g. a local copy of stable-diffusion-inpainting)."
            )
        device = pick_device(device)
        import torch
        from diffusers import StableDiffusionInpaintPipeline

        torch_dtype = getattr(torch, dtype) if dtype else torch_dtype_for(device)
        try:
            pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, dtype=torch_dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"the 'sd' backend could not load model_dir={str(folder)!r} ({str(exc).splitlines()[0]}); "
                f"pass a complete local diffusers inpainting folder."
            ) from exc
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, model_dir=folder, device=device, **options)

    def inpaint(self, image: np.ndarray, hole: np.ndarray, *, prompt: str | None = None, seed: int = 0) -> np.ndarray:
        """image HxWx3 uint8 RGB, hole HxW bool -> HxWx3 uint8; same ``seed`` -> same pixels."""
        check_inputs(image, hole)
        if not hole.any():
            self.last_run = {"seed": int(seed), "prompt": prompt}
            return image.copy()
        import torch

        given = grow(hole, self.dilate)
        window = context_window(given, context=self.context, min_side=self.resolution)
        size = self.model_size(window)
        text = prompt if prompt is not None else self.removal_prompt
        negative = self.negative_prompt if prompt is not None else self.removal_negative_prompt
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        result = self.pipe(
            prompt=text, negative_prompt=negative,
            image=Image.fromarray(_resize(window.crop(image), size)),
            mask_image=_mask_image(window.crop(given), size),
            height=size[0], width=size[1], num_inference_steps=self.steps, guidance_scale=self.guidance,
            generator=generator, output_type="np",
        )
        painted = (np.clip(result.images[0], 0, 1) * 255).round().astype(np.uint8)
        filled = image.copy()
        filled[window.top:window.top + window.height, window.left:window.left + window.width] = _resize(
            painted, (window.height, window.width))
        nsfw = getattr(result, "nsfw_content_detected", None)
        self.last_run = {"seed": int(seed), "prompt": text, "negative_prompt": negative, "window": window.as_dict(),
                         "model_size": list(size), "nsfw": bool(nsfw and nsfw[0])}
        return paste_hole(image, filled, hole)

    def model_size(self, window: Window) -> tuple[int, int]:
        """(height, width) the window is resized to: longer side = ``resolution``, both sides
        multiples of ``self.multiple``."""
        scale = self.resolution / max(window.height, window.width)
        m = self.multiple
        return (max(m, int(round(window.height * scale / m)) * m), max(m, int(round(window.width * scale / m)) * m))

    def settings(self) -> dict:
        return {
            "backend": self.name, "model_dir": file_fingerprint(self.model_dir), "steps": self.steps,
            "guidance": self.guidance, "resolution": self.resolution, "context": self.context, "dilate": self.dilate,
            "removal_prompt": self.removal_prompt, "removal_negative_prompt": self.removal_negative_prompt,
            "negative_prompt": self.negative_prompt, "scheduler": type(self.pipe.scheduler).__name__,
            "dtype": str(self.pipe.unet.dtype).replace("torch.", ""),
        }


def _mask_image(hole: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """HxW bool -> L image of ``size`` with 255 = repaint (diffusers' convention). Any coverage
    after resizing counts as hole, so the hole never shrinks."""
    return Image.fromarray(((_resize(hole.astype(np.float32), size) > 0) * 255).astype(np.uint8))


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize HxW[xC] to ``size=(height, width)``: area averaging when shrinking, cubic (uint8)
    or linear (float) when enlarging."""
    h, w = array.shape[:2]
    if (h, w) == tuple(size):
        return array.copy()
    shrinking = size[0] * size[1] < h * w
    interp = cv2.INTER_AREA if shrinking else (cv2.INTER_CUBIC if array.dtype == np.uint8 else cv2.INTER_LINEAR)
    return cv2.resize(array, (size[1], size[0]), interpolation=interp)
