"""Reasoning-scenario candidates (paper §4.3, supplement §2): find the object by world knowledge,
edit it, and hand every candidate to people to filter.

Per record::

    masks (masker, once per image)
    for each instance whose category has a usable description (``KnowledgeTable.choose``: no other
    category in the image fits it) and that is unique -- the only instance of its category, or
    narrowed by a referring attribute ("Which animal gives us milk? Remove the left one."):
        for each op (remove / recolor / replace / addon, as the editor and the kind allow):
            one *case*: a description, a value (colour, new object, add-on), an instruction
            ``candidates`` edits with recorded seeds  ->  EditSample(scenario="reasoning",
            review={"status": "pending"}), grouped by ``provenance["case_id"]``

The samples go to the review queue (``datagen.reasoning.queue``), never straight to shards.

Guarantees: pixels outside a sample's mask equal the source (editors paste back inside their
region only; ``restrict`` enforces it), other instances are never touched, and a rerun with the
same inputs and settings yields the same keys (keys hash inputs, never output pixels).

Skips (``Quarantined`` with these reasons): record level ``bad_image``, ``no_instances``,
``bad_box``, ``bad_mask``, ``mask_failed``; instance level ``no_description``,
``unknown_neighbour``, ``ambiguous_description`` (see ``knowledge``), ``ambiguous`` (several
instances and no attribute tells this one apart), ``empty_mask``, ``tiny_instance``, ``no_op``,
``reflected`` (an object with a reflection in a mirror: an edit would leave the reflection
showing the old object; a reflection itself is only removed);
case level the editor's ``EditFailed`` reasons (``recolor_failed``, ``no_donor``, ``donor_misfit``, ``paste_too_small``, ``empty_paste``,
``no_value``) and ``quality:<check>``.
"""
from __future__ import annotations

import platform
from dataclasses import replace
from typing import Iterator, Sequence

import cv2
import numpy as np

import datagen
from datagen.instructions.colors import color_name
from datagen.instructions.knowledge import Description, KnowledgeTable, load_knowledge
from datagen.instructions.reasoning_templates import REASONING_OPS, noun_phrase, reasoning_instruction
from datagen.instructions.referring import Referring, referring_table
from datagen.instructions.templates import seeded_index
from datagen.quality import QualityChecker, QualityReport
from datagen.reasoning.editors import EditFailed, EditRequest, EditResult, build_editor
from datagen.schema import EditSample, ImageRecord, Instance, Quarantined, record_problem, sample_key
from datagen.understanding.scene import reflection_index

DEFAULT_SD_CANDIDATES = 3


def _backend_info(backend) -> dict:
    return {"name": getattr(backend, "name", type(backend).__name__), "settings": backend.settings()}


def _versions() -> dict[str, str]:
    return {"datagen": datagen.__version__, "numpy": np.__version__, "opencv": cv2.__version__,
            "python": platform.python_version()}


