"""COCO-format instances catalog (``instances_*.json`` plus an image folder).

Record ids are ``coco:{name}:{image_id}`` (``name`` defaults to the JSON's stem without its
``instances_`` prefix, e.g. ``val2017``, or the folder's name for a bare ``instances.json``). An
image entry carrying a string ``record_id`` (as written by ``write_coco``) keeps that id instead,
so a catalog written to disk and read back yields the same ids, hence the same sample keys. The
same goes for an annotation's ``instance_id``; otherwise an instance's id is the annotation id.

Images are looked up in, in order: the ``images`` folder option, the JSON's folder, and
``images/`` beside the JSON. Categories are referred to by name. Crowd annotations
(``iscrowd: 1``) are skipped, counted in ``meta["skipped_crowd"]`` and listed in
``meta["dropped_instances"]`` with reason ``crowd``; a non-standard
``attributes`` dict on an annotation (e.g. ``{"in_mirror": true, "color": "red"}``) becomes the
instance's attributes.

Record-level problems make ``load`` return ``Quarantined``: ``missing`` / ``unreadable`` /
``undecodable`` / ``truncated`` / ``oversized`` / ``bad_mode`` (see ``datagen.imageio``),
``size_mismatch`` (the decoded image's size differs from the entry's ``width``/``height``, so
the annotations would not line up), ``bad_record`` (an image entry without a file name, or one
that is not an object with an id: such entries are records ``coco:{name}:images[POS]`` so they are
counted), ``duplicate_id`` (a second image entry with an id already taken) and ``outside_root``
(a ``file_name`` that leads outside the image folder; ``allow_outside_root=True`` lifts that).
Instance-level problems drop only that instance (see ``datagen.sources.annotations``).
Annotations that point at an image id not in the file (``orphan_annotation``), annotation entries
that are not objects (``bad_annotation``) and unusable categories (``bad_category``) belong to no
record: they are listed in ``catalog.problems`` (``[{"id", "reason", "detail"}]``), which a job
writes to its quarantine log once. The file's structure (top-level types) is checked when the
catalog opens: ``CatalogError`` names the field and what it must be.
"""
from __future__ import annotations

import json
from pathlib import Path

