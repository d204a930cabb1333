"""``classical`` harmonizer: colour statistics in Lab, then Poisson or feathered blending.

1. Colour: the foreground's Lab statistics are moved toward those of a ring of background just
   outside it -- ``reinhard`` (per-channel mean and standard deviation) or ``curves`` (per-channel
   quantile matching through 32 control points, a monotone tone curve like PIH's). ``strength``
   mixes original and matched colours: a full transfer would also repaint objects whose true
   colour differs from their surroundings (a red apple on green grass), so the default is partial,
   and chroma (a*, b*) moves only ``CHROMA_SHARE`` as far, at most ``MAX_CHROMA_SHIFT``: matching
   lightness and contrast is what makes an object sit in the scene's light; taking on the ground's
   hue makes it look like a tinted ghost.
2. Blend: ``poisson`` (gradient-domain paste with ``cv2.seamlessClone`` over the foreground plus
   a ``band``-px margin: the colour jump at the object's edge disappears and the object's colours
   shift smoothly to meet the background), ``feather`` (the foreground's outer ``feather`` px fade into
   the background behind it), or ``none``.

On iHarmony4 such methods roughly tie the unharmonized composite (REFERENCE.md); they are the
weight-free CPU default, not a substitute for PIH. ``feather`` is the default blend: the
gradient-domain paste removes seams but, like all Poisson compositing, tints the object with the
colours around its rim (a white cup rim next to a black background turns grey-blue).
"""
from __future__ import annotations

import cv2
import numpy as np

from datagen.harmonization import check_inputs, estimate_background
from datagen.inpainting import grow

COLORS = ("reinhard", "curves", "none")
BLENDS = ("poisson", "feather", "none")
# Limits on the std ratio of the Reinhard transfer: a flat ring (sky, wall) would otherwise
# flatten the object to a single colour, and a noisy ring would blow its contrast up.
STD_RATIO_RANGE = (0.5, 2.0)
CURVE_POINTS = 32
# Share of the matched a*/b* (chroma) shift applied, and its cap in Lab units (lightness gets
# the whole ``strength``): see ``match_colors``.
CHROMA_SHARE = 0.3
MAX_CHROMA_SHIFT = 6.0
# cv2.seamlessClone erodes its mask with a 3x3 kernel, 3 iterations, before solving.
SEAMLESS_ERODE = 3
MIN_RING_PIXELS = 16


