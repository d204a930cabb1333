"""A folder of images with a simple JSON / JSONL annotation file.

The folder holds ``annotations.json`` (an object ``{"categories": [...], "images": [...]}`` or
just the list of image objects) or ``annotations.jsonl`` (one image object per line; blank lines
and lines starting with ``#`` are skipped). An image object::

    {"file": "kitchen/001.jpg",          # relative to the folder ("file_name" also accepted)
     "id": "001",                        # optional; default: the file path without extension
     "instances": [
       {"category": "cat",
        "box": [x0, y0, x1, y1],          # XYXY pixels; optional when a mask or polygon is given
        "polygon": [[x, y], ...],         # optional, one ring (flat [x0, y0, x1, ...] works too)
        "polygons": [ring, ...],          # optional, several rings, united
        "segmentation": ...,              # optional, any COCO form (polygons or RLE)
        "mask": "masks/001_0.png",        # optional, L or 1-bit PNG, >= 128 = object
        "id": "0",                        # optional; default: the instance's position
        "attributes": {"in_mirror": false, "color": "red"}}]}   # optional facts

``in_mirror`` and ``color`` may also sit directly on the instance. When ``categories`` is given,
instances of other categories are dropped as ``unknown_category``. Only images listed in the
annotation file are in the catalog.

Record ids are ``folder:{name}:{id}`` (``name``: the folder's name). A JSONL line that is not a
JSON object is still a record: it loads as ``Quarantined('bad_annotation')``, so it is counted.
A second entry with an id already taken is a record too, quarantined as ``duplicate_id`` (two
entries for one id would otherwise give two samples for the same content). Image and mask paths
must stay inside the folder (``outside_root`` otherwise; ``allow_outside_root=True`` lifts that).
Image-level and instance-level reasons are those of ``datagen.sources.coco``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datagen.imageio import DEFAULT_MAX_PIXELS, ImageDecodeError, load_image, load_mask_file
from datagen.schema import ImageRecord, Quarantined
from datagen.sources.annotations import InstanceProblem, dropped_entry, make_instance
from datagen.sources.base import Catalog, CatalogError, confined_path
from datagen.sources.coco import read_json_file

ANNOTATION_FILES = ("annotations.json", "annotations.jsonl")
_SHORTHAND_ATTRIBUTES = ("in_mirror", "color")


def find_annotation_file(folder: Path) -> Path | None:
    for name in ANNOTATION_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def _read_entries(path: Path) -> tuple[list, list[str] | None]:
    """(entries, category whitelist). An entry is a dict, or an error string for a bad line."""
    if path.suffix == ".jsonl":
        entries: list = []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                try:
                    entries.append(json.loads(text))
                except json.JSONDecodeError as exc:
                    entries.append(f"line {lineno}: not JSON ({exc.msg})")
        return entries, None
    doc = read_json_file(path)
    if isinstance(doc, list):
        return doc, None
    if isinstance(doc, dict) and isinstance(doc.get("images"), list):
        cats = doc.get("categories")
        return doc["images"], _category_names(path, cats)
    if isinstance(doc, dict) and "images" in doc:
        raise CatalogError(f"{path}: 'images' must be a list of image objects, got {type(doc['images']).__name__}")
    raise CatalogError(f"{path}: expected a list of image objects or {{'images': [...]}}, "
                       f"got {type(doc).__name__}")


def _category_names(path: Path, cats) -> list[str] | None:
    """The whitelist of ``{"categories": [...]}``: names, or COCO-style ``{"name": ...}`` objects."""
    if cats is None:
        return None
    names = [c.get("name") if isinstance(c, dict) else c for c in cats] if isinstance(cats, list) else None
    if names is None or not all(isinstance(n, str) and n for n in names):
        raise CatalogError(f"{path}: 'categories' must be a list of category names (strings or {{'name': ...}})")
    return names


def _category_of(spec, known: set[str] | None) -> str | None:
    """The category a dropped instance names, when it is one the catalog has (else None)."""
    category = spec.get("category") if isinstance(spec, dict) else None
    return category if isinstance(category, str) and (known is None or category in known) else None


def _segmentation_of(spec: dict):
    """The instance's shape in COCO form (polygons list or RLE dict), or None for box-only."""
    if spec.get("segmentation") is not None:
        return spec["segmentation"]
    rings = []
    if spec.get("polygon") is not None:
        rings.append(spec["polygon"])
    rings.extend(spec.get("polygons") or [])
    if not rings and spec.get("polygon") is None and "polygons" not in spec:
        return None
    flat = []
    for ring in rings:
        # [[x, y], ...] -> [x, y, ...]; already-flat rings pass through.
        if isinstance(ring, list) and ring and all(isinstance(p, (list, tuple)) for p in ring):
            ring = [v for p in ring for v in p]
        flat.append(ring)
    return flat or [[]]


class _DuplicateId:
    """Stands in the entry table for an entry whose id an earlier entry already took."""

    def __init__(self, first: str, pos: int):
        self.first, self.pos = first, pos


