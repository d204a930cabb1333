"""Built-in demo scenes: multi-instance images composed from real photographs, with ground truth.

Nothing is downloaded: objects are cut out of the photographs bundled in scikit-image (see
``datagen.sources.cutouts`` for which photo each category comes from and how it was cut) and
pasted onto ground textures that are photographs too (``skimage.data`` grass, brick, gravel and
the moon's surface as sand; see ``scene_paint.TEXTURES``).

A scene (``make_scene(index, seed)``) is 384-512 px wide and 320-448 px high and holds 2-4
instances of one *primary* category (``cat``, ``cup``, ``rocket``, ``person``, ``coin``,
``horse``) and 0-2 of a *secondary* one, standing roughly on a common ground line. Each scene is
built to exercise one way of naming an instance, its ``mode`` (``meta["scene"]["mode"]``):

* ``location`` (30 %): 2-4 primaries of near-equal size, apart from each other, so
  left / middle / right is clear and size is deliberately not;
* ``size`` (25 %): 2-3 primaries whose heights step by 1.4x (area ratio about 2);
* ``color`` (25 %): 2-4 primaries; usually all of them recoloured to distinct named hues (at
  least 45 degrees apart), otherwise just one; a recolour is always at least 60 degrees from the
  photo's own hue, so the photo's colour never shares its name;
* ``mirror`` (20 %): a framed wall mirror on the left or right showing a flipped, slightly cool
  and hazy copy of the real primary nearest to it; 1-2 real primaries stand in front.

Instances may overlap (objects lower in the picture are in front); each keeps at least 70 % of
its pixels visible (60 % for a reflection, which the frame may crop). Ground truth per instance:

* ``mask``: exactly the visible pixels of the object (HxW bool), ``box``: its tight XYXY box;
* ``attributes["in_mirror"]``: True for the reflection, False for every other instance;
  ``attributes["reflection_of"]``: on the reflection, the id of the real instance it shows;
* ``attributes["color"]``: the palette name (``scene_paint.PALETTE``) of a recoloured instance,
  absent when the instance shows the photo's own colours.

Scenes are a pure function of ``(index, seed)``: the same pair gives identical pixels in every
process (all randomness comes from ``numpy.random.default_rng([seed, index])``; the cutouts are
deterministic). Generating one takes a few milliseconds once the cutouts are cached (~2 s, once
per process). ``donor_objects()`` gives the same cutouts as replacement objects for "Replace the
smaller cat with a cup" edits; ``write_coco`` (re-exported here) writes any catalog to disk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.schema import ImageRecord, Instance, Quarantined
from datagen.sources import scene_paint as paint
from datagen.sources.annotations import box_from_mask
from datagen.sources.base import Catalog
from datagen.sources.coco_writer import write_coco
from datagen.sources.cutouts import CATEGORIES, Cutout, all_cutouts

__all__ = ["DemoScenes", "Donor", "donor_objects", "make_scene", "scene_without", "write_coco", "CATEGORIES"]

SCENE_SIZES = ((512, 384), (448, 448), (384, 384), (512, 320), (448, 336))  # (W, H)
MODES = ("location", "size", "color", "mirror")
MODE_WEIGHTS = (0.30, 0.25, 0.25, 0.20)
# Object height as a fraction of the scene height, before fitting the row into the width.
HEIGHT_RANGE = {
    "cat": (0.28, 0.42), "cup": (0.25, 0.38), "rocket": (0.50, 0.75),
    "person": (0.35, 0.55), "coin": (0.14, 0.22), "horse": (0.28, 0.42),
}
SIZE_STEP = 1.4             # height ratio between neighbours in a size scene
MIN_VISIBLE = 0.70          # visible share of an object's pixels
MIN_VISIBLE_REFLECTION = 0.60
MIN_PIXELS = 300            # visible pixels of the smallest acceptable instance
MIN_HUE_GAP_NATURAL = 60.0  # recolour hue vs the photo's own hue
MIN_HUE_GAP_PAIR = 45.0     # between two recolours in one scene
_ATTEMPTS = 12


@dataclass
class Donor:
    """A replacement object: ``rgb`` hxwx3 uint8 and ``mask`` hxw bool, cropped to the object."""

    category: str
    rgb: np.ndarray
    mask: np.ndarray
    source: str = ""
    variant: str = ""


def donor_objects() -> list[Donor]:
    """One donor per category (three for ``coin``), in ``CATEGORIES`` order; fresh copies."""
    donors = []
    for category, cutouts in all_cutouts().items():
        for c in cutouts[:3] if category == "coin" else cutouts[:1]:
            donors.append(Donor(category, c.rgb.copy(), c.mask.copy(), c.source, c.variant))
    return donors


@dataclass
class _Item:
    """One object to place: its cutout, target height in px and optional recolour."""

    cutout: Cutout
    height: float
    color: str | None = None
    role: str = "primary"

    @property
    def aspect(self) -> float:
        h, w = self.cutout.mask.shape
        return w / h


def _pick_cutout(rng, category: str) -> Cutout:
    options = all_cutouts()[category]
    return options[int(rng.integers(len(options)))]


def _primary_items(rng, mode: str, category: str, H: int) -> list[_Item]:
    lo, hi = HEIGHT_RANGE[category]
    base = rng.uniform(lo, hi) * H
    if mode == "size":
        n = int(rng.choice([2, 2, 3]))
        steps = rng.permutation(n)
        top = min(hi * 1.1, 0.85) * H
        heights = [top / SIZE_STEP ** (n - 1 - int(k)) for k in steps]
    elif mode == "location":
        n = int(rng.choice([2, 3, 3, 4]))
        heights = [base * rng.uniform(0.97, 1.03) for _ in range(n)]
    elif mode == "color":
        n = int(rng.choice([2, 3, 3, 4]))
        heights = [base * rng.uniform(0.92, 1.08) for _ in range(n)]
    else:  # mirror: the real ones; the reflection is added at render time
        n = int(rng.choice([1, 2]))
        heights = [base * rng.uniform(0.92, 1.08) for _ in range(n)]
    items = [_Item(_pick_cutout(rng, category), h) for h in heights]
    if mode == "color":
        items = _assign_colors(rng, items)
    return items


def _assign_colors(rng, items: list[_Item]) -> list[_Item]:
    """Usually recolour every item with mutually distinct hues (dropping items when the palette
    runs short); otherwise recolour one item and leave the rest in the photo's colours."""
    natural = items[0].cutout.hue
    allowed = [name for name, (hue, _, _) in paint.PALETTE.items()
               if natural is None or paint.hue_distance(hue, natural) >= MIN_HUE_GAP_NATURAL]
    order = [allowed[i] for i in rng.permutation(len(allowed))]
    if rng.random() < 0.3:
        items[int(rng.integers(len(items)))].color = order[0]
        return items
    chosen: list[str] = []
    for name in order:
        if all(paint.hue_distance(paint.PALETTE[name][0], paint.PALETTE[c][0]) >= MIN_HUE_GAP_PAIR for c in chosen):
            chosen.append(name)
    items = items[:max(2, len(chosen))]
    for item, name in zip(items, chosen):
        item.color = name
    return items


