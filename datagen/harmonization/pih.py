"""``pih`` harmonizer: Parametric Image Harmonization (adobe/PIH) from the user's checkout.

The user passes the root of a PIH checkout (``checkout``, code Apache-2.0) and its released
checkpoint ``ckpt_g39.pth`` (``checkpoint``). We build the model the way the repository's
``inference.py`` does -- ``model.Model_Composite_PL(dim=32, masking=True, brush=True,
maskoffset=0.6, swap=True, Vit_bool=False, onlyupsample=True, aggupsample=True, light=...,
Eff_bool=...)`` -- and load ``torch.load(ckpt)["state_dict"]``.

Inference follows ``inference.py`` (``Inferencer.preprocess`` and ``Inferencer.forward``):

* alpha: the foreground's soft alpha channel (``fg_img.getchannel("A")``, an 8-bit "L" image),
  not a binary mask: we pass the paste's feathered alpha quantised to 8 bits the same way
  (``alpha=None`` falls back to ``fg_mask`` as a hard 0/255 alpha);
* composite: ``Image.composite(fg, bg, alpha)`` -- what our compositor already produced;
* resize to the network: ``T.Resize((512, 512))`` on the PIL images, i.e. PIL's bilinear resize
  (antialiased when shrinking) of background, composite and alpha, then ``T.ToTensor()``:
  float32 in [0, 1], the alpha divided by 255;
* ``model(bg_low, composite_low, mask_low)`` returns ``(pl_composite, output, params, pl_table)``;
  ``pl_table`` (Bx3x32x32x32) holds the predicted per-channel RGB curves, 32 control points each
  (red along the last axis, green along the 4th, blue along the 3rd), and ``model.gainmap``
  (Bx1x512x512) the shading gain;
* at full resolution, with ``m`` the alpha in [0, 1]: ``hr = PL3D(pl_table, composite) * m +
  (1 - m) * bg``, ``gain = F.resize(gainmap, (H, W))`` (bilinear) and ``out = hr * gain * m +
  (1 - m) * bg``. We clip to [0, 1] and round to uint8 (``to_pil_image``'s ``mul(255).byte()``
  would truncate, and wrap values a gain above 1 pushes past 255).

We apply the curves as three 256-entry tables in numpy (exactly what ``LUT3D``'s trilinear
``grid_sample`` computes on a table that varies along one axis per channel), which needs no
full-resolution tensor on the device. ``harmonize_batch`` stacks the 512 px inputs of several
composites into one forward pass.

The checkpoint is read with ``torch.load(weights_only=True)``: ``PIH_train.py``'s ``save_model``
writes ``{"epoch", "state_dict", "args"}`` with ``args`` the ``optparse.Values`` its
``OptionParser`` returned, so that one class (plus ``argparse.Namespace``) is allowed and nothing
else can run code when the file is opened.
"""
from __future__ import annotations

import argparse
import optparse
import pickle
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from datagen.backends import (BackendUnavailable, autocast, file_fingerprint, import_from_checkout, pick_device,
                              require_path, resolve_precision)
from datagen.harmonization import check_inputs, estimate_background

# Top-level names PIH's model.py imports from its own repository.
CHECKOUT_MODULES = ("model", "utils")
# Constructor arguments of the released model, as in PIH's inference.py.
INFERENCE_KWARGS = dict(dim=32, masking=True, brush=True, maskoffset=0.6, swap=True, Vit_bool=False,
                        onlyupsample=True, aggupsample=True)


