"""Object cutouts from the photographs bundled in scikit-image (no download), for demo scenes.

Each cutout is an RGB crop with an exact object mask. How each was cut (every one was checked by
eye on a checkerboard and on a flat green background):

* ``cat`` - ``skimage.data.chelsea()``: the head of a tabby cat. Box GrabCut keeps only the face,
  so a hand-drawn outline of the head (ears truncated by the photo's top edge) is refined by
  GrabCut in a 6-pixel band around it; inside that band the outline is trusted.
* ``cup`` - ``skimage.data.coffee()``: the espresso cup with its saucer and spoon. The saucer and
  the cup's rim are ellipses fitted to hand-picked rim points, joined by the cup's body and the
  spoon's handle, refined by GrabCut in a 3-pixel band (a wider band leaks into the saucer's
  shadow on the table).
* ``rocket`` - ``skimage.data.rocket()``: the Falcon 9 on its pad, nose to the top of the pad.
  Box GrabCut takes the sky; a hand outline refined in a 3-pixel band follows the white body.
* ``person`` - ``skimage.data.astronaut()``: Eileen Collins from the hair to the photo's bottom
  edge, without the helmet in front of her. Hand outline (the helmet's disk subtracted), refined
  in a 5-pixel band; GrabCut cleanly separates hair and suit from the grey backdrop.
* ``coin`` - ``skimage.data.coins()``: the 24 coins, segmented with Sobel edges + watershed from
  dark / bright markers, holes filled, one cutout per coin; grey photo tinted slightly warm.
* ``horse`` - ``skimage.data.horse()``: a binary silhouette, so its colour is rendered: a brown
  coat shaded darker towards the outline (distance transform) with a faint grain taken from
  ``skimage.data.gravel()``.

Cutouts are computed once per process (about 2 s, mostly GrabCut) and cached. OpenCV's random
generator is reseeded before every GrabCut so the masks do not depend on what ran before.
Arrays are read-only: copy before modifying.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

CATEGORIES = ("cat", "cup", "rocket", "person", "coin", "horse")


@dataclass(frozen=True)
class Cutout:
    """One object cut out of a photo. ``rgb``: hxwx3 uint8, cropped to the mask's box;
    ``mask``: hxw bool (True = object). ``hue``: the object's dominant hue in degrees (None when
    it is achromatic), used to keep recolours clearly different from the photo's own colour."""

    category: str
    variant: str
    rgb: np.ndarray
    mask: np.ndarray
    source: str
    hue: float | None


def _poly(hw, points) -> np.ndarray:
    m = np.zeros(hw, np.uint8)
    cv2.fillPoly(m, [np.array(points, np.int32)], 1)
    return m.astype(bool)