def _secondary_items(rng, primary: str, mode: str, H: int) -> list[_Item]:
    n = int(rng.choice([0, 1, 1, 2] if mode != "mirror" else [0, 1]))
    if n == 0:
        return []
    others = [c for c in CATEGORIES if c != primary]
    category = others[int(rng.integers(len(others)))]
    lo, hi = HEIGHT_RANGE[category]
    return [_Item(_pick_cutout(rng, category), rng.uniform(lo, hi) * H, role="secondary") for _ in range(n)]


def _row_layout(rng, items: list[_Item], W: int, H: int, shrink: float, overlap: bool):
    """Left-to-right positions along a ground line. Returns [(x0, y0, w, h)] per item."""
    heights = np.array([it.height for it in items]) * shrink
    widths = heights * np.array([it.aspect for it in items])
    avail = 0.92 * W
    fit = min(1.0, avail / widths.sum(), 0.9 * H / heights.max())
    heights, widths = heights * fit, widths * fit
    gaps = rng.dirichlet(np.ones(len(items) + 1)) * (avail - widths.sum())
    order = rng.permutation(len(items))
    ground = rng.uniform(0.66, 0.97) * H
    boxes = [None] * len(items)
    x = 0.04 * W
    for slot, idx in enumerate(order):
        x += gaps[slot]
        w, h = max(1, int(round(widths[idx]))), max(1, int(round(heights[idx])))
        x0 = int(round(x))
        if overlap and slot > 0 and rng.random() < 0.35:
            x0 -= int(rng.uniform(0.05, 0.3) * min(w, boxes[order[slot - 1]][2]))
        bottom = ground + rng.uniform(-0.05, 0.05) * H
        bottom = min(max(bottom, h + 0.02 * H), H - 2)
        boxes[idx] = (max(0, x0), int(round(bottom)) - h, w, h)
        x += widths[idx]
    return boxes


