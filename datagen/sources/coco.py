"""COCO-format instances catalog (``instances_*.json`` plus an image folder).

Record ids are ``coco:{name}:{image_id}`` (``name`` defaults to the JSON's stem without its
``instances_`` prefix, e.g. ``val2017``, or the folder's name for a bare ``instances.json``). An
image entry carrying a string ``record_id`` (as written by ``write_coco``) keeps that id instead,
so a catalog written to disk and read back yields the same ids, hence the same sample keys. The
same goes for an annotation's ``instance_id``; otherwise an instance's id is the annotation id.

Images are looked up in, in order: the ``images`` folder option, the JSON's folder, and
``images/`` beside the JSON. Categories are referred to by name. Crowd annotations
(``iscrowd: 1``) are skipped and counted in ``meta["skipped_crowd"]``; a non-standard
``attributes`` dict on an annotation (e.g. ``{"in_mirror": true, "color": "red"}``) becomes the
instance's attributes.

Record-level problems make ``load`` return ``Quarantined``: ``missing`` / ``unreadable`` /
``undecodable`` / ``truncated`` / ``oversized`` / ``bad_mode`` (see ``datagen.imageio``),
``size_mismatch`` (the decoded image's size differs from the entry's ``width``/``height``, so
the annotations would not line up) and ``bad_record`` (an image entry without a file name).
Instance-level problems drop only that instance (see ``datagen.sources.annotations``).
Annotations that point at an image id not in the file are listed in ``catalog.problems``.
"""
from __future__ import annotations

import json
from pathlib import Path

from datagen.imageio import DEFAULT_MAX_PIXELS, load_image
from datagen.schema import ImageRecord, Quarantined
from datagen.sources.annotations import InstanceProblem, dropped_entry, make_instance, xywh_to_xyxy
from datagen.sources.base import Catalog, CatalogError

_STANDARD_IMAGE_KEYS = {"id", "file_name", "width", "height", "record_id", "license", "coco_url",
                        "flickr_url", "date_captured"}


def _default_name(json_path: Path) -> str:
    stem = json_path.stem
    for prefix in ("instances_", "instances"):
        if stem.startswith(prefix):
            stem = stem[len(prefix):]
            break
    return stem or json_path.resolve().parent.name or "coco"


