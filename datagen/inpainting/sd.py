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

Input conventions are diffusers' (``pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py``
with ``image_processor.VaeImageProcessor``): ``image`` a PIL RGB image (the processor maps it to
[-1, 1]), ``mask_image`` a PIL "L" image, white (255) = repaint, binarised at 0.5 by the mask
processor; ``height``/``width`` multiples of the VAE factor (8 for SD-1.5). We resize the window
ourselves (area when shrinking, cubic when enlarging) so the pipeline never resizes.

Batching (``inpaint_batch``): items whose windows resize to the same model size go through one
pipeline call with one ``torch.Generator`` per seed. Each item is passed as its own image (not
``num_images_per_prompt`` copies of one), because the inpaint pipeline samples the masked image's
VAE latent with ``generator[i]`` per *input image* (``_encode_vae_image``): with
``num_images_per_prompt`` every candidate would share the first generator's latent and differ from
a single call with its own seed. This way item ``i`` gets exactly the pixels of
``inpaint(..., seed=seeds[i])``.

Safety checker: a pipeline saved with one flags images in ``nsfw_content_detected`` and returns them
black. ``last_run["nsfw"]`` (and ``last_runs`` for a batch) records the flag; editors turn a flagged
result into the skip reason ``nsfw_blank`` instead of passing a black image on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
from PIL import Image

from datagen.backends import (BackendUnavailable, file_fingerprint, pick_device, require_path, resolve_precision,
                              torch_dtype)
from datagen.inpainting import check_inputs, grow, paste_hole
from datagen.inpainting.window import Window, context_window

DEFAULT_REMOVAL_NEGATIVE = "object, person, animal, text, watermark, frame, blurry"


class SdInpainter:
    name = "sd"

    def __init__(self, pipe: Any, *, model_dir: Path, device: str, steps: int = 30, guidance: float = 7.5,
                 resolution: int | None = None, context: float = 0.5, dilate: int = 0,
                 removal_prompt: str = "background", removal_negative_prompt: str = DEFAULT_REMOVAL_NEGATIVE,
                 negative_prompt: str | None = None, precision: str = "fp32", batch_size: int = 4):
        self.pipe = pipe
        self.precision = precision
        if int(batch_size) < 1:
            raise ValueError(f"the 'sd' backend got batch_size={batch_size}; pass a positive number.")
        self.batch_size = int(batch_size)
        self.last_runs: list[dict] = []
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
                        precision: str | None = None, **options: Any) -> "SdInpainter":
        """Load the pipeline folder in ``precision``'s dtype (default fp16 on CUDA, fp32 on CPU)."""
        folder = require_path(model_dir, option="model_dir", is_dir=True, backend="sd",
                              what="a local diffusers inpainting pipeline folder (with model_index.json)")
        if not (folder / "model_index.json").is_file():
            raise BackendUnavailable(
                f"the 'sd' backend found no model_index.json in model_dir={str(folder)!r}; pass a folder written by "
                f"save_pretrained (e.g. a local copy of stable-diffusion-inpainting)."
            )
        device = pick_device(device)
        precision = resolve_precision(precision, device, backend="sd", default_cuda="fp16")
        from diffusers import StableDiffusionInpaintPipeline

        try:
            pipe = StableDiffusionInpaintPipeline.from_pretrained(folder, dtype=torch_dtype(precision),
                                                                  local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(
                f"the 'sd' backend could not load model_dir={str(folder)!r} ({str(exc).splitlines()[0]}); "
                f"pass a complete local diffusers inpainting folder."
            ) from exc
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, model_dir=folder, device=device, precision=precision, **options)

    def inpaint(self, image: np.ndarray, hole: np.ndarray, *, prompt: str | None = None, seed: int = 0) -> np.ndarray:
        """image HxWx3 uint8 RGB, hole HxW bool -> HxWx3 uint8; same ``seed`` -> same pixels."""
        return self.inpaint_batch([image], [hole], prompts=[prompt], seeds=[seed])[0]

    def inpaint_batch(self, images: Sequence[np.ndarray], holes: Sequence[np.ndarray], *,
                      prompts: Sequence[str | None] | None = None,
                      seeds: Sequence[int] | None = None) -> list[np.ndarray]:
        """B images (HxWx3 uint8) and holes (HxW bool) -> B inpainted images; items of the same
        model size share a pipeline call (``batch_size`` at a time), item ``i`` seeded ``seeds[i]``.
        ``last_runs`` holds one provenance dict per item, ``last_run`` the last one's."""
        prompts = list(prompts) if prompts is not None else [None] * len(images)
        seeds = [int(s) for s in seeds] if seeds is not None else [0] * len(images)
        for image, hole in zip(images, holes):
            check_inputs(image, hole)
        outs = [image.copy() for image in images]
        runs = [{"seed": seeds[i], "prompt": prompts[i]} for i in range(len(images))]
        groups: dict[tuple[int, int], list[tuple[int, np.ndarray, Window]]] = {}
        for i, hole in enumerate(holes):
            if hole.any():
                given = grow(hole, self.dilate)
                window = context_window(given, context=self.context, min_side=self.resolution)
                groups.setdefault(self.model_size(window), []).append((i, given, window))
        for size, items in groups.items():
            for start in range(0, len(items), self.batch_size):
                self._run(items[start:start + self.batch_size], size, images, holes, prompts, seeds, outs, runs)
        self.last_runs = runs
        self.last_run = runs[-1] if runs else {}
        return outs

    def _run(self, items: list[tuple[int, np.ndarray, Window]], size: tuple[int, int], images: Sequence[np.ndarray],
             holes: Sequence[np.ndarray], prompts: list, seeds: list[int], outs: list, runs: list) -> None:
        """One pipeline call for ``items`` (index, hole given to the model, window) at ``size``."""
        import torch

        texts = [prompts[i] if prompts[i] is not None else self.removal_prompt for i, _, _ in items]
        negatives = [self.negative_prompt if prompts[i] is not None else self.removal_negative_prompt
                     for i, _, _ in items]
        result = self.pipe(
            prompt=texts, negative_prompt=None if all(n is None for n in negatives) else [n or "" for n in negatives],
            image=[Image.fromarray(_resize(w.crop(images[i]), size)) for i, _, w in items],
            mask_image=[_mask_image(w.crop(given), size) for _, given, w in items],
            height=size[0], width=size[1], num_inference_steps=self.steps, guidance_scale=self.guidance,
            generator=[torch.Generator(device=self.device).manual_seed(seeds[i]) for i, _, _ in items],
            output_type="np",
        )
        flags = getattr(result, "nsfw_content_detected", None) or [False] * len(items)
        for (i, _, window), painted, text, negative, nsfw in zip(items, result.images, texts, negatives, flags):
            rgb = (np.clip(painted, 0, 1) * 255).round().astype(np.uint8)
            filled = images[i].copy()
            filled[window.top:window.top + window.height, window.left:window.left + window.width] = _resize(
                rgb, (window.height, window.width))
            outs[i] = paste_hole(images[i], filled, holes[i])
            runs[i] = {"seed": seeds[i], "prompt": text, "negative_prompt": negative, "window": window.as_dict(),
                       "model_size": list(size), "nsfw": bool(nsfw)}

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
            "precision": self.precision,
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