class FolderCatalog(Catalog):
    """Catalog over ``folder`` and its annotation file; see the module docstring for the schema."""

    def __init__(self, folder, *, annotations=None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 name: str | None = None, allow_outside_root: bool = False):
        self.folder = Path(folder)
        path = Path(annotations) if annotations is not None else find_annotation_file(self.folder)
        if path is None:
            raise CatalogError(f"{self.folder}: no {' or '.join(ANNOTATION_FILES)} in this folder")
        self.annotation_path = path
        self.name = name or self.folder.resolve().name or "folder"
        self.source = f"folder:{self.folder}"
        self.max_pixels = max_pixels
        self.allow_outside_root = bool(allow_outside_root)
        entries, categories = _read_entries(path)
        self.categories = set(categories) if categories is not None else None
        self._entries: dict[str, object] = {}
        self._ids: list[str] = []
        for pos, entry in enumerate(entries):
            rid = f"folder:{self.name}:{self._entry_key(entry, pos)}"
            if rid in self._entries:
                rid, entry = f"{rid}@{pos}", _DuplicateId(rid, pos)
            self._entries[rid] = entry
            self._ids.append(rid)

    @staticmethod
    def _entry_key(entry, pos: int) -> str:
        if isinstance(entry, dict):
            if entry.get("id") is not None:
                return str(entry["id"])
            file = entry.get("file") or entry.get("file_name")
            if isinstance(file, str) and file:
                return str(Path(file).with_suffix(""))
        return f"entry{pos}"

    def ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, record_id) -> bool:
        return record_id in self._entries

    def _load(self, record_id: str) -> ImageRecord | Quarantined:
        entry = self._entries[record_id]
        if isinstance(entry, _DuplicateId):
            return Quarantined(record_id, "duplicate_id",
                               f"entry {entry.pos} repeats the id of {entry.first}", self.source)
        if isinstance(entry, str):
            return Quarantined(record_id, "bad_annotation", entry, self.source)
        if not isinstance(entry, dict):
            return Quarantined(record_id, "bad_annotation", "image entry is not a JSON object", self.source)
        file = entry.get("file") or entry.get("file_name")
        if not isinstance(file, str) or not file:
            return Quarantined(record_id, "bad_record", "image entry has no 'file'", self.source)
        path = confined_path(self.folder, file, allow_outside=self.allow_outside_root)
        image = load_image(path, max_pixels=self.max_pixels)
        hw = image.shape[:2]
        specs = entry.get("instances") or []
        if not isinstance(specs, list):
            return Quarantined(record_id, "bad_annotation", "'instances' must be a list", self.source)
        instances, dropped = [], []
        for pos, spec in enumerate(specs):
            iid = str(spec.get("id", pos)) if isinstance(spec, dict) else str(pos)
            try:
                instances.append(self._instance(iid, spec, hw, {i.id for i in instances}))
            except InstanceProblem as problem:
                dropped.append(dropped_entry(iid, problem, _category_of(spec, self.categories)))
            except (TypeError, ValueError, AttributeError) as exc:  # a shape no check anticipated
                problem = InstanceProblem("bad_annotation", f"{type(exc).__name__}: {exc}")
                dropped.append(dropped_entry(iid, problem, _category_of(spec, self.categories)))
        meta = {"file_name": file, "path": str(path), "dropped_instances": dropped}
        if isinstance(entry.get("meta"), dict):
            meta.update(entry["meta"])
        return ImageRecord(record_id, image, instances, self.source, meta)

    def _instance(self, iid: str, spec, hw, taken: set[str]):
        if not isinstance(spec, dict):
            raise InstanceProblem("bad_annotation", "instance is not a JSON object")
        if iid in taken:
            raise InstanceProblem("bad_annotation", f"duplicate instance id {iid!r}")
        attributes = spec.get("attributes") if spec.get("attributes") is not None else {}
        if not isinstance(attributes, dict):
            raise InstanceProblem("bad_attribute", f"attributes must be an object, got {type(attributes).__name__}")
        attributes = dict(attributes)
        for key in _SHORTHAND_ATTRIBUTES:
            if key in spec:
                attributes[key] = spec[key]
        mask = self._mask_file(spec["mask"], hw) if spec.get("mask") is not None else None
        return make_instance(iid, spec.get("category"), hw, box_xyxy=spec.get("box"),
                             segmentation=None if mask is not None else _segmentation_of(spec),
                             mask=mask, attributes=attributes, known_categories=self.categories)

    def _mask_file(self, rel_path, hw: tuple[int, int]) -> np.ndarray:
        """HxW bool from an L / 1-bit PNG next to the images (>= 128 = object)."""
        if not isinstance(rel_path, str) or not rel_path:
            raise InstanceProblem("bad_mask", f"'mask' must be a file path, got {rel_path!r}")
        try:
            path = confined_path(self.folder, rel_path, allow_outside=self.allow_outside_root)
            return load_mask_file(path, hw)
        except ImageDecodeError as exc:
            raise InstanceProblem("bad_mask", f"mask file {rel_path}: {exc}") from exc
