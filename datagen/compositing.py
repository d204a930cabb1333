"""Cut an object out of a donor image and paste it where a removed instance stood.

Pure numpy + OpenCV. This is the ``y1 + y2 -> y3`` step of the understanding pipeline
(supplement §2, Fig. 1): the donor's object is cut by its mask, scaled to the removed instance's
box with its aspect ratio kept, stood on the same ground line, feathered and clipped to the image.

Conventions: images ``HxWx3 uint8 RGB``, masks ``HxW bool``, boxes ``XYXY`` float pixels.

Geometry (``fit_placement``):

* An instance whose box lies inside the image: the object is scaled to fit *inside* the box
  (``min`` of the two axis ratios), centred horizontally and bottom-aligned (its lowest row sits
  on the box's bottom edge: the same ground line).
* An instance cut by the image border: the box only shows part of the object, so a cut axis does
  not bound the size. The object is scaled by the uncut axis (both cut: ``max``, i.e. cover the
  visible box), anchored to the side that stays inside the image, and the part that falls outside
  the frame is clipped, just as the original was.

A donor of any pixel size (also larger than the image) is scaled to the box, so it never needs
to be rejected for its size.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


class CompositingError(ValueError):
    """A paste that cannot be made. ``reason`` is a short stable code callers count by:
    ``bad_donor`` (shape/dtype mismatch), ``empty_donor`` (donor mask has no pixel),
    ``bad_box`` (no area), ``empty_paste`` (nothing of the object lands in the image)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Placement:
    """Where the scaled object goes: top-left ``(x, y)`` in image pixels (may be negative or run
    past the right/bottom edge; clipping happens at paste time), its size and the scale used."""

    x: int
    y: int
    width: int
    height: int
    scale: float


@dataclass
class PasteResult:
    """``image``: HxWx3 uint8 composite. ``mask``: HxW bool, every pixel the paste changed
    (alpha > 0). ``alpha``: HxW float32 in [0, 1]. ``box``: XYXY float of ``mask`` (tight)."""

    image: np.ndarray
    mask: np.ndarray
    alpha: np.ndarray
    box: tuple[float, float, float, float]
    placement: Placement


