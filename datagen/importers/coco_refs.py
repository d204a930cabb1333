"""What the RefCOCO family and gRefCOCO share: COCO ``instances.json`` as an index, the images
folder, and one record = one referring annotation (``ref``) whose sentences become samples.

Layout as the ``refer`` / ``grefer`` APIs expect it: ``ROOT/instances.json`` plus
``ROOT/refs(SPLITBY).p`` (RefCOCO, RefCOCO+, RefCOCOg) or ``ROOT/grefs(unc).json`` (gRefCOCO);
images are COCO train2014 files named by ``instances.json`` (``--images``, default
``ROOT/images``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from datagen.imageio import load_image
from datagen.sources.base import confined_path
from datagen.importers.base import ImportProblem, Importer, read_json
from datagen.importers.marking import mark_sample, region_colour
from datagen.schema import EditSample, ImageRecord, Quarantined
from datagen.sources.annotations import segmentation_to_mask
from datagen.sources.base import CatalogError


class CocoIndex:
    """``instances.json`` by id: ``images[id] -> {file_name, ...}``, ``anns[id] -> annotation``,
    ``categories[id] -> name``."""

    def __init__(self, path: Path):
        doc = read_json(path, "COCO instances file")
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise CatalogError(f"{path} is not a COCO instances file (no 'images' list)")
        self.images = {img["id"]: img for img in doc["images"] if isinstance(img, dict) and "id" in img}
        self.anns = {a["id"]: a for a in doc.get("annotations", []) if isinstance(a, dict) and "id" in a}
        self.categories = {c["id"]: str(c.get("name", c["id"])) for c in doc.get("categories", [])
                           if isinstance(c, dict) and "id" in c}


def images_folder(root: Path, images) -> Path:
    """``images`` or ``ROOT/images``; ``CatalogError`` naming ``--images`` when neither exists."""
    folder = Path(images) if images else root / "images"
    if not folder.is_dir():
        raise CatalogError(f"images folder {folder} does not exist; pass the COCO train2014 folder as --images")
    return folder


class ReferringImporter(Importer):
    """Shared loading of a ref's image, target mask(s) and sentences. Subclasses fill
    ``self._refs`` (record id -> ref dict) and call ``_finish_index()``."""

    scenario = "perception"

    def __init__(self, root, *, images=None, split: str | None = None, seed: int = 0):
        super().__init__(root, seed=seed)
        self.images = images_folder(self.root, images)
        self.split = split
        self.coco = CocoIndex(self.root / "instances.json")
        self._refs: dict[str, dict] = {}

    def _finish_index(self, refs: list, prefix: str) -> None:
        for ref in refs:
            if not isinstance(ref, dict) or "ref_id" not in ref:
                continue  # counted nowhere: not a ref at all (the files hold only refs)
            if self.split is None or ref.get("split") == self.split:
                self._refs[f"{prefix}:{ref['ref_id']}"] = ref
        self._set_ids(list(self._refs))

    def settings(self) -> dict:
        return {**super().settings(), "split": self.split}

    def target_ann_ids(self, ref: dict) -> list[int]:
        """The annotation ids the ref points at (empty: no target)."""
        raise NotImplementedError

    def load_record(self, record_id: str) -> ImageRecord:
        ref = self._refs[record_id]
        image_info = self.coco.images.get(ref.get("image_id"))
        if image_info is None:
            raise ImportProblem("missing_id", f"image_id {ref.get('image_id')!r} is not in instances.json")
        sentences = [(s.get("sent_id"), " ".join(str(s.get("sent") or s.get("raw") or "").split()))
                     for s in ref.get("sentences") or [] if isinstance(s, dict)]
        sentences = [(sid, text) for sid, text in sentences if text]
        if not sentences:
            raise ImportProblem("no_expression", f"ref {ref['ref_id']} has no non-empty sentence")
        anns = []
        for ann_id in self.target_ann_ids(ref):
            if ann_id not in self.coco.anns:
                raise ImportProblem("missing_id", f"ann_id {ann_id!r} is not in instances.json")
            anns.append(self.coco.anns[ann_id])
        image = load_image(confined_path(self.images, str(image_info["file_name"])))
        hw = image.shape[:2]
        mask = np.zeros(hw, dtype=bool)
        for ann in anns:
            mask |= segmentation_to_mask(ann.get("segmentation"), hw)
        categories = sorted({self.coco.categories.get(a.get("category_id"), "object") for a in anns})
        return ImageRecord(record_id, image, [], source=self.source, meta={
            "dataset": self.dataset_name, "split": ref.get("split"), "ref_id": ref["ref_id"],
            "image_id": ref.get("image_id"), "ann_ids": [a["id"] for a in anns], "categories": categories,
            "sentences": sentences, "mask": mask})

    @property
    def dataset_name(self) -> str:
        return self.name

    def samples(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        meta = record.meta
        own = region_colour(record.image, meta["mask"])
        for sent_id, text in meta["sentences"]:
            yield mark_sample(self, record, mask=meta["mask"], expression=text, parts=("sent", sent_id), own_colour=own,
                              target={"categories": meta["categories"], "no_target": not meta["ann_ids"],
                                      "targets": len(meta["ann_ids"])},
                              ids={"ref_id": meta["ref_id"], "image_id": meta["image_id"],
                                   "ann_ids": meta["ann_ids"], "sent_id": sent_id})
