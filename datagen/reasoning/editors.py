"""Editors of the reasoning builder: how one object is removed, recoloured, replaced or dressed up.

``editor.edit(request, seed) -> EditResult`` (or ``EditFailed`` with a reason code). Two editors:

* ``classical`` (CPU, no weights, deterministic): ``remove`` inpaints the dilated mask (OpenCV by
  default); ``recolor`` shifts hue in HSV inside the object mask keeping its shading
  (``datagen.recolor``) and keeps a colour only if the result reads as it; ``replace`` removes the
  object, pastes a donor cut-out into its box (``datagen.compositing.paste``) and harmonizes it,
  like the understanding builder. No ``addon``: a hat cannot be drawn convincingly without a model.
* ``sd`` (diffusers Stable-Diffusion inpainting from local weights, ``datagen.inpainting.sd``):
  every op is a prompted inpaint of a region around the object, e.g. "a blue cat", "an apple",
  "a cat wearing a hat"; ``remove`` uses the inpainter's background prompt. Seeded: the builder
  asks for several candidates with different seeds.

Regions (all ``HxW bool``, never covering another instance, ``keep_out``):

* ``remove`` / ``recolor``: the object mask dilated by ``dilate_px``;
* ``replace`` (sd): that plus the object's box, so the new object may take another shape;
* ``addon`` (sd): that plus a band above the object's top, where a hat or crown sits.

``EditResult.mask`` is the region the edit may have changed; pixels outside it equal the source.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from datagen.instructions.templates import seeded_index, with_article
from datagen.quality import bbox_slices, dilate

ADDON_ABOVE = 0.3  # the add-on band reaches this fraction of the box height above its top


class EditFailed(Exception):
    """An edit that could not be made; ``reason`` is a short stable code (``recolor_failed``,
    ``no_donor``, ``empty_paste``, ``unsupported_op``...), ``detail`` one sentence."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class EditRequest:
    """One edit of one object.

    ``image``: HxWx3 uint8 RGB. ``object_mask``: HxW bool, the object. ``keep_out``: HxW bool,
    every other instance (never changed). ``box``: XYXY float of the object. ``noun``: how prompts
    name it ("cat"). ``values``: the new colours / objects / add-ons in order of preference
    (empty for ``remove``); an editor uses the first it can make. ``dilate_px``: region margin.
    """

    op: str
    image: np.ndarray
    object_mask: np.ndarray
    keep_out: np.ndarray
    box: tuple[float, float, float, float]
    noun: str
    values: tuple[str, ...] = ()
    dilate_px: int = 6


@dataclass
class EditResult:
    """``tgt``: HxWx3 uint8, the edited image. ``mask``: HxW bool, where it may differ from the
    source. ``value``: the colour / object / add-on used (None for remove). ``paste_mask``: HxW
    bool of a pasted object (classical replace) for the seam check. ``info``: provenance."""

    tgt: np.ndarray
    mask: np.ndarray
    value: str | None = None
    paste_mask: np.ndarray | None = None
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------- regions


def object_region(req: EditRequest) -> np.ndarray:
    """The dilated object minus the other instances (HxW bool)."""
    return dilate(req.object_mask, req.dilate_px) & ~req.keep_out