def _ellipse(hw, center, axes, angle=0.0) -> np.ndarray:
    m = np.zeros(hw, np.uint8)
    cv2.ellipse(m, (center, axes, angle), 1, -1)
    return m.astype(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` (HxW bool) with every background region that does not reach the border filled."""
    padded = np.pad(mask, 1).astype(np.uint8)
    outside = np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8)
    cv2.floodFill(padded, outside, (0, 0), 2)  # the padding ring joins all border background
    return (padded != 2)[1:-1, 1:-1]


def _largest_component_filled(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    if n > 1:
        mask = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return fill_holes(mask)


def refine_outline(rgb: np.ndarray, outline: np.ndarray, band: int, iterations: int = 4) -> np.ndarray:
    """GrabCut restricted to a band around a hand-drawn outline.

    ``rgb``: HxWx3 uint8; ``outline``: HxW bool. Pixels deeper than ``2*band`` inside the outline
    are fixed foreground, pixels more than ``band`` outside are fixed background; only the band
    is decided by colour. Returns the largest component, holes filled, as HxW bool.
    """
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    hand = outline.astype(np.uint8)
    inner = cv2.erode(hand, k, iterations=2).astype(bool)
    outer = cv2.dilate(hand, k).astype(bool)
    gc = np.full(outline.shape, cv2.GC_BGD, np.uint8)
    gc[outer] = cv2.GC_PR_BGD
    gc[outline] = cv2.GC_PR_FGD
    gc[inner] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.setRNGSeed(12345)  # GrabCut's k-means initialisation draws from OpenCV's global RNG
    cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return _largest_component_filled((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD))


def _crop(category, variant, rgb, mask, source, hue) -> Cutout:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    crop_rgb = np.ascontiguousarray(rgb[sl])
    crop_mask = np.ascontiguousarray(mask[sl])
    crop_rgb.flags.writeable = False
    crop_mask.flags.writeable = False
    return Cutout(category, variant, crop_rgb, crop_mask, source, hue)


def _cat() -> Cutout:
    from skimage import data

    rgb = data.chelsea()
    outline = _poly(rgb.shape[:2], [
        (38, 0), (75, 0), (110, 22), (200, 28), (300, 22), (335, 0), (393, 0), (385, 45), (362, 75),
        (366, 105), (362, 135), (352, 165), (340, 195), (325, 230), (305, 260), (275, 288),
        (235, 299), (160, 299), (100, 285), (60, 258), (30, 215), (15, 165), (18, 115), (28, 70)])
    return _crop("cat", "chelsea", rgb, refine_outline(rgb, outline, 6), "skimage.data.chelsea", 30.0)


def _cup() -> Cutout:
    from skimage import data

    rgb = data.coffee()
    hw = rgb.shape[:2]
    outline = (
        _ellipse(hw, (275.0, 223.6), (404.0, 338.4), 2.3)      # saucer (fitted to its rim)
        | _ellipse(hw, (290.0, 110.0), (236.0, 190.0))         # the cup's rim
        | _poly(hw, [(172, 110), (408, 110), (395, 230), (185, 230)])   # the cup's body
        | _poly(hw, [(398, 75), (412, 66), (422, 70), (415, 100), (405, 110)])  # spoon handle
    )
    return _crop("cup", "coffee", rgb, refine_outline(rgb, outline, 3), "skimage.data.coffee", 5.0)


def _rocket() -> Cutout:
    from skimage import data

    rgb = data.rocket()
    outline = _poly(rgb.shape[:2], [
        (320, 124), (328, 128), (333, 140), (336, 160), (337, 180), (337, 398), (308, 398),
        (308, 180), (309, 160), (312, 140), (316, 128)])
    return _crop("rocket", "falcon9", rgb, refine_outline(rgb, outline, 3), "skimage.data.rocket", None)


def _person() -> Cutout:
    from skimage import data

    rgb = data.astronaut()
    hw = rgb.shape[:2]
    outline = _poly(hw, [
        (155, 58), (165, 40), (185, 22), (225, 12), (275, 22), (298, 55), (300, 100), (285, 118),
        (268, 130), (258, 150), (255, 175), (275, 200), (292, 222), (303, 250), (320, 250),
        (345, 268), (358, 300), (363, 345), (290, 420), (270, 511), (22, 511), (22, 350),
        (30, 300), (45, 260), (70, 235), (110, 210), (112, 185), (128, 160), (150, 150),
        (182, 138), (172, 122), (155, 100)])
    outline &= ~_ellipse(hw, (395.0, 468.0), (244.0, 244.0))  # the helmet in front of her
    return _crop("person", "astronaut", rgb, refine_outline(rgb, outline, 5), "skimage.data.astronaut", 20.0)


def _coins() -> list[Cutout]:
    from skimage import data
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    gray = data.coins()
    markers = np.zeros(gray.shape, np.int32)
    markers[gray < 30] = 1
    markers[gray > 150] = 2
    coins = fill_holes(watershed(sobel(gray), markers) == 2)
    n, labels = cv2.connectedComponents(coins.astype(np.uint8), connectivity=8)
    # A faint warm tint: the photo is greyscale, real silver is slightly warm.
    rgb = np.clip(gray[:, :, None] * np.array([1.0, 0.97, 0.90]), 0, 255).astype(np.uint8)
    out = []
    for i in range(1, n):
        mask = labels == i
        if mask.sum() < 500:  # specks between coins
            continue
        out.append(_crop("coin", f"coin{len(out):02d}", rgb, mask, "skimage.data.coins", None))
    return out


def _horse() -> Cutout:
    from skimage import data

    mask = ~data.horse()  # the silhouette is False on a True background
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    grain = cv2.GaussianBlur(data.gravel()[: mask.shape[0], : mask.shape[1]].astype(np.float32), (0, 0), 2.0)
    grain = (grain - grain.mean()) / (grain.std() + 1e-6)
    shade = (0.62 + 0.38 * np.clip(depth / 14.0, 0, 1)) * (1.0 + 0.05 * grain)
    coat = np.array([150.0, 96.0, 58.0])  # bay brown
    rgb = np.clip(shade[:, :, None] * coat, 0, 255).astype(np.uint8)
    rgb[~mask] = 255
    return _crop("horse", "silhouette", rgb, mask, "skimage.data.horse", 25.0)


@functools.lru_cache(maxsize=1)
def all_cutouts() -> dict[str, tuple[Cutout, ...]]:
    """Every cutout by category (``CATEGORIES``), computed once per process."""
    return {
        "cat": (_cat(),),
        "cup": (_cup(),),
        "rocket": (_rocket(),),
        "person": (_person(),),
        "coin": tuple(_coins()),
        "horse": (_horse(),),
    }