def _mirror_rect(rng, W: int, H: int) -> tuple[int, int, int, int]:
    pw, ph = int(rng.uniform(0.30, 0.40) * W), int(rng.uniform(0.48, 0.60) * H)
    x0 = int(rng.uniform(0.02, 0.06) * W)
    if rng.random() < 0.5:
        x0 = W - x0 - pw
    y0 = int(rng.uniform(0.03, 0.08) * H)
    return (x0, y0, x0 + pw, y0 + ph)


class _Canvas:
    """The scene being painted: pixels, label map, each label's full (unoccluded) area, and the
    paints in order (so the scene can be repainted without some objects: the ground truth of a
    removal)."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.labels = np.full(image.shape[:2], -1, np.int32)
        self.full_area: dict[int, int] = {}
        self.plate: np.ndarray | None = None  # pixels before the first object: ground (+ mirror)
        self.placed: list[tuple] = []

    def place(self, label, rgb, mask, x0, y0, clip=None):
        if self.plate is None:
            self.plate = self.image.copy()
        paint.paste(self.image, self.labels, rgb, mask, x0, y0, label, clip)
        self.full_area[label] = int(mask.sum())
        self.placed.append((label, rgb, mask, x0, y0, clip))

    def without(self, labels: set[int]) -> np.ndarray:
        """The scene painted again leaving out ``labels``: HxWx3 uint8."""
        image = (self.plate if self.plate is not None else self.image).copy()
        scratch = np.full(image.shape[:2], -1, np.int32)
        for label, rgb, mask, x0, y0, clip in self.placed:
            if label not in labels:
                paint.paste(image, scratch, rgb, mask, x0, y0, label, clip)
        return image


def _object_pixels(item: _Item, w: int, h: int, rng) -> tuple[np.ndarray, np.ndarray]:
    rgb, mask = paint.resize_cutout(item.cutout.rgb, item.cutout.mask, (w, h))
    if item.color:
        rgb = paint.recolor(rgb, item.color)
    # Each object gets its own exposure, as if lit a little differently.
    gain = rng.uniform(0.9, 1.1)
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8), mask


def _render(rng, background, items, mirror_rect, shrink, overlap):
    """One layout attempt. Returns (canvas, [(label, item, reflects)], ok); ``reflects`` is the
    label of the real object a reflection shows, None for a real object."""
    H, W = background.shape[:2]
    canvas = _Canvas(background.copy())
    boxes = _row_layout(rng, items, W, H, shrink, overlap)
    drawn = [(k, it, None) for k, it in enumerate(items)]
    pixels = [_object_pixels(it, b[2], b[3], rng) for it, b in zip(items, boxes)]
    if mirror_rect is not None:
        interior = paint.draw_mirror(canvas.image, canvas.labels, mirror_rect, rng)
        _draw_reflection(rng, canvas, interior, items, boxes, pixels, label=len(items))
        shown = _nearest_real(items, boxes, interior)
        drawn.append((len(items), items[shown], shown))
    # Painter's order: objects standing lower in the picture are nearer, so drawn later.
    for k in sorted(range(len(items)), key=lambda k: boxes[k][1] + boxes[k][3]):
        rgb, mask = pixels[k]
        canvas.place(k, rgb, mask, boxes[k][0], boxes[k][1])
    ok = all(_visible_enough(canvas, label, reflects is not None) for label, _, reflects in drawn)
    return canvas, drawn, ok


def _nearest_real(items, boxes, interior) -> int:
    mid = (interior[0] + interior[2]) / 2
    primaries = [k for k, it in enumerate(items) if it.role == "primary"]
    return min(primaries, key=lambda k: abs(boxes[k][0] + boxes[k][2] / 2 - mid))


def _draw_reflection(rng, canvas, interior, items, boxes, pixels, label):
    ix0, iy0, ix1, iy1 = interior
    k = _nearest_real(items, boxes, interior)
    rgb, mask = pixels[k]
    scale = min(rng.uniform(0.55, 0.8), 0.85 * (iy1 - iy0) / mask.shape[0], 0.85 * (ix1 - ix0) / mask.shape[1])
    w, h = max(1, int(mask.shape[1] * scale)), max(1, int(mask.shape[0] * scale))
    small_rgb, small_mask = paint.resize_cutout(rgb, mask, (w, h))
    surface_mean = canvas.image[iy0:iy1, ix0:ix1].reshape(-1, 3).mean(axis=0)
    mirrored = paint.reflect(small_rgb, surface_mean)
    x0 = int((ix0 + ix1 - w) / 2 + rng.uniform(-0.25, 0.25) * max(0, ix1 - ix0 - w))
    y0 = int(iy1 - h - rng.uniform(0.0, 0.12) * (iy1 - iy0))
    canvas.place(label, mirrored, small_mask[:, ::-1], x0, y0, clip=interior)


def _visible_enough(canvas: _Canvas, label: int, in_mirror: bool) -> bool:
    visible = int((canvas.labels == label).sum())
    need = MIN_VISIBLE_REFLECTION if in_mirror else MIN_VISIBLE
    return visible >= MIN_PIXELS and visible >= need * canvas.full_area.get(label, 1)


def make_scene(index: int, seed: int = 0) -> ImageRecord:
    """Demo scene number ``index`` of the scene set ``seed``; see the module docstring.

    Returns an ``ImageRecord`` with id ``demo:s{seed}:{index:05d}``, an HxWx3 uint8 image,
    instances with exact HxW bool masks and XYXY boxes, and ``meta["scene"]`` describing the
    choices made (mode, categories, ground, mirror rectangle, per-instance source photo).
    """
    return _compose(index, seed)[0]


def scene_without(index: int, seed: int, instance_ids) -> np.ndarray:
    """Ground truth of a removal: demo scene ``(index, seed)`` painted without the instances
    ``instance_ids`` (ids as in ``make_scene``), HxWx3 uint8 RGB. Objects they hid come back."""
    _, canvas = _compose(index, seed)
    return canvas.without({int(i) for i in instance_ids})


def _compose(index: int, seed: int) -> tuple[ImageRecord, _Canvas]:
    rng = np.random.default_rng([int(seed), int(index)])
    W, H = SCENE_SIZES[int(rng.integers(len(SCENE_SIZES)))]
    mode = str(rng.choice(MODES, p=MODE_WEIGHTS))
    primary = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
    ground_name = list(paint.TEXTURES)[int(rng.integers(len(paint.TEXTURES)))]
    background = paint.ground(rng, (H, W), ground_name)
    items = _primary_items(rng, mode, primary, H) + _secondary_items(rng, primary, mode, H)
    mirror_rect = _mirror_rect(rng, W, H) if mode == "mirror" else None
    for attempt in range(_ATTEMPTS):
        shrink = 0.92 ** attempt
        canvas, drawn, ok = _render(rng, background, items, mirror_rect, shrink, overlap=attempt < _ATTEMPTS // 2)
        if ok:
            break
    instances, described = [], {}
    for label, item, reflects in drawn:
        mask = canvas.labels == label
        if int(mask.sum()) < MIN_PIXELS:  # only if every attempt failed (not seen in 1,200 scenes)
            continue
        attributes: dict = {"in_mirror": reflects is not None}
        if reflects is not None:
            attributes["reflection_of"] = str(reflects)
        if item.color:
            attributes["color"] = item.color
        iid = str(label)
        instances.append(Instance(iid, item.cutout.category, box_from_mask(mask), mask, attributes))
        described[iid] = {"source": item.cutout.source, "variant": item.cutout.variant, "role": item.role}
    secondary = next((it.cutout.category for it in items if it.role == "secondary"), None)
    meta = {"scene": {
        "index": int(index), "seed": int(seed), "mode": mode, "primary": primary, "secondary": secondary,
        "ground": ground_name, "size": [W, H], "mirror": list(mirror_rect) if mirror_rect else None,
        "instances": described,
    }}
    return ImageRecord(f"demo:s{int(seed)}:{int(index):05d}", canvas.image, instances, "demo", meta), canvas


class DemoScenes(Catalog):
    """Catalog of ``n`` demo scenes of scene set ``seed`` (ids ``demo:s{seed}:{index:05d}``)."""

    def __init__(self, n: int, seed: int = 0):
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n, self.seed = int(n), int(seed)
        self.name = f"demo-s{self.seed}"
        self.source = f"demo:{self.n}:{self.seed}"
        self._ids = [f"demo:s{self.seed}:{i:05d}" for i in range(self.n)]
        self._index = {rid: i for i, rid in enumerate(self._ids)}

    def ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, record_id) -> bool:
        return record_id in self._index

    def _load(self, record_id: str) -> ImageRecord | Quarantined:
        return make_scene(self._index[record_id], self.seed)
