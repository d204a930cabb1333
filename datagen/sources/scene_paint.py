"""Pixel painting for the demo scenes: textured grounds, recolouring, pasting, mirror panels.

All images are ``HxWx3 uint8 RGB``; masks ``HxW bool``; ``labels`` is an ``HxW int32`` map of
which instance owns each visible pixel (-1 = none), so instance masks come out occlusion-aware:
whatever is painted later covers what was there.
"""
from __future__ import annotations

import functools

import cv2
import numpy as np

# Ground textures: greyscale photos from skimage.data mapped onto a dark -> light colour ramp.
TEXTURES = {
    "grass": ("grass", (18, 42, 10), (150, 200, 92)),
    "brick": ("brick", (72, 30, 22), (214, 126, 92)),
    "gravel": ("gravel", (52, 48, 44), (214, 204, 188)),
    "sand": ("moon", (118, 92, 58), (242, 218, 172)),
}

# Recolour palette: name -> (hue in degrees, saturation floor, value floor). The floors keep the
# result inside the name's colour region (orange and yellow must stay bright or they read as
# brown; nothing may get dark enough to read as black) while the photo's shading survives.
PALETTE = {
    "red": (0.0, 0.75, 0.35),
    "orange": (30.0, 0.80, 0.68),
    "yellow": (55.0, 0.75, 0.72),
    "green": (125.0, 0.60, 0.30),
    "blue": (220.0, 0.60, 0.34),
    "purple": (278.0, 0.55, 0.32),
}


def hue_distance(a: float, b: float) -> float:
    """Circular distance between two hues in degrees, in [0, 180]."""
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


@functools.lru_cache(maxsize=None)
def _normalised_texture(photo: str) -> np.ndarray:
    from skimage import data

    gray = getattr(data, photo)().astype(np.float32)
    # Same contrast for every texture (the moon photo is much flatter than the others).
    g = (gray - gray.mean()) / (gray.std() + 1e-6) * 0.18 + 0.5
    out = np.clip(g, 0.0, 1.0)
    out.flags.writeable = False
    return out


