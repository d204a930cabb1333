"""Basic colour names for object pixels.

``color_name(rgb_pixels)`` names the dominant colour of an object's pixels with one of the eleven
basic colour terms (Berlin & Kay): black, white, gray, red, orange, yellow, green, blue, purple,
pink, brown. Each pixel is classified by hue / saturation / value buckets and the name is the
majority vote, so shading (a dark side, a highlight) and a little texture do not change the
answer. When no colour clearly dominates (a striped or multicoloured object) the answer is
``None``: a referring expression must not rest on a colour a reader could dispute.

``MARK_COLORS`` is the palette perception samples overlay masks in ("Mark the left cat in red").
"""
from __future__ import annotations

import numpy as np

COLOR_NAMES = (
    "black", "white", "gray", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown",
)

# Reference RGB per name: used for marking overlays and by tests that render colours.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "red": (255, 0, 0),
    "orange": (255, 140, 0),
    "yellow": (255, 230, 0),
    "green": (0, 200, 0),
    "blue": (0, 60, 255),
    "purple": (140, 0, 200),
    "pink": (255, 120, 190),
    "brown": (140, 80, 20),
}

# Saturated, mutually distinct overlay colours (InstructDiffusion marks masks in plain colours).
MARK_COLORS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("red", (255, 0, 0)),
    ("green", (0, 255, 0)),
    ("blue", (0, 0, 255)),
    ("yellow", (255, 255, 0)),
    ("purple", (160, 32, 240)),
    ("orange", (255, 165, 0)),
)

# Thresholds on HSV with S and V in [0, 1] and H in degrees. Chosen so that an object shaded down
# to about a third of its brightness keeps its hue name, and pastel tints count as their hue.
_BLACK_V = 0.18          # darker than this: black whatever the hue
_ACHROMATIC_S = 0.22     # less saturated than this: white / gray
_WHITE_V = 0.78          # an unsaturated pixel brighter than this is white
_BROWN_V = 0.62          # orange / yellow hues darker than this read as brown
_PINK_S = 0.55           # red / magenta hues this pale and bright read as pink
_PINK_V = 0.65
# Hue bucket upper bounds (degrees), in order; red wraps around 0.
_HUE_BOUNDS = ((15.0, "red"), (42.0, "orange"), (70.0, "yellow"), (165.0, "green"),
               (255.0, "blue"), (290.0, "purple"), (335.0, "pink"), (360.0, "red"))

# Majority rule: the winning name must cover this share of the pixels and beat the runner-up by
# this factor, else the colour is called undecidable.
MIN_SHARE = 0.45
MIN_LEAD = 1.6
# A majority vote is settled long before this many pixels; larger objects are subsampled with a
# fixed stride (deterministic, and spread over the whole object).
MAX_VOTERS = 4096


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rgb``: Nx3 uint8. Returns (hue in degrees [0, 360), saturation [0, 1], value [0, 1]),
    each an N float64 array."""
    x = np.asarray(rgb, dtype=np.float64) / 255.0
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = x.max(axis=1)
    c = v - x.min(axis=1)
    s = np.divide(c, v, out=np.zeros_like(v), where=v > 0)
    safe_c = np.where(c > 0, c, 1.0)
    h = np.where(
        v == r, ((g - b) / safe_c) % 6.0,
        np.where(v == g, (b - r) / safe_c + 2.0, (r - g) / safe_c + 4.0),
    )
    h = np.where(c > 0, h * 60.0, 0.0) % 360.0
    return h, s, v


def classify_pixels(rgb_pixels: np.ndarray) -> np.ndarray:
    """Name every pixel. ``rgb_pixels``: Nx3 uint8 RGB. Returns N int indices into ``COLOR_NAMES``."""
    idx = {name: i for i, name in enumerate(COLOR_NAMES)}
    h, s, v = rgb_to_hsv(rgb_pixels)
    bounds = np.array([upper for upper, _ in _HUE_BOUNDS])
    bucket_names = np.array([idx[name] for _, name in _HUE_BOUNDS])
    out = bucket_names[np.minimum(np.searchsorted(bounds, h, side="right"), len(bounds) - 1)]
    # Shaded orange / yellow is what people call brown.
    warm = (out == idx["orange"]) | (out == idx["yellow"])
    out = np.where(warm & (v < _BROWN_V), idx["brown"], out)
    # Light, pale reds and magentas are pink; a dark magenta is purple (pink needs light).
    reddish = (out == idx["red"]) | (out == idx["pink"])
    out = np.where(reddish & (s < _PINK_S) & (v > _PINK_V), idx["pink"], out)
    out = np.where((out == idx["pink"]) & (v <= _PINK_V), idx["purple"], out)
    out = np.where(s < _ACHROMATIC_S, np.where(v > _WHITE_V, idx["white"], idx["gray"]), out)
    return np.where(v < _BLACK_V, idx["black"], out)


def color_votes(rgb_pixels: np.ndarray) -> dict[str, float]:
    """Share of pixels per colour name (only names that occur). ``rgb_pixels``: Nx3 uint8."""
    pixels = np.asarray(rgb_pixels)
    if pixels.ndim != 2 or pixels.shape[1] != 3 or len(pixels) == 0:
        return {}
    if len(pixels) > MAX_VOTERS:
        pixels = pixels[:: -(-len(pixels) // MAX_VOTERS)]
    counts = np.bincount(classify_pixels(pixels), minlength=len(COLOR_NAMES))
    total = counts.sum()
    return {COLOR_NAMES[i]: counts[i] / total for i in np.flatnonzero(counts)}


def name_from_votes(votes: dict[str, float]) -> str | None:
    """The winning name of ``color_votes`` output, or None unless it has ``MIN_SHARE`` of the
    pixels and a ``MIN_LEAD`` lead over the runner-up."""
    if not votes:
        return None
    ranked = sorted(votes.items(), key=lambda kv: kv[1], reverse=True)
    best_name, best = ranked[0]
    runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
    if best < MIN_SHARE or best < MIN_LEAD * runner_up:
        return None
    return best_name


def color_name(rgb_pixels: np.ndarray, *, min_pixels: int = 16) -> str | None:
    """The dominant basic colour name of an object's pixels, or None when undecidable.

    ``rgb_pixels``: Nx3 uint8 RGB (e.g. ``image[mask]``). None when there are fewer than
    ``min_pixels`` pixels or no name wins ``MIN_SHARE`` of them with a ``MIN_LEAD`` lead.
    """
    pixels = np.asarray(rgb_pixels)
    if pixels.ndim != 2 or len(pixels) < min_pixels:
        return None
    return name_from_votes(color_votes(pixels))


def instance_color_votes(image: np.ndarray, mask: np.ndarray | None, *, min_pixels: int = 16) -> dict[str, float]:
    """``color_votes`` of the pixels of ``image`` (HxWx3 uint8) under ``mask`` (HxW bool); empty
    without a mask or with fewer than ``min_pixels`` pixels."""
    if mask is None:
        return {}
    pixels = image[mask]
    return color_votes(pixels) if len(pixels) >= min_pixels else {}


def instance_color(image: np.ndarray, mask: np.ndarray | None) -> str | None:
    """Colour name of the pixels of ``image`` (HxWx3 uint8) under ``mask`` (HxW bool); None
    without a mask or when undecidable."""
    return name_from_votes(instance_color_votes(image, mask))