class PihHarmonizer:
    name = "pih"

    def __init__(self, model: Any, *, checkout: Path, checkpoint: Path, device: str, light: bool = False,
                 resolution: int = 512, precision: str = "fp32", batch_size: int = 8):
        self.model = model
        self.checkout = Path(checkout)
        self.checkpoint = Path(checkpoint)
        self.device = device
        self.light = bool(light)
        self.resolution = int(resolution)
        self.precision = precision
        if int(batch_size) < 1:
            raise ValueError(f"the 'pih' backend got batch_size={batch_size}; pass a positive number.")
        self.batch_size = int(batch_size)
        self.last_run: dict = {}

    @classmethod
    def from_checkout(cls, checkout: str | Path | None = None, checkpoint: str | Path | None = None, *,
                      device: str | None = None, light: bool = False, precision: str | None = None,
                      **options: Any) -> "PihHarmonizer":
        root = require_path(checkout, option="checkout", is_dir=True, backend="pih",
                            what="the root folder of an adobe/PIH checkout")
        ckpt = require_path(checkpoint, option="checkpoint", backend="pih",
                            what="a PIH checkpoint such as pretrained/ckpt_g39.pth")
        device = pick_device(device)
        precision = resolve_precision(precision, device, backend="pih")
        model_module = import_from_checkout(root, "model", backend="pih", option="checkout", owns=CHECKOUT_MODULES)
        model = model_module.Model_Composite_PL(**INFERENCE_KWARGS, light=light, Eff_bool=light)
        state = load_checkpoint(ckpt)
        try:
            model.load_state_dict(state["state_dict"] if "state_dict" in state else state)
        except RuntimeError as exc:
            raise BackendUnavailable(
                f"the 'pih' backend could not load checkpoint={str(ckpt)!r} into Model_Composite_PL(light={light}) "
                f"({str(exc).splitlines()[0]}); pass the matching checkpoint or light=True for the light model."
            ) from exc
        model = model.to(device).eval()
        return cls(model, checkout=root, checkpoint=ckpt, device=device, light=light, precision=precision, **options)

    def harmonize(self, composite: np.ndarray, fg_mask: np.ndarray, *, background: np.ndarray | None = None,
                  alpha: np.ndarray | None = None) -> np.ndarray:
        """composite HxWx3 uint8 RGB, fg_mask HxW bool, alpha None or HxW float32 in [0, 1] (zero
        outside fg_mask) -> HxWx3 uint8, changed only inside fg_mask."""
        return self.harmonize_batch([composite], [fg_mask], backgrounds=[background], alphas=[alpha])[0]

    def harmonize_batch(self, composites: Sequence[np.ndarray], fg_masks: Sequence[np.ndarray], *,
                        backgrounds: Sequence[np.ndarray | None] | None = None,
                        alphas: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
        """Several composites through one forward pass per ``batch_size``; item ``i`` is what
        ``harmonize(composites[i], fg_masks[i], background=backgrounds[i], alpha=alphas[i])`` gives."""
        backgrounds = list(backgrounds) if backgrounds is not None else [None] * len(composites)
        alphas = list(alphas) if alphas is not None else [None] * len(composites)
        outs, todo = [], []
        for i, (comp, fg) in enumerate(zip(composites, fg_masks)):
            check_inputs(comp, fg, backgrounds[i])
            outs.append(comp.copy())
            if fg.any():
                behind = backgrounds[i] if backgrounds[i] is not None else estimate_background(comp, fg)
                todo.append((i, behind, alpha_l(fg, alphas[i])))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            predicted = self.predict([composites[i] for i, _, _ in chunk], [b for _, b, _ in chunk],
                                     [a for _, _, a in chunk])
            for (i, behind, a8), (curves, gain) in zip(chunk, predicted):
                outs[i] = apply_curves_and_gain(composites[i], fg_masks[i], curves, gain, alpha=a8 / 255.0,
                                                background=behind)
                self.last_run = {"curves": curves.round(4).tolist(), "gain_mean": float(gain[fg_masks[i]].mean())}
        return outs

    def predict(self, composites: Sequence[np.ndarray], behinds: Sequence[np.ndarray],
                alphas8: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run PIH at ``resolution`` on B composites (HxWx3 uint8), their backgrounds and 8-bit
        alphas (HxW uint8); return per item curves 3x32 (R, G, B; outputs for inputs sampled at
        cell centres of [0, 1]) and the gain map resized to HxW float32."""
        import torch

        size = (self.resolution, self.resolution)
        bg_t = torch.stack([_to_tensor(pil_resize(b, size)) for b in behinds])
        comp_t = torch.stack([_to_tensor(pil_resize(c, size)) for c in composites])
        mask_t = torch.stack([torch.from_numpy(pil_resize(a, size).astype(np.float32) / 255)[None] for a in alphas8])
        with torch.no_grad(), autocast(self.device, self.precision):
            _, _, _, table = self.model(bg_t.to(self.device), comp_t.to(self.device), mask_t.to(self.device))
            gains = self.model.gainmap
        out = []
        for k, comp in enumerate(composites):
            curves = curves_from_table(table[k].float().cpu().numpy())
            h, w = comp.shape[:2]
            out.append((curves, cv2.resize(gains[k, 0].float().cpu().numpy(), (w, h), interpolation=cv2.INTER_LINEAR)))
        return out

    def settings(self) -> dict:
        return {"backend": self.name, "checkout": str(self.checkout.resolve()),
                "checkpoint": file_fingerprint(self.checkpoint), "light": self.light, "resolution": self.resolution,
                "precision": self.precision}


def load_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)`` of a PIH checkpoint, allowing the options objects its
    trainer pickles; anything else in the file is refused with ``BackendUnavailable``."""
    import torch

    with torch.serialization.safe_globals([optparse.Values, argparse.Namespace]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise BackendUnavailable(
                f"the 'pih' backend refused checkpoint={str(path)!r}: it holds objects other than tensors and "
                f"training options ({str(exc).splitlines()[0][:200]}); pass PIH's released ckpt_g39.pth."
            ) from exc


def alpha_l(fg_mask: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """The foreground's alpha as PIH reads it: an 8-bit "L" channel (HxW uint8, 0..255).
    ``alpha`` HxW float in [0, 1] must be zero outside ``fg_mask``; ``None`` = hard ``fg_mask``."""
    if alpha is None:
        return fg_mask.astype(np.uint8) * 255
    alpha = np.asarray(alpha, dtype=np.float32)
    if alpha.shape != fg_mask.shape or alpha.min() < 0 or alpha.max() > 1 or (alpha[~fg_mask] > 0).any():
        raise ValueError("alpha must be an HxW float array in [0, 1] matching fg_mask and zero outside it")
    return (alpha * 255).round().astype(np.uint8)


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


def apply_curves_and_gain(composite: np.ndarray, fg_mask: np.ndarray, curves: np.ndarray, gain: np.ndarray, *,
                          alpha: np.ndarray | None = None, background: np.ndarray | None = None) -> np.ndarray:
    """``inference.py``'s full-resolution step inside ``fg_mask``: with ``m`` = ``alpha`` (HxW
    float in [0, 1]; default the hard mask) and ``bg`` = ``background`` (default the composite),
    ``(curves(composite) * m + (1 - m) * bg) * gain * m + (1 - m) * bg``; curves (3xD) applied as
    lookup tables, ``gain`` HxW. Elsewhere the composite unchanged. Returns HxWx3 uint8."""
    fg = composite[fg_mask]
    m = (alpha[fg_mask] if alpha is not None else np.ones(len(fg)))[:, None]
    bg = (background[fg_mask] if background is not None else fg) / 255.0
    toned = np.stack([curve_lut(curves[c])[fg[:, c]] for c in range(3)], axis=1)
    shaded = (toned * m + (1 - m) * bg) * gain[fg_mask][:, None] * m + (1 - m) * bg
    out = composite.copy()
    out[fg_mask] = (np.clip(shaded, 0, 1) * 255).round().astype(np.uint8)
    return out


def pil_resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxW[x3] uint8 -> ``size=(height, width)`` with PIL's bilinear resize (antialiased when
    shrinking), which is what PIH's ``T.Resize((512, 512))`` does to its PIL inputs."""
    from PIL import Image

    return np.array(Image.fromarray(array).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def _to_tensor(rgb: np.ndarray) -> Any:
    """HxWx3 uint8 -> 3xHxW float32 in [0, 1] (``T.ToTensor``)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