def cutout(rgb: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop a donor to its mask's bounding box.

    ``rgb``: hxwx3 uint8, ``mask``: hxw bool. Returns the cropped ``(rgb, mask)`` with the object
    touching all four sides, which is what ground-line alignment needs.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise CompositingError("bad_donor", f"donor image must be hxwx3 uint8, got {getattr(rgb, 'shape', None)}")
    if not isinstance(mask, np.ndarray) or mask.shape != rgb.shape[:2]:
        raise CompositingError("bad_donor", f"donor mask shape {getattr(mask, 'shape', None)} != image {rgb.shape[:2]}")
    mask = mask.astype(bool, copy=False)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise CompositingError("empty_donor", "donor mask has no pixel")
    ys = slice(rows[0], rows[-1] + 1)
    xs = slice(cols[0], cols[-1] + 1)
    return rgb[ys, xs], mask[ys, xs]


def touching_sides(box, image_hw: tuple[int, int], tol: float = 1.0) -> dict[str, bool]:
    """Which image borders an XYXY box touches (within ``tol`` pixels)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    h, w = image_hw
    return {"left": x0 <= tol, "top": y0 <= tol, "right": x1 >= w - tol, "bottom": y1 >= h - tol}


def fit_placement(obj_hw: tuple[int, int], box, image_hw: tuple[int, int], *, border_tol: float = 1.0) -> Placement:
    """Scale and position an object of size ``obj_hw=(h, w)`` for ``box`` (XYXY) in an image of
    ``image_hw``; see the module docstring for the rules."""
    oh, ow = obj_hw
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    if not (bw > 0 and bh > 0 and oh > 0 and ow > 0):
        raise CompositingError("bad_box", f"box {box!r} or object size {obj_hw} has no area")
    side = touching_sides(box, image_hw, border_tol)
    cut_x = side["left"] != side["right"]  # cut on exactly one side: width is not the real width
    cut_y = side["top"] != side["bottom"]
    sx, sy = bw / ow, bh / oh
    if cut_x and cut_y:
        scale = max(sx, sy)
    elif cut_x:
        scale = sy
    elif cut_y:
        scale = sx
    else:
        scale = min(sx, sy)
    width = max(1, int(round(ow * scale)))
    height = max(1, int(round(oh * scale)))

    if cut_x and side["left"]:
        x = int(round(x1)) - width  # extends past the left border
    elif cut_x and side["right"]:
        x = int(round(x0))  # extends past the right border
    else:
        x = int(round((x0 + x1) / 2.0 - width / 2.0))
    if cut_y and side["bottom"]:
        y = int(round(y0))  # the true ground line is below the frame
    else:
        y = int(round(y1)) - height  # ground line: bottom edges coincide
    return Placement(x=x, y=y, width=width, height=height, scale=float(scale))


# A replacement must cover at least this share of the removed object's area: below it the new
# object reads as a sliver or a speck (a rocket in a horse's wide box), not as a replacement.
MIN_DONOR_FILL = 0.5
# Nor may it end up smaller than this on its shorter side (px): a 20-px cat where a coin was is
# a speck a reviewer cannot recognise.
MIN_PASTE_SIDE = 32


def fitted_area(obj_mask: np.ndarray, box, image_hw: tuple[int, int]) -> float:
    """Pixels a cut-out object (hxw bool, cropped to the object) covers once ``fit_placement``
    scales it into ``box``; 0 for a box with no area. Compare with ``MIN_DONOR_FILL``."""
    try:
        scale = fit_placement(obj_mask.shape, box, image_hw).scale
    except CompositingError:
        return 0.0
    return float(np.count_nonzero(obj_mask)) * scale * scale


def feather_alpha(mask: np.ndarray, feather_px: float) -> np.ndarray:
    """Soft alpha that ramps from 0 outside to 1 at ``feather_px`` pixels inside ``mask``.

    ``mask``: hxw bool. Returns hxw float32. The ramp lies entirely inside the mask, so a
    feathered paste never changes a pixel outside the object's mask.
    """
    if feather_px <= 0:
        return mask.astype(np.float32)
    # Pad so the distance counts the canvas edge as outside: the object's own silhouette edge.
    padded = np.pad(mask.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    return np.clip(dist / float(feather_px), 0.0, 1.0).astype(np.float32)


def _resize_object(rgb: np.ndarray, mask: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize a cut-out object; area interpolation when shrinking (no aliasing), linear when growing."""
    shrinking = width * height < rgb.shape[0] * rgb.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    # Premultiplied by the mask: interpolating plain RGB would mix the donor's own background
    # into the object's edge pixels (a halo of the wrong colour around the pasted object).
    m = mask.astype(np.float32)
    premult = rgb.astype(np.float32) * m[:, :, None]
    out_m = cv2.resize(m, (width, height), interpolation=interp)
    out_p = cv2.resize(premult, (width, height), interpolation=interp)
    safe = np.maximum(out_m, 1e-6)[:, :, None]
    out_rgb = np.clip(np.rint(out_p / safe), 0, 255).astype(np.uint8)
    return out_rgb, out_m >= 0.5


def paste(
    base: np.ndarray,
    rgb: np.ndarray,
    mask: np.ndarray,
    box,
    *,
    feather_px: float = 2.0,
    keep_out: np.ndarray | None = None,
    border_tol: float = 1.0,
) -> PasteResult:
    """Paste a donor object into ``base`` at ``box``.

    ``base``: HxWx3 uint8. ``rgb``/``mask``: the donor image (hxwx3 uint8) and its object mask
    (hxw bool); any size, cropped to the mask here. ``box``: XYXY float where the object goes.
    ``keep_out``: optional HxW bool of pixels the paste must not cover (other instances that stay
    in front). Raises ``CompositingError`` when nothing can be pasted.
    """
    obj_rgb, obj_mask = cutout(rgb, mask)
    H, W = base.shape[:2]
    place = fit_placement(obj_mask.shape, box, (H, W), border_tol=border_tol)
    # Clip first, resize only what lands in the image: a donor scaled larger than the image
    # would otherwise cost a full-size resize for pixels that are thrown away.
    gx0, gy0 = max(place.x, 0), max(place.y, 0)
    gx1, gy1 = min(place.x + place.width, W), min(place.y + place.height, H)
    if gx1 <= gx0 or gy1 <= gy0:
        raise CompositingError("empty_paste", f"placement {place} falls outside the {W}x{H} image")
    scaled_rgb, scaled_mask = _resize_object(obj_rgb, obj_mask, place.width, place.height)
    alpha_obj = feather_alpha(scaled_mask, feather_px)
    ox0, oy0 = gx0 - place.x, gy0 - place.y
    crop = (slice(oy0, oy0 + gy1 - gy0), slice(ox0, ox0 + gx1 - gx0))
    region = (slice(gy0, gy1), slice(gx0, gx1))
    a = alpha_obj[crop]
    if keep_out is not None:
        a = a * ~keep_out[region]
    if not (a > 0).any():
        raise CompositingError("empty_paste", "no object pixel lands in the image outside the keep-out region")

    out = base.copy()
    a3 = a[:, :, None]
    blended = scaled_rgb[crop].astype(np.float32) * a3 + base[region].astype(np.float32) * (1.0 - a3)
    out[region] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    alpha = np.zeros((H, W), np.float32)
    alpha[region] = a
    new_mask = alpha > 0
    ys, xs = np.nonzero(new_mask[region])
    tight = (float(gx0 + xs.min()), float(gy0 + ys.min()), float(gx0 + xs.max() + 1), float(gy0 + ys.max() + 1))
    return PasteResult(image=out, mask=new_mask, alpha=alpha, box=tight, placement=place)
