"""Instances from an open-vocabulary detector, for image folders nobody annotated.

``DetectedCatalog(source, prompts, detector="owlv2", detector_options={"model_dir": ...})`` lists

* every image file under ``source`` when it is a folder (recursively, sorted by relative path;
  ids ``detected:{folder name}:{relative path without suffix}``), or
* the records of any other catalog spec ``open_catalog`` understands (``demo:N``, a COCO JSON...),
  whose own annotations are then *ignored* (useful to measure a detector against them),

and loads each as an ``ImageRecord`` whose instances are the detector's boxes for ``prompts``
(category = the prompt, box = the detected XYXY box, no mask: the job's masker, e.g. SAM, masks
them as it masks annotated boxes). Detection scores and the detector's settings go into
``record.meta["detections"]`` / ``["detector"]``. An image with no detection above the threshold
loads with no instance, which every builder counts as ``no_instances``; a box a catalog check
rejects is dropped with its reason (``dropped_instances``), as for annotated data.

The detector is built when the catalog opens, once per process and settings (a module-level cache,
so the catalog itself pickles as plain data).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from datagen.detection import parse_prompts
from datagen.imageio import DEFAULT_MAX_PIXELS, load_image
from datagen.schema import ImageRecord, Quarantined
from datagen.sources.annotations import InstanceProblem, dropped_entry, make_instance
from datagen.sources.base import Catalog, CatalogError, confined_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_DETECTORS: dict[str, Any] = {}  # settings JSON -> detector, per process


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (by suffix, case-insensitive), sorted by relative path."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class DetectedCatalog(Catalog):
    """See the module docstring. ``prompts``: ``"cat,dog"`` or a list of category names."""

    def __init__(self, source: str, prompts: str | Sequence[str], *, detector: str = "owlv2",
                 detector_options: dict | None = None, images: str | None = None,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.prompts = parse_prompts(prompts)
        self.detector_name, self.detector_options = detector, dict(detector_options or {})
        self.max_pixels = max_pixels
        path = Path(str(source))
        self.folder: Path | None = path if path.is_dir() else None
        if self.folder is not None:
            self.name = self.folder.resolve().name or "images"
            self._files = {f"detected:{self.name}:{p.relative_to(self.folder).with_suffix('').as_posix()}": p
                           for p in list_images(self.folder)}
            if not self._files:
                raise CatalogError(f"{self.folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            self._base = None
        else:
            from datagen.sources import open_catalog

            self._base = open_catalog(source, images=images) if images else open_catalog(source)
            self.name = self._base.name
            self._files = {}
        self.source = f"detected:{detector}:{source}"
        self.detector()  # build it now: missing weights are a usage error before any record is read

    def ids(self) -> list[str]:
        return list(self._files) if self.folder is not None else self._base.ids()

    def __contains__(self, record_id) -> bool:
        return record_id in self._files if self.folder is not None else record_id in self._base

    def detector(self):
        """The detector, built once per process per settings."""
        from datagen.detection import build_detector

        key = json.dumps([self.detector_name, self.detector_options], sort_keys=True, default=str)
        if key not in _DETECTORS:
            _DETECTORS.clear()  # one detector at a time: a worker switching models frees the old one
            _DETECTORS[key] = build_detector(self.detector_name, **self.detector_options)
        return _DETECTORS[key]

    def _load(self, record_id: str) -> ImageRecord | Quarantined:
        if self.folder is not None:
            # A symlink in the folder must not make a run read (and publish) a file outside it.
            path = confined_path(self.folder, self._files[record_id].relative_to(self.folder))
            image = load_image(path, max_pixels=self.max_pixels)
            meta: dict = {"path": str(path), "file_name": path.relative_to(self.folder).as_posix()}
        else:
            base = self._base.load(record_id)
            if isinstance(base, Quarantined):
                return base
            image, meta = base.image, {k: v for k, v in base.meta.items() if k != "dropped_instances"}
            meta["ignored_annotations"] = len(base.instances)
        detector = self.detector()
        found = detector.detect([image], self.prompts)[0]
        instances, dropped = [], []
        for i, (box, score, category) in enumerate(zip(found.boxes, found.scores, found.categories)):
            try:
                instances.append(make_instance(str(i), category, image.shape[:2], box_xyxy=[float(v) for v in box]))
            except InstanceProblem as problem:
                dropped.append(dropped_entry(str(i), problem))
        meta.update(dropped_instances=dropped, detector=detector.settings(), prompts=list(self.prompts),
                    detections=[{"instance": str(i), "category": c, "score": round(float(s), 6),
                                 "box": [round(float(v), 3) for v in b]}
                                for i, (b, s, c) in enumerate(zip(found.boxes, found.scores, found.categories))])
        return ImageRecord(record_id, image, instances, self.source, meta)


def detected_catalog(source: str, detector: str, options: dict, *, images: str | None = None) -> DetectedCatalog:
    """``DetectedCatalog`` from a job's ``detector`` backend: ``options`` holds ``prompts`` (the
    ``--detect`` list) beside the detector's own options."""
    options = dict(options)
    if "prompts" not in options:
        raise ValueError("the detector stage needs prompts: pass --detect 'cat,dog,...'")
    prompts = options.pop("prompts")
    return DetectedCatalog(source, prompts, detector=detector, detector_options=options, images=images)