from datagen.imageio import DEFAULT_MAX_PIXELS, load_image
from datagen.schema import ImageRecord, Quarantined
from datagen.sources.annotations import InstanceProblem, dropped_entry, make_instance, xywh_to_xyxy
from datagen.sources.base import Catalog, CatalogError, confined_path

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
    except UnicodeDecodeError as exc:
        raise CatalogError(f"{path}: not UTF-8 text (JSON files must be UTF-8; {exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise CatalogError(f"{path}: JSON nested too deeply to be an annotation file") from exc
    except OSError as exc:
        raise CatalogError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def check_coco_structure(path: Path, doc: dict) -> None:
    """Top-level types of a COCO instances document; ``CatalogError`` naming the first bad field."""
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise CatalogError(f"{path}: a COCO instances file needs a {key!r} list; it has none")
        if not isinstance(doc[key], list):
            raise CatalogError(f"{path}: {key!r} must be a list, got {type(doc[key]).__name__}")


def is_coco_document(doc) -> bool:
    """True for a dict shaped like a COCO instances file (``images`` and ``annotations`` keys);
    its field types are checked by ``check_coco_structure``."""
    return isinstance(doc, dict) and "images" in doc and "annotations" in doc


class _BadEntry:
    """Stands in the image table for an entry that is a record but cannot be loaded."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail


class CocoCatalog(Catalog):
    """Catalog over a COCO instances JSON. See the module docstring for ids and reasons.

    ``images``: folder holding the ``file_name``s (default: the JSON's folder, then ``images/``).
    ``max_pixels``: images above this are quarantined as ``oversized``. ``name``: id prefix.
    """

    def __init__(self, json_path, *, images=None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 name: str | None = None, allow_outside_root: bool = False):
        self.json_path = Path(json_path)
        doc = read_json_file(self.json_path)
        if not is_coco_document(doc):
            raise CatalogError(f"{self.json_path}: not a COCO instances file (needs 'images' and 'annotations')")
        check_coco_structure(self.json_path, doc)
        self.allow_outside_root = bool(allow_outside_root)
        self.name = name or _default_name(self.json_path)
        self.source = f"coco:{self.json_path}"
        self.max_pixels = max_pixels
        here = self.json_path.resolve().parent
        self.image_dirs = [Path(images)] if images is not None else [here, here / "images"]
        self.problems: list[dict] = []
        self.categories = {}
        for pos, cat in enumerate(doc["categories"]):
            if isinstance(cat, dict) and isinstance(cat.get("id"), (int, str)) and isinstance(cat.get("name"), str):
                self.categories[cat["id"]] = cat["name"]
            else:
                self._problem(f"categories[{pos}]", "bad_category", "not an object with an int id and a string name")
        self._images: dict[str, dict] = {}
        self._ids: list[str] = []
        self._index_images(doc["images"])
        self._annotations: dict[object, list[dict]] = {}
        self._index_annotations(doc["annotations"])

    def _problem(self, where: str, reason: str, detail: str) -> None:
        self.problems.append({"id": f"coco:{self.name}:{where}", "reason": reason, "detail": f"{where}: {detail}"})

    def _index_images(self, images: list) -> None:
        taken: dict[object, str] = {}  # image id -> the record that holds it
        for pos, entry in enumerate(images):
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), (int, str)):
                rid = f"coco:{self.name}:images[{pos}]"
                self._images[rid] = _BadEntry("bad_record", f"images[{pos}] is not an object with an int or string id")
            elif entry["id"] in taken:
                rid = f"coco:{self.name}:{entry['id']}@{pos}"
                self._images[rid] = _BadEntry("duplicate_id", f"images[{pos}] repeats the id of {taken[entry['id']]}")
            else:
                rid = entry.get("record_id")
                if not isinstance(rid, str) or not rid or rid in self._images:
                    rid = f"coco:{self.name}:{entry['id']}"
                taken[entry["id"]] = rid
                self._images[rid] = entry
            self._ids.append(rid)

    def _index_annotations(self, annotations: list) -> None:
        image_ids = {e.get("id") for e in self._images.values() if isinstance(e, dict)}
        for pos, ann in enumerate(annotations):
            if not isinstance(ann, dict):
                self._problem(f"annotations[{pos}]", "bad_annotation", f"not an object ({type(ann).__name__})")
                continue
            image_id = ann.get("image_id")
            if not isinstance(image_id, (int, str)) or image_id not in image_ids:
                self._problem(f"annotations[{pos}]", "orphan_annotation", f"refers to unknown image id {image_id!r}")
                continue
            self._annotations.setdefault(image_id, []).append(ann)

    def ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, record_id) -> bool:
        return record_id in self._images

    def _find_file(self, file_name: str) -> Path:
        for folder in self.image_dirs:
            candidate = confined_path(folder, file_name, allow_outside=self.allow_outside_root)
            if candidate.exists():
                return candidate
        return self.image_dirs[0] / file_name  # load_image reports it as missing

    def _load(self, record_id: str) -> ImageRecord | Quarantined:
        entry = self._images[record_id]
        if isinstance(entry, _BadEntry):
            return Quarantined(record_id, entry.reason, entry.detail, self.source)
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
            iid = ann.get("instance_id")
            iid = iid if isinstance(iid, str) and iid and iid not in seen else str(ann.get("id", len(seen)))
            cid = ann.get("category_id")
            category = self.categories.get(cid) if isinstance(cid, (int, str)) else None
            if ann.get("iscrowd"):
                crowd += 1
                dropped.append(dropped_entry(iid, InstanceProblem("crowd", "an iscrowd region covers many objects, "
                                                                           "not one instance"), category))
                continue
            try:
                if iid in seen:
                    raise InstanceProblem("bad_record", f"duplicate annotation id {iid!r}")
                if category is None:
                    raise InstanceProblem("unknown_category", f"category id {cid!r} is not defined")
                box = xywh_to_xyxy(ann["bbox"]) if ann.get("bbox") is not None else None
                inst = make_instance(iid, category, hw, box_xyxy=box, segmentation=ann.get("segmentation") or None,
                                     attributes=ann.get("attributes"))
            except InstanceProblem as problem:
                dropped.append(dropped_entry(iid, problem, category))
                continue
            except (TypeError, ValueError, AttributeError) as exc:  # a shape no check anticipated
                problem = InstanceProblem("bad_annotation", f"{type(exc).__name__}: {exc}")
                dropped.append(dropped_entry(iid, problem, category))
                continue
            seen.add(iid)
            instances.append(inst)
        return instances, dropped, crowd