class ClassicalHarmonizer:
    name = "classical"

    def __init__(self, color: str = "reinhard", blend: str = "feather", strength: float = 0.6, ring: int = 16,
                 band: int = 3, feather: int = 4):
        if color not in COLORS:
            raise ValueError(f"color must be one of {COLORS}, got {color!r}")
        if blend not in BLENDS:
            raise ValueError(f"blend must be one of {BLENDS}, got {blend!r}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.color, self.blend, self.strength = color, blend, float(strength)
        self.ring, self.band, self.feather = max(1, int(ring)), max(1, int(band)), max(1, int(feather))

    def harmonize(self, composite: np.ndarray, fg_mask: np.ndarray, *, background: np.ndarray | None = None,
                  alpha: np.ndarray | None = None) -> np.ndarray:
        """composite HxWx3 uint8 RGB, fg_mask HxW bool -> HxWx3 uint8. Changes only the
        foreground (plus ``band`` px around it with Poisson blending). ``alpha`` (the paste's
        soft alpha) is not used: the blend derives its own feather from ``fg_mask``."""
        check_inputs(composite, fg_mask, background)
        if not fg_mask.any() or fg_mask.all():
            return composite.copy()
        adjusted = self.match_colors(composite, fg_mask)
        if self.blend == "poisson":
            return poisson_blend(adjusted, composite, fg_mask, self.band, self.strength)
        if self.blend == "feather":
            behind = background if background is not None else estimate_background(composite, fg_mask)
            return feather_blend(adjusted, behind, composite, fg_mask, self.feather)
        out = composite.copy()
        out[fg_mask] = adjusted[fg_mask]
        return out

    def match_colors(self, composite: np.ndarray, fg_mask: np.ndarray) -> np.ndarray:
        """Composite with only the foreground's colours moved toward the surrounding ring."""
        if self.color == "none" or self.strength == 0.0:
            return composite.copy()
        ring = grow(fg_mask, self.ring) & ~fg_mask
        if ring.sum() < MIN_RING_PIXELS:
            ring = ~fg_mask  # object nearly fills its neighbourhood: use all the background there is
        lab = cv2.cvtColor(composite.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
        fg, ref = lab[fg_mask], lab[ring]
        matched = reinhard(fg, ref) if self.color == "reinhard" else match_curves(fg, ref)
        shift = self.strength * (matched - fg)
        # Chroma moves much less than lightness, and never far: the ring's hue is the ground's,
        # not the light's, and a full transfer tints a pasted coin or person like a ghost of it.
        shift[:, 1:] = np.clip(CHROMA_SHARE * shift[:, 1:], -MAX_CHROMA_SHIFT, MAX_CHROMA_SHIFT)
        lab[fg_mask] = fg + shift
        rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
        out = composite.copy()
        out[fg_mask] = (np.clip(rgb[fg_mask], 0, 1) * 255).round().astype(np.uint8)
        return out

    def settings(self) -> dict:
        return {"backend": self.name, "color": self.color, "blend": self.blend, "strength": self.strength,
                "ring": self.ring, "band": self.band, "feather": self.feather}


def reinhard(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Nx3 Lab values shifted/scaled per channel to the mean and std of Mx3 ``reference``."""
    mu, sd = values.mean(axis=0), values.std(axis=0)
    mu_ref, sd_ref = reference.mean(axis=0), reference.std(axis=0)
    ratio = np.clip(sd_ref / np.maximum(sd, 1e-6), *STD_RATIO_RANGE)
    return (values - mu) * ratio + mu_ref


def match_curves(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Nx3 values mapped per channel through the monotone curve that sends their quantiles (32
    control points) to the reference's quantiles (histogram matching, smoothed by the few points)."""
    qs = np.linspace(0.0, 1.0, CURVE_POINTS)
    out = np.empty_like(values)
    for ch in range(values.shape[1]):
        src = np.quantile(values[:, ch], qs)
        dst = np.quantile(reference[:, ch], qs)
        # Equal source quantiles (flat regions) would make the curve a step: nudge them apart.
        src = src + np.arange(CURVE_POINTS) * 1e-6
        out[:, ch] = np.interp(values[:, ch], src, dst)
    return out


def poisson_blend(adjusted: np.ndarray, composite: np.ndarray, fg_mask: np.ndarray, band: int,
                  strength: float = 1.0) -> np.ndarray:
    """Gradient-domain paste: keep the foreground's internal gradients, drop the colour jump at
    its edge, and let the background around it set the boundary values (Perez et al. 2003).

    The guidance image is ``adjusted`` with the object extended outward by copying each object
    edge colour (``extend_outward``): its gradient across the object's edge is ~0, so the solver
    shifts the object's colours smoothly until its rim matches the surrounding background. The
    solved region is the foreground plus ``band`` px; nothing else changes.

    ``cv2.seamlessClone`` details handled here: it erodes its mask by ``SEAMLESS_ERODE`` px first
    (the mask handed over is that much wider), it writes into its mask argument (OpenCV issue
    #12053, so it always gets a fresh array), and it misbehaves when the mask touches the image
    border (the images are padded). Placing the clone at the centre of the mask's bounding
    rectangle puts the source region exactly back where it came from."""
    region = grow(fg_mask, band)
    guide = extend_outward(adjusted, fg_mask)
    pad = band + SEAMLESS_ERODE + 2
    src = cv2.copyMakeBorder(guide, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    dst = cv2.copyMakeBorder(composite, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    wide = grow(fg_mask, band + SEAMLESS_ERODE).astype(np.uint8) * 255
    mask = cv2.copyMakeBorder(wide, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(mask)
    cloned = cv2.seamlessClone(src, dst, mask, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    cloned = cloned[pad:-pad, pad:-pad].astype(np.float32)
    # ``strength`` also scales the gradient-domain correction: a full one makes the object take
    # on its surroundings' colour at the rim, which erases colours that are really its own.
    mixed = adjusted.astype(np.float32) + strength * (cloned - adjusted.astype(np.float32))
    out = composite.copy()
    out[region] = mixed[region].round().clip(0, 255).astype(np.uint8)
    return out


def extend_outward(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """HxWx3 copy of ``image`` where every pixel outside ``mask`` takes the colour of the nearest
    pixel inside it (nearest-neighbour extrapolation of the object)."""
    _, labels = cv2.distanceTransformWithLabels((~mask).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    # Each mask pixel has its own label; every other pixel carries the label of its nearest one.
    lookup = np.zeros(labels.max() + 1, dtype=np.int64)
    lookup[labels[mask]] = np.flatnonzero(mask.ravel())
    return image.reshape(-1, 3)[lookup[labels]].reshape(image.shape)


def feather_blend(adjusted: np.ndarray, behind: np.ndarray, composite: np.ndarray, fg_mask: np.ndarray,
                  feather: int) -> np.ndarray:
    """Foreground of ``adjusted`` over ``behind`` with an alpha that rises from 0 at the mask's
    edge to 1 ``feather`` px inside it; pixels outside the mask keep ``composite``'s values."""
    inside = cv2.distanceTransform(fg_mask.astype(np.uint8), cv2.DIST_L2, 5)
    alpha = np.clip(inside / float(feather), 0.0, 1.0)[..., None]
    mixed = alpha * adjusted.astype(np.float32) + (1.0 - alpha) * behind.astype(np.float32)
    out = composite.copy()
    out[fg_mask] = mixed[fg_mask].round().clip(0, 255).astype(np.uint8)
    return out
