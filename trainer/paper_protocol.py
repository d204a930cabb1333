"""The official Reason-Edit metrics script's choices (``--protocol official``), so numbers can sit
next to the paper's Table 1. Read from SmartEdit's ``test/metrics_evaluation.py``; written anew.

- Resolution: source and edited image resized to 256 x 256 (bicubic), the mask too (nearest).
- Which pixels: both images multiplied by ``1 - mask / 255`` (the JPEG mask kept soft) and every
  metric taken over the whole frame, masked pixels included (they match trivially, which inflates
  PSNR; ``--protocol masked`` measures the background only).
- PSNR: data range 1 over the whole frame. SSIM: Gaussian window 11, sigma 1.5, data range 1,
  borders included (torchmetrics' defaults, as the script calls it). LPIPS: SqueezeNet (``--lpips-net squeeze``), inputs in [-1, 1], each
  layer averaged at its own size. CLIP: ViT-L/14 score of the edited image cropped to the mask's
  box with the right and bottom edges excluded (PIL ``crop((left, top, right, bottom))`` of the
  extreme mask pixels), seen the CLIP processor's way (shorter side to 224, centre crop).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 256


def prepare(src: np.ndarray, edited: np.ndarray, mask_l: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HxWx3 uint8 images and an HxW uint8 mask (255 = edit) -> (source x keep, edited x keep, edited
    at 256 px): the first two float [0,1] 256x256x3, the last uint8 for the CLIP crop."""
    def resize(a, resample):
        return np.asarray(Image.fromarray(a).resize((SIZE, SIZE), resample))

    s, e = resize(src, Image.Resampling.BICUBIC), resize(edited, Image.Resampling.BICUBIC)
    keep = (1.0 - resize(mask_l, Image.Resampling.NEAREST).astype(np.float64) / 255.0)[..., None]
    return s / 255.0 * keep, e / 255.0 * keep, e


def mask_at_size(mask_l: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(mask_l).resize((SIZE, SIZE), Image.Resampling.NEAREST))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Whole-frame PSNR (dB, data range 1) of two float images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Whole-frame SSIM as torchmetrics computes it: Gaussian window (sigma 1.5, 11 taps) over a
    mirror-padded image, data range 1, the map averaged over every pixel (borders included, unlike
    scikit-image's, which drops a 5-pixel border) and over channels."""
    from scipy.ndimage import gaussian_filter

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    maps = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)

        def blur(z):
            return gaussian_filter(z, 1.5, truncate=3.5, mode="mirror")

        mx, my = blur(x), blur(y)
        sxx = np.maximum(blur(x * x) - mx * mx, 0)
        syy = np.maximum(blur(y * y) - my * my, 0)
        sxy = blur(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2)))
    return float(np.mean(maps))


def lpips(model, a: np.ndarray, b: np.ndarray) -> float:
    """``model``: ``trainer.lpips.LPIPS``; float [0,1] images -> the package-style LPIPS distance."""
    import torch

    def tensor(img):
        return torch.from_numpy(img.astype(np.float32) * 2 - 1).permute(2, 0, 1)[None]

    return float(model.distance(tensor(a), tensor(b))[0])


def clip_crop(edited: np.ndarray, mask_l: np.ndarray) -> np.ndarray:
    """The edited 256-px image cut to the mask's box, right and bottom edge pixels excluded."""
    ys, xs = np.nonzero(mask_at_size(mask_l))
    if len(ys) == 0:
        return edited
    return edited[ys.min(): ys.max(), xs.min(): xs.max()]


def score(src: np.ndarray, edited: np.ndarray, mask_l: np.ndarray, lpips_model=None, clip=None,
          clip_text: str = "") -> dict:
    """The official script's metrics for one case (keys ``psnr``, ``ssim``, ``lpips``, ``clip``)."""
    a, b, edited_256 = prepare(src, edited, mask_l)
    row = {"psnr": psnr(a, b), "ssim": ssim(a, b)}
    if lpips_model is not None:
        row["lpips"] = lpips(lpips_model, a, b)
    if clip is not None and clip_text:
        row["clip"] = clip(clip_crop(edited_256, mask_l), clip_text, view="center-crop")
    return row
