"""LISA ReasonSeg: reasoning-segmentation queries as perception samples.

Layout as released: ``ROOT/{train,val,test}/NAME.jpg`` beside ``NAME.json`` =
``{"text": [query, ...], "is_sentence": bool, "shapes": [{"label": "target" | "ignore",
"shape_type"/"labeltype": "polygon", "points": [[x, y], ...]}, ...]}``. The target mask is the
union of the ``target`` polygons minus the ``ignore`` ones (LISA leaves ignored pixels out of the
loss; a mark must not cover them either). Each query is one sample: a whole sentence
("What in this kitchen keeps food cold?") is kept verbatim and followed by "Mark it in <colour>.";
a phrase goes through the usual "Mark <phrase> in <colour>" templates.

Quarantined: ``missing`` image, ``no_expression`` (no query), ``empty_polygon`` / ``bad_polygon``
(a target polygon with fewer than 3 points or far outside the image), ``no_target`` (no target
shape, or ignore covers it all).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from datagen.imageio import load_image
from datagen.importers.base import ImportProblem, Importer, read_json
from datagen.importers.marking import mark_sample, region_colour
from datagen.schema import EditSample, ImageRecord, Quarantined
from datagen.sources.annotations import polygons_to_mask
from datagen.sources.base import CatalogError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def shape_mask(shape: dict, hw: tuple[int, int]) -> np.ndarray:
    """One labelme-style polygon shape -> HxW bool (``InstanceProblem`` if unusable)."""
    points = shape.get("points")
    flat = [v for point in points for v in point] if isinstance(points, list) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 for p in points) else []
    return polygons_to_mask([flat], hw)


class ReasonSegImporter(Importer):
    """``ReasonSegImporter(root, *, split=None, seed=0)``; ``root`` holds the split folders
    (or is one); ``split`` picks one folder (default: all, each sample records its split)."""

    name = "reasonseg"
    scenario = "perception"

    def __init__(self, root, *, split: str | None = None, seed: int = 0):
        super().__init__(root, seed=seed)
        self.split = split
        folders = [self.root / split] if split else sorted(p for p in self.root.iterdir() if p.is_dir()) or [self.root]
        if not any(any(f.glob("*.json")) for f in folders if f.is_dir()):
            raise CatalogError(f"{self.root} holds no ReasonSeg JSON (NAME.json beside NAME.jpg) in {[f.name for f in folders]}")
        self._files = {f"{folder.name}/{path.stem}": path for folder in folders if folder.is_dir()
                       for path in sorted(folder.glob("*.json"))}
        self._set_ids(list(self._files))

    def settings(self) -> dict:
        return {**super().settings(), "split": self.split}

    def _image_path(self, json_path: Path) -> Path:
        for suffix in IMAGE_SUFFIXES:
            if (candidate := json_path.with_suffix(suffix)).exists():
                return candidate
        return json_path.with_suffix(".jpg")  # load_image reports it as missing

    def load_record(self, record_id: str) -> ImageRecord:
        path = self._files[record_id]
        try:
            doc = read_json(path, "ReasonSeg annotation")
        except CatalogError as exc:
            raise ImportProblem("bad_annotation", str(exc)) from exc
        queries = doc.get("text") if isinstance(doc, dict) else None
        queries = [queries] if isinstance(queries, str) else queries
        queries = [" ".join(q.split()) for q in queries or [] if isinstance(q, str) and q.strip()]
        if not queries:
            raise ImportProblem("no_expression", f"{path.name} has no text query")
        image = load_image(self._image_path(path))
        hw = image.shape[:2]
        target, ignore = np.zeros(hw, bool), np.zeros(hw, bool)
        for shape in doc.get("shapes") or []:
            label = shape.get("label") if isinstance(shape, dict) else None
            if label == "target":
                target |= shape_mask(shape, hw)
            elif label == "ignore":
                ignore |= shape_mask(shape, hw)
        mask = target & ~ignore
        if not mask.any():
            raise ImportProblem("no_target", f"{path.name}: no target pixel outside the ignore shapes")
        return ImageRecord(record_id, image, [], source=self.source, meta={
            "dataset": self.name, "split": path.parent.name, "queries": queries,
            "is_sentence": bool(doc.get("is_sentence")), "mask": mask, "ignored_pixels": int((target & ignore).sum())})

    def samples(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        meta = record.meta
        own = region_colour(record.image, meta["mask"])
        for index, query in enumerate(meta["queries"]):
            yield mark_sample(self, record, mask=meta["mask"], expression=query, parts=("query", index), own_colour=own,
                              sentence=meta["is_sentence"], target={"ignored_pixels": meta["ignored_pixels"]},
                              ids={"image": record.id, "query": index})
