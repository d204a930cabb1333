"""Write any catalog to disk as a COCO instances file plus PNG images.

Layout: ``out_dir/instances.json`` and ``out_dir/images/<record id with ':' -> '_'>.png``.
Masks are stored as compressed RLE (exact, unlike polygons); box-only instances get an empty
``segmentation``. Beyond standard COCO, each image entry carries ``record_id`` and the record's
JSON-serialisable ``meta``, each annotation its ``instance_id`` and ``attributes``
(``in_mirror``, ``color``...), so ``open_catalog`` on the result gives back the same ids, masks
and attributes. Quarantined records are not written; they are listed under ``"quarantined"``.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from datagen.imageio import encode_image
from datagen.schema import ImageRecord, Quarantined
from datagen.sources.annotations import mask_to_rle

INSTANCES_FILE = "instances.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _file_name(record_id: str) -> str:
    return _UNSAFE.sub("_", record_id).strip("_") + ".png"


def _json_safe(value):
    """``value`` if it survives JSON, else None (meta may hold arrays a writer cannot store)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return None


def _annotation(inst, ann_id: int, image_id: int, category_id: int) -> dict:
    x0, y0, x1, y1 = (float(v) for v in inst.box)
    ann = {
        "id": ann_id, "image_id": image_id, "category_id": category_id,
        "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
        "instance_id": inst.id, "attributes": _json_safe(dict(inst.attributes)) or {},
    }
    if inst.mask is not None:
        ann["segmentation"] = mask_to_rle(inst.mask)
        ann["area"] = int(np.count_nonzero(inst.mask))
    else:
        ann["segmentation"] = []
        ann["area"] = (x1 - x0) * (y1 - y0)
    return ann


def write_coco(catalog: Iterable[ImageRecord | Quarantined], out_dir, *, progress: bool = False) -> Path:
    """Write every record of ``catalog`` (any iterable of records) under ``out_dir``.

    Returns the path of ``instances.json``, written last and atomically (temporary name, then
    rename), so a reader never sees a file that lists images not yet on disk.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations, quarantined = [], [], []
    categories: dict[str, int] = {}
    records = catalog
    if progress:
        from tqdm import tqdm

        records = tqdm(catalog, total=len(catalog) if hasattr(catalog, "__len__") else None,
                       desc="scenes", unit="img")
    for record in records:
        if isinstance(record, Quarantined):
            quarantined.append(record.to_dict())
            continue
        image_id = len(images) + 1
        name = _file_name(record.id)
        (out / "images" / name).write_bytes(encode_image(record.image, "png"))
        h, w = record.image.shape[:2]
        images.append({"id": image_id, "file_name": name, "width": int(w), "height": int(h),
                       "record_id": record.id, "meta": _json_safe(record.meta) or {}})
        for inst in record.instances:
            cid = categories.setdefault(inst.category, len(categories) + 1)
            annotations.append(_annotation(inst, len(annotations) + 1, image_id, cid))
    doc = {
        "info": {"description": "written by datagen.sources.write_coco"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name} for name, cid in categories.items()],
        "quarantined": quarantined,
    }
    path = out / INSTANCES_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)
    return path