def ground(rng: np.random.Generator, hw: tuple[int, int], name: str) -> np.ndarray:
    """A random crop of texture ``name`` (a ``TEXTURES`` key), tinted, resized to ``hw``."""
    photo, dark, light = TEXTURES[name]
    tex = _normalised_texture(photo)
    h, w = hw
    zoom = rng.uniform(0.55, 1.0) * min(tex.shape[0] / h, tex.shape[1] / w)
    ch, cw = max(16, int(h * zoom)), max(16, int(w * zoom))
    y0 = int(rng.integers(0, tex.shape[0] - ch + 1))
    x0 = int(rng.integers(0, tex.shape[1] - cw + 1))
    crop = cv2.resize(tex[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    dark_c, light_c = np.array(dark, np.float32), np.array(light, np.float32)
    tint = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    rgb = (dark_c + crop[:, :, None] * (light_c - dark_c)) * tint
    return np.clip(rgb, 0, 255).astype(np.uint8)


def recolor(rgb: np.ndarray, color: str) -> np.ndarray:
    """Give ``rgb`` (hxwx3 uint8) the hue of ``PALETTE[color]``, keeping its shading."""
    hue, s_floor, v_floor = PALETTE[color]
    hsv = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[:, :, 0] = hue
    hsv[:, :, 1] = s_floor + (1.0 - s_floor) * hsv[:, :, 1]
    hsv[:, :, 2] = v_floor + (1.0 - v_floor) * hsv[:, :, 2]
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def resize_cutout(rgb: np.ndarray, mask: np.ndarray, size_wh: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a cutout to ``size_wh = (w, h)``; returns (hxwx3 uint8, hxw bool)."""
    w, h = size_wh
    shrink = w < rgb.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out_rgb = cv2.resize(np.asarray(rgb), (w, h), interpolation=interp)
    soft = cv2.resize(mask.astype(np.float32), (w, h), interpolation=interp)
    return out_rgb, soft >= 0.5


def paste(canvas: np.ndarray, labels: np.ndarray, rgb: np.ndarray, mask: np.ndarray,
          x0: int, y0: int, label: int, clip: tuple[int, int, int, int] | None = None) -> None:
    """Paint ``rgb`` where ``mask`` (both h x w) at top-left ``(x0, y0)`` into ``canvas`` (in place)
    and claim those pixels for ``label``. ``clip``: XYXY region outside which nothing is painted
    (default: the canvas)."""
    H, W = labels.shape
    cx0, cy0, cx1, cy1 = clip if clip is not None else (0, 0, W, H)
    h, w = mask.shape
    ax0, ay0 = max(x0, cx0), max(y0, cy0)
    ax1, ay1 = min(x0 + w, cx1), min(y0 + h, cy1)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    sub = mask[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    canvas[ay0:ay1, ax0:ax1][sub] = rgb[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0][sub]
    labels[ay0:ay1, ax0:ax1][sub] = label


def mirror_surface(rng: np.random.Generator, backdrop: np.ndarray) -> np.ndarray:
    """What a wall mirror shows: the room behind the viewer, here the ground texture flipped,
    softened, lightened towards a cool grey, with one diagonal sheen. ``backdrop``: hxwx3 uint8."""
    h, w = backdrop.shape[:2]
    room = cv2.GaussianBlur(backdrop[:, ::-1].astype(np.float32), (0, 0), 2.5)
    cool = np.array([196.0, 210.0, 222.0], np.float32)
    surface = 0.55 * room + 0.45 * cool
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    offset = rng.uniform(0.2, 0.8) * (w + h)
    sheen = np.exp(-(((xx + yy) - offset) / (0.12 * (w + h))) ** 2)
    surface = surface + 28.0 * sheen[:, :, None]
    return np.clip(surface, 0, 255).astype(np.uint8)


def reflect(rgb: np.ndarray, surface_mean: np.ndarray) -> np.ndarray:
    """A horizontally flipped, slightly cool and hazy copy of ``rgb`` (hxwx3 uint8), as seen in
    a mirror whose surface has mean colour ``surface_mean`` (3 floats)."""
    flipped = rgb[:, ::-1].astype(np.float32) * np.array([0.90, 0.95, 1.0], np.float32)
    return np.clip(0.86 * flipped + 0.14 * surface_mean, 0, 255).astype(np.uint8)


def draw_mirror(canvas: np.ndarray, labels: np.ndarray, rect: tuple[int, int, int, int],
                rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Paint a framed wall mirror over XYXY ``rect`` (in place): a dark wooden frame with a thin
    gilt inner edge around a ``mirror_surface``. Everything under the panel is covered, so its
    pixels are unlabelled. Returns the reflective interior as XYXY."""
    x0, y0, x1, y1 = rect
    t = max(4, int(round(0.06 * min(x1 - x0, y1 - y0))))
    ix0, iy0, ix1, iy1 = x0 + t, y0 + t, x1 - t, y1 - t
    surface = mirror_surface(rng, canvas[iy0:iy1, ix0:ix1])
    wood = np.array([92.0, 60.0, 36.0], np.float32) * rng.uniform(0.85, 1.15)
    # Light from the upper left: the frame's left and top are lighter than its right and bottom.
    shade = np.linspace(1.15, 0.8, x1 - x0, dtype=np.float32)[None, :, None]
    canvas[y0:y1, x0:x1] = np.clip(wood * shade, 0, 255).astype(np.uint8)
    canvas[iy0 - 1:iy1 + 1, ix0 - 1:ix1 + 1] = (205, 176, 112)
    canvas[iy0:iy1, ix0:ix1] = surface
    labels[y0:y1, x0:x1] = -1
    return (ix0, iy0, ix1, iy1)