def read_json_file(path: Path):
    """Parsed JSON of ``path``; ``CatalogError`` when it is missing or not JSON."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(f"{path}: not a readable JSON file ({exc})") from exc


def is_coco_document(doc) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("images"), list) and "annotations" in doc


class CocoCatalog(Catalog):
    """Catalog over a COCO instances JSON. See the module docstring for ids and reasons.

    ``images``: folder holding the ``file_name``s (default: the JSON's folder, then ``images/``).
    ``max_pixels``: images above this are quarantined as ``oversized``. ``name``: id prefix.
    """

    def __init__(self, json_path, *, images=None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 name: str | None = None):
        self.json_path = Path(json_path)
        doc = read_json_file(self.json_path)
        if not is_coco_document(doc):
            raise CatalogError(f"{self.json_path}: not a COCO instances file (needs 'images' and 'annotations')")
        self.name = name or _default_name(self.json_path)
        self.source = f"coco:{self.json_path}"
        self.max_pixels = max_pixels
        here = self.json_path.resolve().parent
        self.image_dirs = [Path(images)] if images is not None else [here, here / "images"]
        self.categories = {}
        for cat in doc.get("categories") or []:
            if isinstance(cat, dict) and "id" in cat and isinstance(cat.get("name"), str):
                self.categories[cat["id"]] = cat["name"]
        self.problems: list[dict] = []
        self._images: dict[str, dict] = {}
        self._ids: list[str] = []
        self._index_images(doc["images"])
        self._annotations: dict[object, list[dict]] = {}
        self._index_annotations(doc.get("annotations") or [])

    def _index_images(self, images: list) -> None:
        taken: set[str] = set()
        for pos, entry in enumerate(images):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), (int, str)):
                self.problems.append({"reason": "bad_record",
                                      "detail": f"images[{pos}] is not an object with an int or string id"})
                continue
            rid = entry.get("record_id")
            if not isinstance(rid, str) or not rid or rid in taken:
                rid = f"coco:{self.name}:{entry['id']}"
            if rid in taken:  # duplicate image ids in the file: keep them apart by position
                rid = f"{rid}@{pos}"
            taken.add(rid)
            self._images[rid] = entry
            self._ids.append(rid)

    def _index_annotations(self, annotations: list) -> None:
        image_ids = {e.get("id") for e in self._images.values()}
        for pos, ann in enumerate(annotations):
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            if not isinstance(image_id, (int, str)) or image_id not in image_ids:
                self.problems.append({"reason": "orphan_annotation",
                                      "detail": f"annotations[{pos}] refers to unknown image id {image_id!r}"})
                continue
            self._annotations.setdefault(ann["image_id"], []).append(ann)

    def ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, record_id) -> bool:
        return record_id in self._images

    def _find_file(self, file_name: str) -> Path:
        for folder in self.image_dirs:
            candidate = folder / file_name
            if candidate.is_file():
                return candidate
        return self.image_dirs[0] / file_name  # load_image reports it as missing

    def _load(self, record_id: str) -> ImageRecord | Quarantined:
        entry = self._images[record_id]
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            return Quarantined(record_id, "bad_record", "image entry has no file_name", self.source)
        path = self._find_file(file_name)
        image = load_image(path, max_pixels=self.max_pixels)
        h, w = image.shape[:2]
        declared = (entry.get("height"), entry.get("width"))
        if all(isinstance(v, int) for v in declared) and declared != (h, w):
            return Quarantined(record_id, "size_mismatch",
                               f"{file_name}: decoded {w}x{h}, annotated {declared[1]}x{declared[0]}", self.source)
        instances, dropped, crowd = self._instances(entry.get("id"), (h, w))
        meta = {"file_name": file_name, "path": str(path), "coco_image_id": entry.get("id"),
                "dropped_instances": dropped, "skipped_crowd": crowd}
        extra = {k: v for k, v in entry.items() if k not in _STANDARD_IMAGE_KEYS}
        if isinstance(extra.get("meta"), dict):
            meta.update(extra.pop("meta"))
        meta.update(extra)
        return ImageRecord(record_id, image, instances, self.source, meta)

    def _instances(self, image_id, hw):
        instances, dropped, crowd, seen = [], [], 0, set()
        for ann in self._annotations.get(image_id, []):
            if ann.get("iscrowd"):
                crowd += 1
                continue
            iid = ann.get("instance_id")
            iid = iid if isinstance(iid, str) and iid and iid not in seen else str(ann.get("id", len(seen)))
            try:
                if iid in seen:
                    raise InstanceProblem("bad_record", f"duplicate annotation id {iid!r}")
                cid = ann.get("category_id")
                category = self.categories.get(cid) if isinstance(cid, (int, str)) else None
                if category is None:
                    raise InstanceProblem("unknown_category", f"category id {ann.get('category_id')!r} is not defined")
                box = xywh_to_xyxy(ann["bbox"]) if ann.get("bbox") is not None else None
                inst = make_instance(iid, category, hw, box_xyxy=box, segmentation=ann.get("segmentation") or None,
                                     attributes=ann.get("attributes"))
            except InstanceProblem as problem:
                dropped.append(dropped_entry(iid, problem))
                continue
            except (TypeError, ValueError, AttributeError) as exc:  # a shape no check anticipated
                dropped.append(dropped_entry(iid, InstanceProblem("bad_annotation", f"{type(exc).__name__}: {exc}")))
                continue
            seen.add(iid)
            instances.append(inst)
        return instances, dropped, crowd
