"""The Reason-Edit benchmark folder as a held-out manifest that ``trainer.evaluate`` reads.

Layout (as released with SmartEdit): ``ROOT/<category>/`` per category (``1-Left-Right``,
``2-Relative-Size``, ``3-Mirror``, ``4-Color``, ``5-Multiple-Objects``, ``6-Reasoning``...), each
holding ``NAME.png|jpg``, its mask ``NAME_mask.png|jpg`` (white = edit region) and one ``*.txt``
with a line ``<instruction> CLIP: <text describing the result>`` per image, in sorted image order.

The benchmark has no ground-truth edits: the sample's target is the source image and
``target.ground_truth`` is False (metrics compare the edit with the source outside the mask and
score the inside with the CLIP text). The manifest is marked ``"holdout": true, "split":
"reason-edit"``: training refuses it, evaluation reads it like any manifest.

Quarantined: ``missing`` mask, ``count_mismatch`` (a folder whose text lines and images differ in
number cannot be paired, so every image of it is quarantined), ``empty_mask``, ``size_mismatch``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from datagen.imageio import load_image
from datagen.importers.base import ImportProblem, Importer, text_or_problem
from datagen.schema import EditSample, ImageRecord, Quarantined
from datagen.sources.base import CatalogError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CATEGORY_ATTRIBUTE = {"Left-Right": "location", "Relative-Size": "size", "Mirror": "mirror", "Color": "color",
                      "Multiple-Objects": "count"}
OP_WORDS = {"remove": "remove", "delete": "remove", "replace": "replace", "change": "replace", "turn": "replace",
            "add": "add", "put": "add", "make": "recolor", "color": "recolor", "paint": "recolor"}


def category_name(folder: str) -> str:
    """``1-Left-Right`` -> ``Left-Right``; ``Reasoning-231115`` -> ``Reasoning``."""
    name = folder.split("-", 1)[1] if folder[:1].isdigit() and "-" in folder else folder
    return "Reasoning" if name.lower().startswith("reasoning") else name


def op_of(instruction: str) -> str:
    """The edit kind an instruction's first verb names (``edit`` when none does)."""
    words = instruction.lower().replace(",", " ").split()
    return next((OP_WORDS[w] for w in words[:3] if w in OP_WORDS), "edit")


class ReasonEditImporter(Importer):
    """``ReasonEditImporter(root, *, seed=0)``."""

    name = "reason-edit"
    scenario = "understanding"

    def __init__(self, root, *, seed: int = 0):
        super().__init__(root, seed=seed)
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.txt"))) or [self.root]
        self._cases: dict[str, tuple[Path, str | None, int]] = {}
        for folder in folders:
            images = sorted(p for p in folder.iterdir()
                            if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_mask"))
            texts = sorted(folder.glob("*.txt"))
            lines = [ln for ln in texts[0].read_text(encoding="utf-8").splitlines() if ln.strip()] if texts else []
            aligned = len(lines) == len(images)
            for i, image in enumerate(images):
                self._cases[f"{folder.name}/{image.stem}"] = (image, lines[i] if aligned else None, len(lines))
        if not self._cases:
            raise CatalogError(f"{self.root} holds no Reason-Edit category folder (images + masks + one .txt)")
        self._set_ids(list(self._cases))

    def manifest_facts(self) -> dict:
        return {**super().manifest_facts(), "holdout": True, "split": "reason-edit"}

    def load_record(self, record_id: str) -> ImageRecord:
        image_path, line, n_lines = self._cases[record_id]
        if line is None:
            raise ImportProblem("count_mismatch", f"{image_path.parent.name}: {n_lines} text lines for a different "
                                                  "number of images, so lines cannot be paired with images")
        instruction, _, clip_text = line.partition("CLIP:")
        instruction = text_or_problem(instruction, f"{record_id} instruction")
        mask_path = next((p for s in IMAGE_SUFFIXES if (p := image_path.with_name(f"{image_path.stem}_mask{s}")).exists()), None)
        if mask_path is None:
            raise ImportProblem("missing", f"{record_id} has no {image_path.stem}_mask.png|jpg")
        image = load_image(image_path)
        mask_rgb = load_image(mask_path) > 127  # white = edit region; per channel, then joined (fast)
        mask = mask_rgb[..., 0] | mask_rgb[..., 1] | mask_rgb[..., 2]
        if mask.shape != image.shape[:2]:
            raise ImportProblem("size_mismatch", f"{record_id}: mask {mask.shape} and image {image.shape[:2]} differ")
        if not mask.any():
            raise ImportProblem("empty_mask", f"{record_id}: the mask has no white pixel")
        category = category_name(image_path.parent.name)
        return ImageRecord(record_id, image, [], source=self.source, meta={
            "dataset": self.name, "split": "reason-edit", "instruction": instruction, "clip_text": clip_text.strip(),
            "category": category, "mask": mask})

    def samples(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        meta = record.meta
        reasoning = meta["category"] == "Reasoning"
        yield EditSample(
            key=self.key(record), src=record.image, tgt=record.image, mask=meta["mask"],
            instruction=meta["instruction"], scenario="reasoning" if reasoning else "understanding",
            op=op_of(meta["instruction"]),
            target={"category": meta["category"], "attribute": CATEGORY_ATTRIBUTE.get(meta["category"], "reasoning"),
                    "clip_text": meta["clip_text"], "ground_truth": False},
            provenance=self.provenance(record, case=record.id))