class ReasoningBuilder:
    """``builder(record) -> Iterator[EditSample | Quarantined]``; see the module docstring.

    ``masker``: a ``Masker`` (or its registry name). ``editor``: an editor object or its name
    (``classical`` | ``sd``) built with ``editor_options`` and ``donors``. ``knowledge``: a
    ``KnowledgeTable``, a JSON path extending the default, or None (the curated table).
    ``candidates``: edits per case (sd default 3; a deterministic editor always makes 1).
    ``ops``: subset of remove / recolor / replace / addon (default: all the editor can do);
    ``ops_per_instance``: at most this many ops per instance, rotated by seed (None: all).
    ``dilate_px``: edit-region margin. ``min_area``: smallest object mask in pixels.
    ``rewriter``: optional ``InstructionRewriter`` (a local LLM) for variety.
    """

    name = "reasoning"

    def __init__(self, masker, editor="classical", knowledge: KnowledgeTable | str | None = None, *,
                 editor_options: dict | None = None, candidates: int | None = None, seed: int = 0,
                 donors="demo", ops: Sequence[str] | None = None, ops_per_instance: int | None = None,
                 dilate_px: int = 6, min_area: int = 200, quality: QualityChecker | None = None, rewriter=None):
        if isinstance(masker, str):
            from datagen.masking import build_masker

            masker = build_masker(masker)
        if isinstance(editor, str):
            editor = build_editor(editor, donors=donors, **(editor_options or {}))
        self.masker, self.editor = masker, editor
        self.knowledge = knowledge if isinstance(knowledge, KnowledgeTable) else load_knowledge(knowledge)
        wanted = tuple(ops) if ops else tuple(editor.ops)
        bad = [op for op in wanted if op not in REASONING_OPS or op not in editor.ops]
        if bad or not wanted:
            raise ValueError(f"ops {bad or list(wanted)} are not possible with the {editor.name!r} editor "
                             f"(it can do {list(editor.ops)})")
        self.ops = tuple(op for op in REASONING_OPS if op in wanted)
        if candidates is not None and int(candidates) < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.candidates = 1 if editor.deterministic else int(candidates or DEFAULT_SD_CANDIDATES)
        self.ops_per_instance = None if ops_per_instance is None else max(1, int(ops_per_instance))
        self.seed, self.dilate_px, self.min_area = int(seed), int(dilate_px), int(min_area)
        self.quality = quality if quality is not None else QualityChecker()
        self.rewriter = rewriter
        self._settings = self._compute_settings()

    # ------------------------------------------------------------------ public

    def settings(self) -> dict:
        """What determines the candidates: recorded in provenance and job markers."""
        return self._settings

    def __call__(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        problem = record_problem(record)
        if problem is not None:
            yield Quarantined(record.id, problem[0], problem[1], record.source)
            return
        try:
            masks = self._masks(record)
        except ValueError as exc:  # a backend's contract check: missing annotation, bad box...
            yield Quarantined(record.id, "mask_failed", str(exc), record.source)
            return
        masked = _with_masks(record, masks)
        refs = referring_table(masked)
        present = {inst.category for inst in record.instances}
        coverage = masks.sum(axis=0, dtype=np.uint16)  # instances covering each pixel
        for index, inst in enumerate(masked.instances):
            yield from self._instance(masked, inst, masks[index], coverage, refs[inst.id], present)

    # ------------------------------------------------------------------ steps

    def _masks(self, record: ImageRecord) -> np.ndarray:
        """One masker call for every instance: NxHxW bool."""
        boxes = np.array([i.box for i in record.instances], dtype=np.float64).reshape(-1, 4)
        masks = np.asarray(self.masker.masks(record.image, boxes, [i.mask for i in record.instances]), dtype=bool)
        if masks.shape != (len(record.instances), *record.image.shape[:2]):
            raise ValueError(f"masker {self.masker.name!r} returned shape {masks.shape}")
        return masks

    def _instance(self, record: ImageRecord, inst: Instance, mask: np.ndarray, coverage: np.ndarray,
                  refs: list[Referring], present: set[str]) -> Iterator[EditSample | Quarantined]:
        choice = self.knowledge.choose(inst.category, present)
        if choice.reason:
            yield self._skip(record, inst, choice.reason, choice.detail)
            return
        peers = sum(1 for i in record.instances if i.category == inst.category)
        ref = None
        if peers > 1:
            narrowing = [r for r in refs if r.attribute != "count"]
            if not narrowing:
                yield self._skip(record, inst, "ambiguous", f"{peers} instances of {inst.category} and no attribute "
                                 "tells this one apart")
                return
            ref = narrowing[seeded_index(len(narrowing), self.seed, record.id, inst.id, "referring")]
        area = int(mask.sum())
        if area == 0:
            yield self._skip(record, inst, "empty_mask", f"{self.masker.name} mask of the {inst.category} is empty")
            return
        if area < self.min_area:
            yield self._skip(record, inst, "tiny_instance", f"mask has {area} pixels (< {self.min_area})")
            return
        if reflection_index(record, inst) is not None:  # mirror semantics: datagen.instructions.referring
            yield self._skip(record, inst, "reflected", f"the {inst.category}'s reflection would not show the edit")
            return
        ops = self._ops_for(record, inst)
        if inst.attributes.get("in_mirror"):  # a reflection can vanish alone; recoloured it would disagree
            ops = [op for op in ops if op == "remove"]
        if not ops:
            yield self._skip(record, inst, "no_op", f"none of {list(self.ops)} suits a {inst.category}")
            return
        keep_out = coverage > mask  # pixels of at least one other instance
        for op in ops:
            pick = seeded_index(len(choice.usable), self.seed, record.id, inst.id, op, "description")
            description = choice.usable[pick]
            yield from self._case(record, inst, mask, keep_out, ref, description, op)

    def _ops_for(self, record: ImageRecord, inst: Instance) -> list[str]:
        """The ops that make sense for this object, rotated by seed and cut to ``ops_per_instance``."""
        kb, category = self.knowledge, inst.category
        able = {"remove": True, "recolor": kb.can_recolor(category),
                "replace": bool(self.editor.replacement_values(category, kb)),
                "addon": bool(kb.addon_items(category))}
        ops = [op for op in self.ops if able[op]]
        ops.sort(key=lambda op: seeded_index(1 << 30, self.seed, record.id, inst.id, "op", op))
        return ops[: self.ops_per_instance] if self.ops_per_instance else ops

    def _values(self, op: str, record: ImageRecord, inst: Instance, mask: np.ndarray) -> tuple[str, ...]:
        """Preferred colours / new objects / add-ons for ``op``, in a seeded order."""
        kb = self.knowledge
        if op == "remove":
            return ()
        if op == "recolor":
            current = inst.attributes.get("color") or color_name(record.image[mask])
            pool = [c for c in kb.colours if c != current]
        elif op == "replace":
            pool = list(self.editor.replacement_values(inst.category, kb))
        else:
            pool = list(kb.addon_items(inst.category))
        return tuple(sorted(pool, key=lambda v: seeded_index(1 << 30, self.seed, record.id, inst.id, op, v)))

    def _case(self, record: ImageRecord, inst: Instance, mask: np.ndarray, keep_out: np.ndarray,
              ref: Referring | None, description: Description, op: str) -> Iterator[EditSample | Quarantined]:
        values = self._values(op, record, inst, mask)
        request = EditRequest(op, record.image, mask, keep_out, tuple(float(v) for v in inst.box),
                              self.knowledge.noun(inst.category), values, self.dilate_px)
        case_id = sample_key("reasoning-case", record.id, inst.id, op, description.id, description.predicate,
                             values[:1], self._settings["key"])
        for k in range(self.candidates):
            edit_seed = seeded_index(2**31 - 1, self.seed, record.id, inst.id, op, "edit", k)
            try:
                result = self.editor.edit(request, edit_seed)
            except EditFailed as exc:  # the same request fails the same way for every seed
                yield self._skip(record, inst, exc.reason, exc.detail, op)
                return
            report = self._check(op, record.image, result, mask, inst.category)
            if not report.ok:
                yield self._skip(record, inst, report.reason, _failure_detail(report), f"{op}#{k}")
                continue
            yield self._sample(record, inst, ref, description, op, result, report, case_id, k, edit_seed)

    def _check(self, op: str, src: np.ndarray, result: EditResult, mask: np.ndarray, category: str) -> QualityReport:
        if op == "remove":
            return self.quality.check_removal(src, result.tgt, mask & result.mask, result.mask, category=category)
        if result.paste_mask is not None:
            return self.quality.check_paste(src, result.tgt, result.mask, result.paste_mask)
        report = self.quality.check_common(src, result.tgt, result.mask)
        if op == "recolor":  # what a colour namer now reads: recorded for reviewers and filters
            report.scores["colour_after"] = color_name(result.tgt[mask])
        return report

    def _sample(self, record: ImageRecord, inst: Instance, ref: Referring | None, description: Description,
                op: str, result: EditResult, report: QualityReport, case_id: str, k: int,
                edit_seed: int) -> EditSample | Quarantined:
        phrasing = reasoning_instruction(op, description, value=result.value or "", referring=ref, seed=self.seed,
                                         key=(record.id, inst.id))
        original = phrasing.instruction
        instruction, paraphrases, rewrite = original, list(phrasing.paraphrases), None
        if self.rewriter is not None:
            instruction = self.rewriter.rewrite(original, keep=[result.value] if result.value else [],
                                                avoid=[inst.category, self.knowledge.noun(inst.category)],
                                                anchor=description.predicate, seed=edit_seed)
            if instruction != original:
                paraphrases = [original, *paraphrases]
                rewrite = {"original": original, "rewriter": self.rewriter.settings()}
        value_key = {"recolor": "new_color", "replace": "new_object", "addon": "addon"}.get(op)
        target = {
            "category": inst.category, "noun": self.knowledge.noun(inst.category), "instance": inst.id,
            "box": [float(v) for v in inst.box], "edit": op,
            "description": {**description.to_dict(), "phrase": noun_phrase(description, ref)},
            "attribute": ["knowledge", ref.attribute] if ref else "knowledge",
            "referring": ref.to_dict() if ref else None,
            **({value_key: result.value} if value_key else {}),
        }
        provenance = {
            "record": record.id, "source": record.source, "builder": self.name, "case_id": case_id,
            "candidate": k, "candidates": self.candidates,
            "seeds": {"builder": self.seed, "edit": edit_seed},
            "masker": _backend_info(self.masker), "editor": self._settings["editor"], "edit": result.info,
            "dilate_px": self.dilate_px, "knowledge": self._settings["knowledge"], "versions": _versions(),
            **({"rewrite": rewrite} if rewrite else {}),
        }
        key = sample_key(record.id, inst.id, op, description.id, original, result.value, k, edit_seed,
                         self._settings["key"])
        sample = EditSample(key=key, src=record.image, tgt=result.tgt, mask=result.mask, instruction=instruction,
                            paraphrases=paraphrases, scenario="reasoning", op=op, target=target,
                            provenance=provenance, quality=report.to_dict(), review={"status": "pending"})
        # Post-edit scores on every candidate: the reviewers' decisions later calibrate them.
        return self.quality.attach_post_edit(sample, skip_id=f"{record.id}/{inst.id}/{op}#{k}", source=record.source)

    # ------------------------------------------------------------------ helpers

    def _skip(self, record: ImageRecord, inst: Instance, reason: str, detail: str,
              op: str | None = None) -> Quarantined:
        suffix = f"/{op}" if op else ""
        return Quarantined(f"{record.id}/{inst.id}{suffix}", reason, detail, record.source)

    def _compute_settings(self) -> dict:
        editor = _backend_info(self.editor)
        masker = _backend_info(self.masker)
        out = {
            "seed": self.seed, "candidates": self.candidates, "ops": list(self.ops),
            "ops_per_instance": self.ops_per_instance, "dilate_px": self.dilate_px, "min_area": self.min_area,
            "masker": masker, "editor": editor, "knowledge": self.knowledge.summary(),
            "quality": self.quality.settings(),
            "rewriter": self.rewriter.settings() if self.rewriter is not None else None,
        }
        # What a sample key must change with: the backends and the builder knobs, not the whole
        # table (an added category must not re-key every existing candidate).
        out["key"] = sample_key(masker, editor, self.seed, self.dilate_px, self.min_area)
        return out


# ---------------------------------------------------------------------- module helpers


def _with_masks(record: ImageRecord, masks: np.ndarray) -> ImageRecord:
    """The record with masker masks where none was annotated, so referring expressions (size by
    mask area, colour of the masked pixels) see the object the edit changes."""
    instances = [inst if inst.mask is not None else replace(inst, mask=masks[k])
                 for k, inst in enumerate(record.instances)]
    return replace(record, instances=instances)


def _failure_detail(report: QualityReport) -> str:
    return "; ".join(f"{k}: {v}" for k, v in report.failed.items())
