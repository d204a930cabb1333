"""Perception samples (paper §4.3): segmentation annotations as InstructDiffusion-style edits.

For each instance with a mask and a unique referring expression the target image is the source
with the mask overlaid in a plain colour at 0.5 opacity, and the instruction names the instance by
that expression: "Mark the left cat in red".

One sample per instance (not per attribute): the source/target pair depends only on the instance
and the colour, so one sample per attribute would repeat the same pair and over-weight instances
that happen to have several unique attributes. Instead the seeded choice picks the attribute used
in the instruction (varying across the dataset), the template, and the colour; the other unique
attributes' phrases join the paraphrases, since they name the same instance and the trainer samples
one phrasing per step. ``target["attributes"]`` lists every unique attribute for later filtering.

Skips are ``Quarantined`` with reason ``no_mask`` (box-only instance: a perception target must be
exact, so no mask is guessed here), ``tiny_instance`` (fewer than ``min_area`` mask pixels) or
``ambiguous`` (no attribute names it uniquely) or ``mark_invisible`` (no palette colour changes the
instance's mean colour by ``min_contrast``: a mark nobody can see teaches nothing).
"""
from __future__ import annotations

import platform
from typing import Iterator, Sequence

import numpy as np

import datagen
from datagen.instructions.colors import MARK_COLORS, instance_color
from datagen.instructions.referring import Referring, referring_table
from datagen.instructions.templates import choose, MARK_TEMPLATES, seeded_index
from datagen.schema import EditSample, ImageRecord, Instance, Quarantined, sample_key