def _box_mask(shape: tuple[int, int], x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    h, w = shape
    out = np.zeros((h, w), bool)
    out[max(int(np.floor(y0)), 0):min(int(np.ceil(y1)), h), max(int(np.floor(x0)), 0):min(int(np.ceil(x1)), w)] = True
    return out


def replace_region(req: EditRequest) -> np.ndarray:
    """Dilated object plus its box: room for a new object of another shape."""
    return (object_region(req) | _box_mask(req.object_mask.shape, *req.box)) & ~req.keep_out


def addon_region(req: EditRequest) -> np.ndarray:
    """Dilated object plus a band above its top, ``ADDON_ABOVE`` x its height (a hat's room)."""
    x0, y0, x1, y1 = req.box
    h = y1 - y0
    band = _box_mask(req.object_mask.shape, x0, y0 - ADDON_ABOVE * h, x1, y0 + 0.25 * h)
    return (object_region(req) | band) & ~req.keep_out


def restrict(edited: np.ndarray, original: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``edited`` inside ``allowed`` (HxW bool), ``original`` elsewhere (HxWx3 uint8): the
    sample's mask stays the whole truth about what changed, whatever a backend did."""
    out = original.copy()
    ys, xs = bbox_slices(allowed, 0)
    out[ys, xs] = np.where(allowed[ys, xs, None], edited[ys, xs], original[ys, xs])
    return out


def _backend_info(backend) -> dict:
    return {"name": getattr(backend, "name", type(backend).__name__), "settings": backend.settings()}


# ---------------------------------------------------------------------- classical


class ClassicalEditor:
    """CPU editor: ``inpainter`` (default ``opencv``) for removal, HSV recolour, donor paste +
    ``harmonizer`` (default ``classical``) for replace. ``donors``: objects with ``category``,
    ``rgb`` (hxwx3 uint8), ``mask`` (hxw bool), e.g. ``datagen.sources.demo.donor_objects()``."""

    name = "classical"
    ops = ("remove", "recolor", "replace")
    deterministic = True

    def __init__(self, inpainter=None, harmonizer=None, donors: Sequence = (), *, feather_px: float = 2.0,
                 harmonize_band_px: int = 4):
        from datagen.harmonization import build_harmonizer
        from datagen.inpainting import build_inpainter
        from datagen.understanding.donors import prepare_donors

        self.inpainter = inpainter if inpainter is not None else build_inpainter("opencv")
        self.harmonizer = harmonizer if harmonizer is not None else build_harmonizer("classical")
        self.donors, self.donor_problems = prepare_donors(donors)
        self.feather_px, self.harmonize_band_px = float(feather_px), int(harmonize_band_px)

    def replacement_values(self, category: str, knowledge) -> tuple[str, ...]:
        """Donor categories other than ``category`` (the objects a replace can paste)."""
        own = {category, knowledge.noun(category)}
        return tuple(dict.fromkeys(d.category for d in self.donors if d.category not in own))

    def edit(self, req: EditRequest, seed: int) -> EditResult:
        if req.op == "remove":
            hole = object_region(req)
            return EditResult(self.inpainter.inpaint(req.image, hole, seed=seed), hole,
                              info={"inpainter": _backend_info(self.inpainter)})
        if req.op == "recolor":
            return self._recolor(req)
        if req.op == "replace":
            return self._replace(req, seed)
        raise EditFailed("unsupported_op", f"the classical editor cannot {req.op} (use --editor sd)")

    def _recolor(self, req: EditRequest) -> EditResult:
        from datagen.recolor import recolor_named

        region = object_region(req)
        found = recolor_named(req.image, req.object_mask & ~req.keep_out, req.values)
        if found is None:
            raise EditFailed("recolor_failed", f"no recolour of the {req.noun} reads as any of {list(req.values)}")
        tgt, colour = found
        return EditResult(restrict(tgt, req.image, region), region, colour, info={"method": "hsv_hue"})

    def _replace(self, req: EditRequest, seed: int) -> EditResult:
        from datagen.compositing import MIN_DONOR_FILL, MIN_PASTE_SIDE, CompositingError, fitted_area, paste

        donors = [d for d in self.donors if req.values and d.category == req.values[0]]
        if not donors:
            raise EditFailed("no_donor", f"no donor of category {req.values[:1]} for the {req.noun}")
        area = MIN_DONOR_FILL * int(np.count_nonzero(req.object_mask))
        fitting = [d for d in donors if fitted_area(d.mask, req.box, req.image.shape[:2]) >= area]
        if not fitting:  # a sliver or a speck where the object was: nobody would see a replacement
            raise EditFailed("donor_misfit", f"no {req.values[0]} fills {MIN_DONOR_FILL:.0%} of the {req.noun}'s "
                                             "area in its box")
        donor = fitting[seeded_index(len(fitting), seed, "donor")]
        hole = object_region(req)
        y1 = self.inpainter.inpaint(req.image, hole, seed=seed)
        try:
            pasted = paste(y1, donor.rgb, donor.mask, req.box, feather_px=self.feather_px, keep_out=req.keep_out)
        except CompositingError as exc:
            raise EditFailed(exc.reason, exc.detail) from exc
        if min(pasted.placement.width, pasted.placement.height) < MIN_PASTE_SIDE:
            raise EditFailed("paste_too_small", f"the {donor.category} would be {pasted.placement.width}x"
                                                f"{pasted.placement.height} px (< {MIN_PASTE_SIDE} px on a side)")
        y4 = self.harmonizer.harmonize(pasted.image, pasted.mask, background=y1, alpha=pasted.alpha)
        edit = hole | (dilate(pasted.mask, self.harmonize_band_px) & ~req.keep_out)
        info = {"inpainter": _backend_info(self.inpainter), "harmonizer": _backend_info(self.harmonizer),
                "donor": {"index": donor.index, "category": donor.category, "fingerprint": donor.fingerprint}}
        return EditResult(restrict(y4, req.image, edit), edit, donor.category, pasted.mask, info)

    def settings(self) -> dict:
        return {"editor": self.name, "inpainter": _backend_info(self.inpainter),
                "harmonizer": _backend_info(self.harmonizer), "feather_px": self.feather_px,
                "harmonize_band_px": self.harmonize_band_px,
                "donors": [{"category": d.category, "fingerprint": d.fingerprint} for d in self.donors]}


# ---------------------------------------------------------------------- stable diffusion


class SdEditor:
    """Prompted SD inpainting for every op. ``inpainter``: an ``SdInpainter`` (or any inpainter
    honouring ``prompt`` and ``seed``). ``prompt_suffix`` is appended to every edit prompt."""

    name = "sd"
    ops = ("remove", "recolor", "replace", "addon")
    deterministic = False

    def __init__(self, inpainter, *, prompt_suffix: str = ", photo, high quality"):
        self.inpainter = inpainter
        self.prompt_suffix = prompt_suffix

    def replacement_values(self, category: str, knowledge) -> tuple[str, ...]:
        return knowledge.replacement_nouns(category)

    def prompt(self, req: EditRequest) -> str | None:
        """The text painted into the region; None for removal (the background prompt)."""
        if req.op == "remove":
            return None
        if not req.values:
            raise EditFailed("no_value", f"{req.op} needs a colour / object / add-on")
        value = req.values[0]
        text = {"recolor": f"{with_article(value + ' ' + req.noun)}",
                "replace": with_article(value),
                "addon": f"{with_article(req.noun)} wearing {with_article(value)}"}.get(req.op)
        if text is None:
            raise EditFailed("unsupported_op", f"the sd editor has no op {req.op!r}")
        return text + self.prompt_suffix

    def edit(self, req: EditRequest, seed: int) -> EditResult:
        region = {"replace": replace_region, "addon": addon_region}.get(req.op, object_region)(req)
        prompt = self.prompt(req)
        tgt = self.inpainter.inpaint(req.image, region, prompt=prompt, seed=seed)
        info = {"prompt": prompt, "seed": int(seed), **dict(getattr(self.inpainter, "last_run", {}) or {})}
        if info.get("nsfw"):  # the safety checker blacked the result out: nothing to review
            raise EditFailed("nsfw_blank", f"the safety checker flagged the {req.op} of the {req.noun} (seed {seed})")
        return EditResult(restrict(tgt, req.image, region), region, req.values[0] if req.values else None, info=info)

    def settings(self) -> dict:
        return {"editor": self.name, "inpainter": _backend_info(self.inpainter), "prompt_suffix": self.prompt_suffix}


# ---------------------------------------------------------------------- registry

EDITORS = ("classical", "sd")


def build_editor(name: str, *, donors: Any = "demo", **options: Any):
    """``classical`` options: ``inpainter`` / ``harmonizer`` (registry names, default ``opencv`` /
    ``classical``), ``inpainter_options`` / ``harmonizer_options`` (dicts), ``feather_px``,
    ``harmonize_band_px``; ``donors`` is ``"demo"``, a folder or a list (see
    ``datagen.understanding.donors.load_donors``). ``sd`` options: those of the ``sd`` inpainter
    (``model_dir`` required, ``device``, ``steps``, ``guidance``...) plus ``prompt_suffix``.
    Raises ``BackendUnavailable`` when the backend cannot run here, ``ValueError`` for a bad name."""
    options = dict(options)
    if name == "classical":
        from datagen.harmonization import build_harmonizer
        from datagen.inpainting import build_inpainter
        from datagen.understanding.donors import load_donors

        inpainter = build_inpainter(options.pop("inpainter", "opencv"), **options.pop("inpainter_options", {}))
        harmonizer = build_harmonizer(options.pop("harmonizer", "classical"), **options.pop("harmonizer_options", {}))
        donor_list = load_donors(donors) if isinstance(donors, str) else list(donors or ())
        return ClassicalEditor(inpainter, harmonizer, donor_list, **options)
    if name == "sd":
        from datagen.inpainting import build_inpainter

        suffix = options.pop("prompt_suffix", ", photo, high quality")
        return SdEditor(build_inpainter("sd", **options), prompt_suffix=suffix)
    raise ValueError(f"unknown editor {name!r}; choose one of {EDITORS}")
