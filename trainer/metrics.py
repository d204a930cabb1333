"""Reason-Edit style metrics, computed over the *background* (outside the edit mask) only.

The public Reason-Edit script multiplies both images by (1 - mask) and averages over the whole
frame, so every masked pixel counts as a perfect match and PSNR is inflated by the mask's share of
the frame. Here the mean runs over background pixels only. For SSIM and LPIPS, whose windows /
receptive fields straddle the mask edge, the edited image's masked region is first replaced by the
source's (so the foreground cannot leak into nearby background windows) and the per-pixel map is
then averaged over background pixels. Images: ``HxWx3 uint8``; masks: ``HxW bool`` (True = edit).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PSNR_CAP = 100.0  # dB reported for identical backgrounds (instead of infinity)


def _background(mask: np.ndarray) -> np.ndarray:
    bg = ~mask.astype(bool)
    if not bg.any():
        raise ValueError("the mask covers the whole image: no background to measure")
    return bg


def background_psnr(src: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, data range 1) of ``edited`` vs ``src`` over background pixels only."""
    bg = _background(mask)
    diff = (src.astype(np.float64) - edited.astype(np.float64)) / 255.0
    mse = float(np.mean(diff[bg] ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(1.0 / mse))


def masked_frame_psnr(src: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """The public script's variant (both images x (1 - mask), mean over the whole frame); for comparison."""
    keep = (~mask.astype(bool))[..., None]
    diff = (src.astype(np.float64) * keep - edited.astype(np.float64) * keep) / 255.0
    mse = float(np.mean(diff ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * np.log10(1.0 / mse))


def composite(src: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``edited`` with the masked region taken from ``src``."""
    return np.where(mask.astype(bool)[..., None], src, edited)


def background_ssim(src: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Mean of the SSIM map (7x7 windows, per channel) over background pixels."""
    from skimage.metrics import structural_similarity

    bg = _background(mask)
    _, smap = structural_similarity(src, composite(src, edited, mask), channel_axis=2, data_range=255, full=True)
    return float(smap.mean(axis=2)[bg].mean())


def crop_to_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask's bounding box of ``image`` (the whole image if the mask is empty)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return image
    return image[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]


class ClipScorer:
    """Foreground CLIP score: 100 x max(cos(image, text), 0) with a local ``CLIPModel`` folder
    (ViT-L/14 in the paper); the edited image is cropped to the mask's box first."""

    def __init__(self, path: str, device: str = "cpu"):
        import torch
        from transformers import AutoTokenizer, CLIPModel

        self.torch, self.device = torch, device
        self.model = CLIPModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        pre = Path(path) / "preprocessor_config.json"
        cfg = json.loads(pre.read_text()) if pre.exists() else {}
        self.mean = np.asarray(cfg.get("image_mean", [0.48145466, 0.4578275, 0.40821073]), np.float32)
        self.std = np.asarray(cfg.get("image_std", [0.26862954, 0.26130258, 0.27577711]), np.float32)
        self.size = int(self.model.config.vision_config.image_size)

    def __call__(self, image: np.ndarray, text: str, view: str = "squash") -> float:
        """``image`` HxWx3 uint8; ``view`` "squash" (whole crop resized to the input size) or
        "center-crop" (shorter side to the input size, centre crop: the CLIP processor's view)."""
        from PIL import Image

        torch = self.torch
        pil = Image.fromarray(image)
        if view == "center-crop":
            scale = self.size / min(pil.size)
            pil = pil.resize((max(self.size, round(pil.width * scale)), max(self.size, round(pil.height * scale))),
                             Image.Resampling.BICUBIC)
            left, top = (pil.width - self.size) // 2, (pil.height - self.size) // 2
            pil = pil.crop((left, top, left + self.size, top + self.size))
        else:
            pil = pil.resize((self.size, self.size), Image.Resampling.BICUBIC)
        pixels = (np.asarray(pil, np.float32) / 255.0 - self.mean) / self.std
        pixels = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].to(self.device)
        tokens = self.tokenizer([text], padding=True, truncation=True, max_length=77, return_tensors="pt").to(self.device)
        with torch.no_grad():
            img = self.model.get_image_features(pixel_values=pixels)
            txt = self.model.get_text_features(**tokens)
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
        cos = torch.nn.functional.cosine_similarity(img, txt).item()
        return 100.0 * max(cos, 0.0)