def overlay_mask(image: np.ndarray, mask: np.ndarray, rgb: Sequence[int], opacity: float = 0.5) -> np.ndarray:
    """Blend ``rgb`` over ``image`` where ``mask`` is True.

    ``image``: HxWx3 uint8 RGB; ``mask``: HxW bool; ``rgb``: 3 ints in 0..255; ``opacity`` in
    [0, 1]. Returns a new HxWx3 uint8 image: outside the mask identical to ``image``, inside
    ``round_half_up((1 - opacity) * image + opacity * rgb)``.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    # A uint8 channel has 256 values: blend each once into a 256x3 table (the same float64
    # arithmetic per value, so the same bytes) and look up only the mask's bounding box, instead
    # of gathering every masked pixel as float64 -- that gather was the largest cost of importing
    # COCO-Stuff, whose regions cover half an image (bench/import.py --stages, "+importer").
    values = np.arange(256, dtype=np.float64).reshape(256, 1)
    colour = np.asarray(rgb, dtype=np.float64).reshape(1, 3)
    table = np.floor((1.0 - opacity) * values + opacity * colour + 0.5).astype(np.uint8)
    out = image.copy()
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return out
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    inside, region, painted = mask[box], image[box], out[box]
    for channel in range(3):
        np.copyto(painted[..., channel], table[:, channel].take(region[..., channel]), where=inside)
    return out


def mark_contrast(mean_rgb: np.ndarray, rgb: Sequence[int], opacity: float) -> float:
    """CIE76 delta E between an object's mean colour ``mean_rgb`` (3 floats, 0..255) and the
    same colour with ``rgb`` overlaid at ``opacity``: how much a mark changes the object."""
    import cv2

    before = np.asarray(mean_rgb, np.float32).reshape(1, 1, 3)
    after = (1.0 - opacity) * before + opacity * np.asarray(rgb, np.float32).reshape(1, 1, 3)
    lab = cv2.cvtColor(np.concatenate([before, after]) / 255.0, cv2.COLOR_RGB2Lab)
    return float(np.linalg.norm(lab[0, 0] - lab[1, 0]))


def package_versions() -> dict[str, str]:
    """Versions that determine the pixels of a perception sample."""
    return {"datagen": datagen.__version__, "numpy": np.__version__, "python": platform.python_version()}


class PerceptionBuilder:
    """``builder(record) -> Iterator[EditSample | Quarantined]``, one mark sample per instance.

    ``colors``: ``(name, (r, g, b))`` overlay palette; ``seed``: varies attribute, template and
    colour choices (deterministically per record and instance); ``opacity``: overlay alpha;
    ``min_area``: smallest mask (pixels) worth marking. ``min_contrast``: smallest CIE76 delta E
    a mark must make to the instance's mean colour (``mark_contrast``). ``masker``: a
    ``datagen.masking`` backend that masks box-only instances (detected ones, ``--detect``), one
    call per record; without it a box-only instance is skipped as ``no_mask``.
    """

    name = "perception"

    def __init__(
        self,
        colors: Sequence[tuple[str, Sequence[int]]] = MARK_COLORS,
        seed: int = 0,
        opacity: float = 0.5,
        min_area: int = 16,
        min_contrast: float = 40.0,
        masker=None,
    ):
        if not colors:
            raise ValueError("colors must name at least one overlay colour")
        self.colors = tuple((str(n), tuple(int(c) for c in rgb)) for n, rgb in colors)
        self.seed = int(seed)
        self.opacity = float(opacity)
        self.min_area = int(min_area)
        self.min_contrast = float(min_contrast)
        self.masker = masker

    def settings(self) -> dict:
        """What determines the samples (part of every key and of the manifest)."""
        return {
            "colors": [[n, list(rgb)] for n, rgb in self.colors],
            "seed": self.seed,
            "opacity": self.opacity,
            "min_area": self.min_area,
            "min_contrast": self.min_contrast,
            **({"masker": self.masker.settings()} if self.masker is not None else {}),
        }

    def __call__(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        if self.masker is not None and any(i.mask is None for i in record.instances):
            from datagen.understanding.scene import with_masks

            boxes = np.array([i.box for i in record.instances], dtype=np.float64).reshape(-1, 4)
            record = with_masks(record, self.masker.masks(record.image, boxes, [i.mask for i in record.instances]))
        table = referring_table(record)
        for inst in record.instances:
            skip = self._skip_reason(inst, table[inst.id])
            if skip is not None:
                yield Quarantined(id=f"{record.id}/{inst.id}", reason=skip[0], detail=skip[1],
                                  source=record.source)
            else:
                yield self._sample(record, inst, table[inst.id])

    def _skip_reason(self, inst: Instance, refs: list[Referring]) -> tuple[str, str] | None:
        if inst.mask is None:
            return "no_mask", f"instance {inst.id} ({inst.category}) has a box but no mask"
        area = int(inst.mask.sum())
        if area < self.min_area:
            return "tiny_instance", f"instance {inst.id} mask has {area} pixels (< {self.min_area})"
        if not refs:
            return "ambiguous", f"no attribute names this {inst.category} uniquely among its category"
        return None

    def _pick_colour(self, record: ImageRecord, inst: Instance, refs: list[Referring]) -> tuple[str, tuple] | None:
        """Seeded palette colour that shows on this instance: not its own colour name (a red
        mark on a red rocket) and changing its mean colour by at least ``min_contrast`` (an orange
        mark on a yellow coin barely shows). ``None`` when no palette colour does."""
        own = next((r.value for r in refs if r.attribute == "color"), None)
        own = own or inst.attributes.get("color") or instance_color(record.image, inst.mask)
        mean = record.image[inst.mask].reshape(-1, 3).mean(axis=0)
        usable = [c for c in self.colors
                  if c[0] != own and mark_contrast(mean, c[1], self.opacity) >= self.min_contrast]
        if not usable:
            return None
        return usable[seeded_index(len(usable), self.seed, record.id, inst.id, "colour")]

    @staticmethod
    def _quality(mask: np.ndarray) -> dict:
        """Scores only: the overlay is exact by construction, so there is no check to fail (the
        ``{"scores", "passed", "failed"}`` shape matches ``datagen.quality.QualityReport``)."""
        area = int(mask.sum())
        return {"scores": {"mask_area": area, "mask_fraction": area / mask.size}, "passed": [], "failed": {}}

    def _sample(self, record: ImageRecord, inst: Instance, refs: list[Referring]) -> EditSample | Quarantined:
        chosen = refs[seeded_index(len(refs), self.seed, record.id, inst.id, "attribute")]
        others = [r for r in refs if r is not chosen]
        picked = self._pick_colour(record, inst, refs)
        if picked is None:
            return Quarantined(id=f"{record.id}/{inst.id}", reason="mark_invisible", source=record.source,
                               detail=f"no mark colour changes this {inst.category} by {self.min_contrast} "
                                      f"(CIE76 delta E of its mean colour)")
        colour_name, rgb = picked
        key = (record.id, inst.id)
        values = {"colour": colour_name}
        phrasing = choose(MARK_TEMPLATES, {**values, "ref": chosen.phrase}, self.seed, ("mark", *key))
        # Same template for the other attributes' phrases, so only the naming differs.
        alternatives = [choose(MARK_TEMPLATES, {**values, "ref": r.phrase}, self.seed, ("mark", *key)).instruction
                        for r in others]
        settings = self.settings()
        return EditSample(
            key=sample_key(record.id, inst.id, "mark", settings),
            src=record.image,
            tgt=overlay_mask(record.image, inst.mask, rgb, self.opacity),
            mask=inst.mask,
            instruction=phrasing.instruction,
            paraphrases=[*phrasing.paraphrases, *alternatives],
            scenario="perception",
            op="mark",
            target={
                "category": inst.category,
                "instance": inst.id,
                "attribute": chosen.attribute,
                "value": chosen.value,
                "phrase": chosen.phrase,
                "attributes": [r.to_dict() for r in refs],
                "box": [float(v) for v in inst.box],
                "colour": colour_name,
                "colour_rgb": list(rgb),
            },
            provenance={
                "record": record.id,
                "source": record.source,
                "builder": self.name,
                "settings": settings,
                "seed": self.seed,
                "versions": package_versions(),
            },
            quality=self._quality(inst.mask),
        )
