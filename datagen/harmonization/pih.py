"""``pih`` harmonizer: Parametric Image Harmonization (adobe/PIH) from the user's checkout.

The user passes the root of a PIH checkout (``checkout``, code Apache-2.0) and its released
checkpoint ``ckpt_g39.pth`` (``checkpoint``). We build the model the way the repository's
``inference.py`` does -- ``model.Model_Composite_PL(dim=32, masking=True, brush=True,
maskoffset=0.6, swap=True, Vit_bool=False, onlyupsample=True, aggupsample=True, light=...,
Eff_bool=...)`` -- and load ``torch.load(ckpt)["state_dict"]``.

Inference follows ``inference.py`` too:

* inputs at 512x512, float32 in [0, 1]: the background (what lies behind the object), the
  composite (the foreground RGBA -- alpha = mask -- composited over that background) and the
  mask (1x1x512x512);
* ``model(background, composite, mask)`` returns ``(pl_composite, output, params, pl_table)``;
  ``pl_table`` (1x3x32x32x32) holds the predicted per-channel RGB curves, 32 control points each
  (red along the last axis, green along the 4th, blue along the 3rd), and ``model.gainmap``
  (1x1x512x512) the shading gain;
* at full resolution: curves applied to the composite as a lookup table (inside the mask), then
  multiplied by the gain map resized to the image; outside the mask the background stays.

We apply the curves as three 256-entry tables in numpy (exactly what ``LUT3D``'s trilinear
``grid_sample`` computes on a table that varies along one axis per channel), which needs no
full-resolution tensor on the device.
"""
from __future__ import annotations

import argparse
import optparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from datagen.backends import (BackendUnavailable, file_fingerprint, import_from_checkout, pick_device,
                              require_path)
from datagen.harmonization import check_inputs, estimate_background

# Top-level names PIH's model.py imports from its own repository.
CHECKOUT_MODULES = ("model", "utils")
# Constructor arguments of the released model, as in PIH's inference.py.
INFERENCE_KWARGS = dict(dim=32, masking=True, brush=True, maskoffset=0.6, swap=True, Vit_bool=False,
                        onlyupsample=True, aggupsample=True)


