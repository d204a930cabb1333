"""Understanding-scenario samples (paper §4.3, supplement §2, Fig. 1): remove / add / replace.

From an image ``x1`` whose instance is named uniquely by an attribute and a donor object of
another category (``x2`` cut by its mask):

    mask (masker)  ->  remove it (inpainter, hole = dilated mask)            -> y1
    paste the donor into y1 at the removed instance's box (compositing)      -> y3
    harmonize the pasted object (harmonizer)                                 -> y4

and three samples per instance, all sharing ``y1`` (each instance is masked once, inpainted once):

* ``remove``  x1 -> y1  "Remove the smaller cat"               mask = hole
* ``add``     y1 -> x1  "Add a cat to the right of the cat"    mask = hole
* ``replace`` x1 -> y4  "Replace the smaller cat with a cup"   mask = hole | pasted object

Guarantees the trainer relies on (tests check them on ground-truth scenes): pixels outside a
sample's mask are identical in src and tgt, and every other instance is left untouched (the hole
and the paste exclude the other instances' masks). Inpainters return pixels outside the hole
unchanged by contract, which the ``background`` quality check verifies rather than this code
repairing; harmonizers may blend a thin band around the pasted object (Poisson), so the replace
mask is ``hole | (pasted object grown by harmonize_band_px, minus other instances)`` and anything a
harmonizer changes beyond it is discarded.

Decisions:

* Candidates: instances of a category with >= 2 instances (the paper's case), and with
  ``multi_object=True`` also the only instance of its category in an image with other objects
  ("Remove the cup": the paper's "multiple objects" attribute ``count``).
* An instance cut by the image border is kept by default (``border="clip"``): removal is the same,
  the donor is scaled by the uncut side and clipped at the frame (``datagen.compositing``). Its
  visible size is not its size, so ``size`` expressions ("the smaller cat") are not used for a
  category where any instance touches the border. ``border="skip"`` skips such instances
  (reason ``touches_border``).
* Donors: a donor of any pixel size, also larger than the image, is scaled to the removed box (it
  is not a reason to skip); a donor that would have to be enlarged more than ``max_upscale`` times
  is (``donor_too_small``: a blown-up cutout is a blur). A donor whose shape would cover less
  than ``MIN_DONOR_FILL`` of the removed object's area in its box is not chosen (``donor_misfit``
  when none fits). Broken donors (empty mask, shape
  mismatch) are set aside at start-up (``builder.donor_problems``) and never chosen.
* Anchors for ``add``: remaining instances with a relation that holds by box geometry
  (``referring.relation_to``) and a phrase that is unique in y1; same category first, then by
  distance; never across the mirror plane (left/right of a reflection is not a statement about
  the room).
* Mirrors (see ``datagen.instructions.referring`` for how reflections are named): an object and
  its reflection (``attributes["reflection_of"]`` on the reflection) stay consistent. Removing the
  object removes its reflection too ("Remove the cat outside the mirror" leaves no cat in the
  mirror); a reflection alone may be removed ("Remove the cat in the mirror", as in the paper);
  neither is replaced (``reflected``: a pasted donor has no mirror image).

Skips are ``Quarantined`` (counted by the runner) with reasons: record level ``bad_image``,
``no_instances``, ``one_instance``, ``bad_box``, ``bad_mask``, ``mask_failed``; instance level
``empty_mask``, ``tiny_instance``, ``touches_border``, ``ambiguous``; per op ``no_anchor`` (add),
``reflected`` / ``no_donor`` / ``donor_misfit`` / ``donor_too_small`` / ``paste_too_small`` /
``empty_paste`` (replace) and ``quality:<check>``.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

import datagen
from datagen.compositing import (
    MIN_DONOR_FILL,
    MIN_PASTE_SIDE,
    CompositingError,
    fitted_area,
    paste,
    touching_sides,
)
from datagen.instructions.referring import Referring, referring_table
from datagen.instructions.templates import (
    ADD_TEMPLATES,
    REMOVE_TEMPLATES,
    REPLACE_TEMPLATES,
    choose,
    seeded_index,
    with_article,
)
from datagen.inpainting import inpaint_batch
from datagen.quality import QualityChecker, QualityReport, dilate
from datagen.schema import EditSample, ImageRecord, Instance, Quarantined, sample_key
from datagen.understanding.donors import PreparedDonor, prepare_donors
from datagen.understanding.scene import (
    find_anchor,
    has_repeated_category,
    record_problem,
    reflection_index,
    restrict_to,
    usable_refs,
    with_masks,
)

OPS = ("remove", "add", "replace")
BORDER_POLICIES = ("clip", "skip")


@dataclass
class _Hole:
    """One instance planned for removal, before inpainting."""

    instance: Instance
    refs: list[Referring]
    object_mask: np.ndarray  # HxW bool, the masker's mask of the instance (and of its reflection)
    hole: np.ndarray  # HxW bool, dilated mask minus the other instances
    keep_out: np.ndarray  # HxW bool, every other instance's mask
    seed: int
    reflection_box: list[float] | None = None  # XYXY of the instance's reflection, removed with it


@dataclass
class _Removal:
    """One instance removed from x1: the shared intermediate of its three samples."""

    instance: Instance
    refs: list[Referring]
    object_mask: np.ndarray  # HxW bool, the masker's mask of the instance
    hole: np.ndarray  # HxW bool, dilated mask minus the other instances
    keep_out: np.ndarray  # HxW bool, every other instance's mask
    y1: np.ndarray  # HxWx3 uint8, x1 with the hole inpainted
    inpaint_seed: int
    report: QualityReport
    reflection_box: list[float] | None = None  # XYXY of the instance's reflection, removed with it


def _package_versions() -> dict[str, str]:
    return {"datagen": datagen.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "python": platform.python_version()}


def _backend_info(backend) -> dict:
    return {"name": getattr(backend, "name", type(backend).__name__), "settings": backend.settings()}


class UnderstandingBuilder:
    """``builder(record) -> Iterator[EditSample | Quarantined]``; see the module docstring.

    ``masker`` / ``inpainter`` / ``harmonizer``: stage backends (``datagen.masking`` ...).
    ``donors``: objects with ``category``, ``rgb`` (hxwx3 uint8) and ``mask`` (hxw bool).
    ``dilate_px``: hole margin around the instance mask (covers soft edges and shadows' fringe).
    ``min_area``: smallest instance mask in pixels. ``feather_px``: paste edge softness.
    """

    name = "understanding"

    def __init__(
        self,
        masker,
        inpainter,
        harmonizer,
        donors: Sequence,
        *,
        seed: int = 0,
        dilate_px: int = 6,
        min_area: int = 100,
        feather_px: float = 2.0,
        harmonize_band_px: int = 4,
        max_upscale: float = 4.0,
        border: str = "clip",
        multi_object: bool = True,
        ops: Sequence[str] = OPS,
        quality: QualityChecker | None = None,
    ):
        if border not in BORDER_POLICIES:
            raise ValueError(f"border must be one of {BORDER_POLICIES}, got {border!r}")
        unknown = set(ops) - set(OPS)
        if unknown or not ops:
            raise ValueError(f"ops must be a non-empty subset of {OPS}, got {list(ops)}")
        self.masker, self.inpainter, self.harmonizer = masker, inpainter, harmonizer
        self.seed, self.dilate_px, self.min_area = int(seed), int(dilate_px), int(min_area)
        self.feather_px, self.border, self.multi_object = float(feather_px), border, bool(multi_object)
        self.harmonize_band_px, self.max_upscale = int(harmonize_band_px), float(max_upscale)
        self.ops = tuple(op for op in OPS if op in ops)
        self.quality = quality if quality is not None else QualityChecker()
        self.donors, self.donor_problems = prepare_donors(donors)
        self._settings = self._compute_settings()
        self._versions = _package_versions()

    # ------------------------------------------------------------------ public

    def settings(self) -> dict:
        """What determines the samples: recorded in provenance and the manifest."""
        return self._settings

    def __call__(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        problem = record_problem(record)
        if problem is not None:
            yield Quarantined(id=record.id, reason=problem[0], detail=problem[1], source=record.source)
            return
        if not self.multi_object and not has_repeated_category(record):
            yield Quarantined(id=record.id, reason="one_instance", source=record.source,
                              detail="no category has two instances (multi_object=False)")
            return
        try:
            masks = self._masks(record)
        except ValueError as exc:  # a backend's contract check: bad box, missing annotation...
            yield Quarantined(id=record.id, reason="mask_failed", detail=str(exc), source=record.source)
            return
        masked = with_masks(record, masks)
        table = referring_table(masked)
        truncated = {i.id for i in record.instances if any(touching_sides(i.box, record.image.shape[:2]).values())}
        coverage = masks.sum(axis=0, dtype=np.uint16)  # instances covering each pixel
        plans = [self._plan_removal(masked, index, masks, coverage, table[inst.id], truncated)
                 for index, inst in enumerate(masked.instances) if self._is_candidate(masked, inst)]
        removals = self._inpaint(masked, [p for p in plans if isinstance(p, _Hole)])
        for plan in plans:
            if isinstance(plan, Quarantined):
                yield plan
            else:
                yield from self._samples(masked, removals[plan.instance.id])

    # ------------------------------------------------------------------ steps

    def _masks(self, record: ImageRecord) -> np.ndarray:
        """One masker call per image for every instance (SAM encodes the image once): NxHxW bool."""
        boxes = np.array([i.box for i in record.instances], dtype=np.float64).reshape(-1, 4)
        masks = self.masker.masks(record.image, boxes, [i.mask for i in record.instances])
        masks = np.asarray(masks, dtype=bool)
        if masks.shape != (len(record.instances), *record.image.shape[:2]):
            raise ValueError(f"masker {self.masker.name!r} returned shape {masks.shape}")
        return masks

    def _is_candidate(self, record: ImageRecord, inst: Instance) -> bool:
        peers = sum(1 for i in record.instances if i.category == inst.category)
        return peers >= 2 or self.multi_object

    def _skip(self, record: ImageRecord, inst: Instance, reason: str, detail: str, op: str | None = None) -> Quarantined:
        suffix = f"/{op}" if op else ""
        return Quarantined(id=f"{record.id}/{inst.id}{suffix}", reason=reason, detail=detail, source=record.source)

    def _plan_removal(self, record: ImageRecord, index: int, masks: np.ndarray, coverage: np.ndarray,
                      refs: list[Referring], truncated: set[str]) -> "_Hole | Quarantined":
        """Mask checks and the hole to fill for one instance: ``_Hole`` or ``Quarantined``."""
        inst = record.instances[index]
        mask = masks[index]
        area = int(np.count_nonzero(mask))
        if area == 0:
            return self._skip(record, inst, "empty_mask", f"{self.masker.name} mask of {inst.category} is empty")
        if area < self.min_area:
            return self._skip(record, inst, "tiny_instance", f"mask has {area} pixels (< {self.min_area})")
        if inst.id in truncated and self.border == "skip":
            return self._skip(record, inst, "touches_border", f"box {list(inst.box)} touches the image border")
        refs = usable_refs(record, inst, refs, truncated)
        if not refs:
            return self._skip(record, inst, "ambiguous", f"no attribute names this {inst.category} uniquely")
        mirrored = reflection_index(record, inst)
        reflection_box = None
        if mirrored is not None:  # the object goes, and so does its image in the mirror
            mask = mask | masks[mirrored]
            reflection_box = [float(v) for v in record.instances[mirrored].box]
        keep_out = coverage > mask  # covered by at least one instance that stays
        hole = dilate(mask, self.dilate_px) & ~keep_out
        if not (mask & hole).any():
            return self._skip(record, inst, "empty_mask", "the mask lies entirely under other instances' masks")
        seed = seeded_index(2**31 - 1, self.seed, record.id, inst.id, "inpaint")
        return _Hole(inst, refs, mask, hole, keep_out, seed, reflection_box)

    def _inpaint(self, record: ImageRecord, holes: list["_Hole"]) -> dict[str, _Removal]:
        """Fill every planned hole of the record (one instance removed at a time, each from x1):
        ``{instance id: _Removal}``.

        Backends that batch (``inpaint_batch``: LaMa crops, SD) get the record's holes in one call,
        so a GPU sees a batch, not one hole at a time; a batched item equals its single call.
        Backends that can keep other objects out of their source region (``opencv``) get them one
        by one instead: shift-map or a fill's neighbourhood would otherwise drag a neighbour into
        the hole. Inpainters return pixels outside the hole unchanged (their contract); the
        quality check ``background`` verifies it rather than this code silently repairing a backend.
        """
        if getattr(self.inpainter, "avoids_sources", False):
            filled = [self.inpainter.inpaint(record.image, h.hole, seed=h.seed, avoid=h.keep_out) for h in holes]
        else:
            filled = inpaint_batch(self.inpainter, [record.image] * len(holes), [h.hole for h in holes],
                                   seeds=[h.seed for h in holes])
        out = {}
        for h, y1 in zip(holes, filled):
            report = self.quality.check_removal(record.image, y1, h.object_mask & h.hole, h.hole,
                                                category=h.instance.category)
            out[h.instance.id] = _Removal(h.instance, h.refs, h.object_mask, h.hole, h.keep_out, y1, h.seed, report,
                                          h.reflection_box)
        return out

    def _samples(self, record: ImageRecord, rm: _Removal) -> Iterator[EditSample | Quarantined]:
        for op in self.ops:
            if op != "replace" and not rm.report.ok:
                yield self._skip(record, rm.instance, rm.report.reason, _failure_detail(rm.report), op)
            elif op == "remove":
                yield self._remove_sample(record, rm)
            elif op == "add":
                yield self._add_sample(record, rm)
            else:
                yield self._replace_sample(record, rm)

    def _remove_sample(self, record: ImageRecord, rm: _Removal) -> EditSample:
        ref = self._pick_ref(record, rm, "remove")
        key = (record.id, rm.instance.id)
        phrasing = choose(REMOVE_TEMPLATES, {"ref": ref.phrase}, self.seed, ("remove", *key))
        alternatives = [choose(REMOVE_TEMPLATES, {"ref": r.phrase}, self.seed, ("remove", *key)).instruction
                        for r in rm.refs if r is not ref]
        return self._sample(record, rm, "remove", record.image, rm.y1, rm.hole, phrasing.instruction,
                            [*phrasing.paraphrases, *alternatives], self._target(rm, ref), rm.report,
                            images=("x1", "y1"))

    def _add_sample(self, record: ImageRecord, rm: _Removal) -> EditSample | Quarantined:
        anchor = find_anchor(record, rm.instance)
        if anchor is None:
            return self._skip(record, rm.instance, "no_anchor",
                              "no remaining instance has a clear relation and a unique phrase", "add")
        anchor_inst, relation, phrase = anchor
        values = {"a_category": with_article(rm.instance.category), "relation": relation, "anchor": phrase}
        phrasing = choose(ADD_TEMPLATES, values, self.seed, ("add", record.id, rm.instance.id))
        target = {
            **self._target(rm, None),
            "attribute": "relation", "value": relation, "phrase": f"{relation} {phrase}",
            "anchor": {"instance": anchor_inst.id, "category": anchor_inst.category, "phrase": phrase,
                       "box": [float(v) for v in anchor_inst.box]},
        }
        return self._sample(record, rm, "add", rm.y1, record.image, rm.hole, phrasing.instruction,
                            list(phrasing.paraphrases), target, rm.report, images=("y1", "x1"))

    def _replace_sample(self, record: ImageRecord, rm: _Removal) -> EditSample | Quarantined:
        inst = rm.instance
        if inst.attributes.get("in_mirror") or reflection_index(record, inst) is not None:
            return self._skip(record, inst, "reflected", "an object and its mirror image would show different "
                              "things (the donor has no reflection to paste)", "replace")
        if not any(d.category != inst.category for d in self.donors):
            return self._skip(record, inst, "no_donor", f"no donor of a category other than {inst.category}", "replace")
        donor = self._pick_donor(record, inst, int(np.count_nonzero(rm.object_mask)))
        if donor is None:  # every donor's shape would come out a sliver in this box
            return self._skip(record, inst, "donor_misfit",
                              f"no donor fills {MIN_DONOR_FILL:.0%} of the {inst.category}'s area in its box", "replace")
        try:
            pasted = paste(rm.y1, donor.rgb, donor.mask, inst.box, feather_px=self.feather_px, keep_out=rm.keep_out)
        except CompositingError as exc:
            return self._skip(record, inst, exc.reason, exc.detail, "replace")
        if pasted.placement.scale > self.max_upscale:  # a blown-up cutout reads as a blur, not an object
            return self._skip(record, inst, "donor_too_small",
                              f"donor {donor.category} would be enlarged {pasted.placement.scale:.1f}x "
                              f"(> {self.max_upscale}x)", "replace")
        if min(pasted.placement.width, pasted.placement.height) < MIN_PASTE_SIDE:
            return self._skip(record, inst, "paste_too_small",
                              f"the {donor.category} would be {pasted.placement.width}x{pasted.placement.height} px "
                              f"(< {MIN_PASTE_SIDE} px on a side)", "replace")
        y4 = self.harmonizer.harmonize(pasted.image, pasted.mask, background=rm.y1, alpha=pasted.alpha)
        # The harmonizer may blend a thin band around the object (Poisson); that band joins the
        # edit mask, minus the other instances, and anything it changed beyond is discarded so
        # the mask stays the whole truth about what changed.
        edit = rm.hole | (dilate(pasted.mask, self.harmonize_band_px) & ~rm.keep_out)
        y4 = restrict_to(y4, record.image, edit)
        report = self.quality.check_paste(record.image, y4, edit, pasted.mask)
        if not rm.report.ok:  # y4 is built on y1: a failed removal shows through
            report = report.merged(rm.report)
        if not report.ok:
            return self._skip(record, inst, report.reason, _failure_detail(report), "replace")
        ref = self._pick_ref(record, rm, "replace")
        key = (record.id, inst.id)
        values = {"a_new": with_article(donor.category)}
        phrasing = choose(REPLACE_TEMPLATES, {**values, "ref": ref.phrase}, self.seed, ("replace", *key))
        alternatives = [choose(REPLACE_TEMPLATES, {**values, "ref": r.phrase}, self.seed, ("replace", *key)).instruction
                        for r in rm.refs if r is not ref]
        target = {**self._target(rm, ref), "new_category": donor.category,
                  "paste_box": [float(v) for v in pasted.box], "paste_scale": round(pasted.placement.scale, 4)}
        extra = {"donor": {"index": donor.index, "category": donor.category, "fingerprint": donor.fingerprint},
                 "harmonizer": self._settings["harmonizer"], "feather_px": self.feather_px,
                 "harmonize_band_px": self.harmonize_band_px}
        return self._sample(record, rm, "replace", record.image, y4, edit, phrasing.instruction,
                            [*phrasing.paraphrases, *alternatives], target, report,
                            images=("x1", "y4"), extra=extra)

    # ------------------------------------------------------------------ helpers

    def _pick_ref(self, record: ImageRecord, rm: _Removal, op: str) -> Referring:
        return rm.refs[seeded_index(len(rm.refs), self.seed, record.id, rm.instance.id, op, "attribute")]

    def _pick_donor(self, record: ImageRecord, inst: Instance, area: int) -> PreparedDonor | None:
        """A donor of another category whose object, fitted into the instance's box, covers at
        least ``MIN_DONOR_FILL`` of the instance's ``area`` (a tall rocket in a horse's wide box
        would be a sliver nobody reads as "a rocket"); seeded choice among those."""
        eligible = [d for d in self.donors if d.category != inst.category
                    and fitted_area(d.mask, inst.box, record.image.shape[:2]) >= MIN_DONOR_FILL * area]
        if not eligible:
            return None
        return eligible[seeded_index(len(eligible), self.seed, record.id, inst.id, "donor")]

    def _target(self, rm: _Removal, ref: Referring | None) -> dict:
        inst = rm.instance
        out = {"category": inst.category, "instance": inst.id, "box": [float(v) for v in inst.box],
               "attributes": [{"attribute": r.attribute, "value": r.value, "phrase": r.phrase} for r in rm.refs]}
        if ref is not None:
            out.update(attribute=ref.attribute, value=ref.value, phrase=ref.phrase)
        if rm.reflection_box is not None:  # its reflection went too (remove / add of the pair)
            out["reflection_box"] = rm.reflection_box
        return out

    def _sample(self, record, rm, op, src, tgt, mask, instruction, paraphrases, target, report,
                *, images, extra=None) -> EditSample | Quarantined:
        key_parts = [record.id, rm.instance.id, op, self._settings["seed"], self._settings["dilate_px"],
                     self._settings["masker"], self._settings["inpainter"]]
        if op == "replace":
            key_parts += [self._settings["harmonizer"], extra["donor"]["fingerprint"], self.feather_px,
                          self.harmonize_band_px]
        provenance = {
            "record": record.id, "source": record.source, "builder": self.name,
            "images": {"src": images[0], "tgt": images[1]},
            "masker": self._settings["masker"], "inpainter": self._settings["inpainter"],
            "seeds": {"builder": self.seed, "inpaint": rm.inpaint_seed},
            "dilate_px": self.dilate_px, "border": self.border,
            "quality_settings": self._settings["quality"],
            "versions": self._versions,
            **(extra or {}),
        }
        sample = EditSample(
            key=sample_key(*key_parts), src=src, tgt=tgt, mask=mask, instruction=instruction,
            paraphrases=paraphrases, scenario="understanding", op=op, target=target,
            provenance=provenance, quality=report.to_dict(),
        )
        # Post-edit scores on every sample (a Quarantined only with quality.enforce_post_edit).
        return self.quality.attach_post_edit(sample, skip_id=f"{record.id}/{rm.instance.id}/{op}", source=record.source)

    def _compute_settings(self) -> dict:
        return {
            "seed": self.seed, "dilate_px": self.dilate_px, "min_area": self.min_area,
            "feather_px": self.feather_px, "harmonize_band_px": self.harmonize_band_px,
            "max_upscale": self.max_upscale,
            "border": self.border, "multi_object": self.multi_object,
            "ops": list(self.ops),
            "masker": _backend_info(self.masker), "inpainter": _backend_info(self.inpainter),
            "harmonizer": _backend_info(self.harmonizer),
            "donors": [{"category": d.category, "fingerprint": d.fingerprint} for d in self.donors],
            "quality": self.quality.settings(),
        }


def _failure_detail(report: QualityReport) -> str:
    return "; ".join(f"{k}: {v}" for k, v in report.failed.items())
