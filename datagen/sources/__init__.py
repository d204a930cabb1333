"""Catalogs of annotated images: COCO-format instances, a folder + JSON, built-in demo scenes.

``open_catalog(spec, **options) -> Catalog``; ``spec`` is one of

* ``demo:N`` or ``demo:N:SEED``: ``N`` built-in demo scenes (``datagen.sources.demo``);
* a COCO instances JSON file (options: ``images=`` folder of the images, ``name=`` id prefix);
* a folder of images with ``annotations.json`` / ``annotations.jsonl`` (``datagen.sources.folder``),
  or a folder holding an ``instances.json`` (as ``write_coco`` leaves it);
* an ``annotations.json`` / ``.jsonl`` file itself (its folder holds the images).

Every catalog accepts ``max_pixels=`` (images larger than this are quarantined as
``oversized``); folder and COCO catalogs accept ``allow_outside_root=True`` (image and mask paths
may then lead outside the catalog's folder). A catalog's ``load`` never raises for bad data;
``open_catalog`` raises ``CatalogError`` only when the spec itself cannot be opened (no such file,
not JSON, not UTF-8, nested too deeply, a top-level field of the wrong type: the message names it).

Reason codes a run may count: record level (``Quarantined.reason``) ``missing``, ``unreadable``,
``not_a_file``, ``too_large``, ``outside_root``, ``undecodable``, ``truncated``, ``oversized``,
``bad_mode``, ``size_mismatch``, ``bad_record``, ``bad_annotation``, ``duplicate_id``; instance
level (``record.meta["dropped_instances"][i]["reason"]``) ``bad_box``, ``empty_polygon``,
``bad_polygon``, ``bad_mask``, ``unknown_category``, ``bad_attribute``, ``bad_annotation``,
``crowd``; catalog level (``catalog.problems``, belonging to no record) ``orphan_annotation``,
``bad_annotation``, ``bad_category``. Jobs log all three levels to ``OUT/*.quarantine.jsonl``
(``level`` = ``annotation`` / ``catalog`` for the last two) and count them in the manifest
(``quarantined``, ``dropped_annotations``).
"""
from __future__ import annotations

from pathlib import Path

from datagen.sources.base import Catalog, CatalogError

__all__ = ["Catalog", "CatalogError", "open_catalog", "dropped_instance_reasons"]


def _open_demo(spec: str, options: dict) -> Catalog:
    from datagen.sources.demo import DemoScenes

    parts = spec.split(":")
    try:
        n = int(parts[1])
        seed = int(parts[2]) if len(parts) > 2 else 0
        if len(parts) > 3 or n < 0 or seed < 0:
            raise ValueError
    except (IndexError, ValueError):
        raise CatalogError(f"demo spec must be demo:N or demo:N:SEED with N, SEED >= 0; got {spec!r}") from None
    if options:
        raise CatalogError(f"demo scenes take no options, got {sorted(options)}")
    return DemoScenes(n, seed)


def _open_json(path: Path, options: dict) -> Catalog:
    from datagen.sources.coco import CocoCatalog, is_coco_document, read_json_file
    from datagen.sources.folder import FolderCatalog

    if path.suffix != ".jsonl" and is_coco_document(read_json_file(path)):
        return CocoCatalog(path, **options)
    images = options.pop("images", None)  # for a folder catalog: where its relative paths start
    return FolderCatalog(Path(images) if images else path.parent, annotations=path, **options)


def open_catalog(spec, **options) -> Catalog:
    """Open the catalog ``spec`` names (see the module docstring); raises ``CatalogError``."""
    text = str(spec)
    if text.startswith("demo:"):
        return _open_demo(text, options)
    path = Path(text)
    if path.is_dir():
        from datagen.sources.folder import find_annotation_file

        found = find_annotation_file(path)
        if found is None and (path / "instances.json").is_file():
            found = path / "instances.json"
        if found is not None:
            return _open_json(found, dict(options))
        raise CatalogError(f"{path}: folder has no annotations.json, annotations.jsonl or instances.json")
    if path.suffix in (".json", ".jsonl"):
        if not path.is_file():
            raise CatalogError(f"{path}: no such file")
        return _open_json(path, dict(options))
    raise CatalogError(f"cannot open {text!r}: expected demo:N[:SEED], a .json/.jsonl file or a folder")


def dropped_instance_reasons(record) -> list[str]:
    """Reason codes of the annotations a catalog dropped from ``record`` (empty if none)."""
    meta = getattr(record, "meta", None) or {}
    return [d.get("reason", "") for d in meta.get("dropped_instances", [])]