class PihHarmonizer:
    name = "pih"

    def __init__(self, model: Any, *, checkout: Path, checkpoint: Path, device: str, light: bool = False,
                 resolution: int = 512):
        self.model = model
        self.checkout = Path(checkout)
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.light = bool(light)
        self.resolution = int(resolution)
        self.last_run: dict = {}

    @classmethod
    def from_checkout(cls, checkout: str | Path | None = None, checkpoint: str | Path | None = None, *,
                      device: str | None = None, light: bool = False, resolution: int = 512) -> "PihHarmonizer":
        root = require_path(checkout, option="checkout", is_dir=True, backend="pih",
                            what="the root folder of an adobe/PIH checkout")
        ckpt = require_path(checkpoint, option="checkpoint", backend="pih",
                            what="a PIH checkpoint such as pretrained/ckpt_g39.pth")
        device = pick_device(device)
        import torch

        model_module = import_from_checkout(root, "model", backend="pih", option="checkout", owns=CHECKOUT_MODULES)
        model = model_module.Model_Composite_PL(**INFERENCE_KWARGS, light=light, Eff_bool=light)
        # PIH_train.py saves {"epoch", "state_dict", "args": optparse.Values}; allowing just the
        # options classes keeps weights_only=True (a checkpoint cannot run code when loaded).
        with torch.serialization.safe_globals([optparse.Values, argparse.Namespace]):
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state["state_dict"] if "state_dict" in state else state)
        except RuntimeError as exc:
            raise BackendUnavailable(
                f"the 'pih' backend could not load checkpoint={str(ckpt)!r} into Model_Composite_PL(light={light}) "
                f"({str(exc).splitlines()[0]}); pass the matching checkpoint or light=True for the light model."
            ) from exc
        model = model.to(device).eval()
        return cls(model, checkout=root, checkpoint=ckpt, device=device, light=light, resolution=resolution)

    def harmonize(self, composite: np.ndarray, fg_mask: np.ndarray, *,
                  background: np.ndarray | None = None) -> np.ndarray:
        """composite HxWx3 uint8 RGB, fg_mask HxW bool -> HxWx3 uint8, changed only inside fg_mask."""
        check_inputs(composite, fg_mask, background)
        if not fg_mask.any():
            return composite.copy()
        behind = background if background is not None else estimate_background(composite, fg_mask)
        curves, gain = self.predict(composite, fg_mask, behind)
        out = apply_curves_and_gain(composite, fg_mask, curves, gain)
        self.last_run = {"curves": curves.round(4).tolist(), "gain_mean": float(gain[fg_mask].mean())}
        return out

    def predict(self, composite: np.ndarray, fg_mask: np.ndarray, behind: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run PIH at ``resolution``; return curves 3x32 (R, G, B; outputs for inputs sampled at
        cell centres of [0, 1]) and the gain map resized to HxW float32."""
        import torch

        size = (self.resolution, self.resolution)
        paste = np.where(fg_mask[..., None], composite, behind)  # the foreground (RGBA) over the background
        bg_t, comp_t = _to_tensor(_resize(behind, size)), _to_tensor(_resize(paste, size))
        mask_t = torch.from_numpy(_resize(fg_mask.astype(np.float32), size))[None, None]
        with torch.no_grad():
            _, _, _, table = self.model(bg_t.to(self.device), comp_t.to(self.device), mask_t.to(self.device))
            gain = self.model.gainmap
        curves = curves_from_table(table[0].float().cpu().numpy())
        h, w = fg_mask.shape
        gain_full = cv2.resize(gain[0, 0].float().cpu().numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
        return curves, gain_full

    def settings(self) -> dict:
        return {"backend": self.name, "checkout": str(self.checkout.resolve()),
                "checkpoint": file_fingerprint(self.checkpoint), "light": self.light, "resolution": self.resolution}


def curves_from_table(table: np.ndarray) -> np.ndarray:
    """3xDxDxD PIH table (indexed [channel, B, G, R]) -> 3xD curves; raises ``ValueError`` when
    the table is not separable (a full 3D LUT, which per-channel curves cannot represent)."""
    curves = np.stack([table[0, 0, 0, :], table[1, 0, :, 0], table[2, :, 0, 0]])
    separable = (np.allclose(table[0], curves[0][None, None, :], atol=1e-5)
                 and np.allclose(table[1], curves[1][None, :, None], atol=1e-5)
                 and np.allclose(table[2], curves[2][:, None, None], atol=1e-5))
    if not separable:
        raise ValueError("PIH returned a full 3D LUT, not per-channel curves; build the model with lut=False")
    return curves


def curve_lut(curve: np.ndarray) -> np.ndarray:
    """D control points -> 256-entry float table in [0, 1].

    ``grid_sample(align_corners=False, padding_mode="border")`` places control point i at input
    value (i + 0.5) / D and holds the end values beyond the first and last point."""
    d = len(curve)
    coords = np.arange(256) / 255.0 * d - 0.5
    return np.interp(coords, np.arange(d), curve)


def apply_curves_and_gain(composite: np.ndarray, fg_mask: np.ndarray, curves: np.ndarray,
                          gain: np.ndarray) -> np.ndarray:
    """Inside ``fg_mask``: curves (3xD) as lookup tables, times the HxW ``gain``; elsewhere the
    composite unchanged. Returns HxWx3 uint8."""
    fg = composite[fg_mask]
    toned = np.stack([curve_lut(curves[c])[fg[:, c]] for c in range(3)], axis=1)
    shaded = toned * gain[fg_mask][:, None]
    out = composite.copy()
    out[fg_mask] = (np.clip(shaded, 0, 1) * 255).round().astype(np.uint8)
    return out


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to ``size=(height, width)`` (what PIH's ``T.Resize`` does)."""
    return cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _to_tensor(rgb: np.ndarray) -> Any:
    """HxWx3 uint8 -> 1x3xHxW float32 in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
