"""COCO-Stuff: every stuff region of an image as "Mark the sky in green".

Two forms of the released annotations are read:

* the stuff+thing label maps (``stuffthingmaps_trainval2017.zip``): ``MAPS/NAME.png``, one
  8-bit index per pixel, ``index = class id - 1`` (0..181), 255 = unlabeled; images are
  ``IMAGES/NAME.jpg``. ``root`` is the maps folder (e.g. ``.../stuffthingmaps_trainval2017/train2017``).
* the stuff JSON (``stuff_train2017.json``, COCO format with one RLE per image and stuff class):
  ``root`` is that file.

Class ids and names are COCO-Stuff's (``labels.txt`` of nightrome/cocostuff): things 1..91,
stuff 92..182, 183 = "other" (never marked). Only stuff is marked by default: things are
instances, which RefCOCO covers with unambiguous expressions, while "Mark the person" over every
person at once teaches a different task (``things=True`` adds them). Names are made readable:
"sky-other" -> "sky", "wall-brick" -> "brick wall". Per image the ``max_per_image`` largest
classes covering at least ``min_fraction`` of it become samples (largest first).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from datagen.imageio import load_image
from datagen.sources.base import confined_path
from datagen.importers.base import ImportProblem, Importer
from datagen.importers.coco_refs import CocoIndex
from datagen.importers.marking import mark_sample, region_colour
from datagen.schema import EditSample, ImageRecord, Quarantined
from datagen.sources.annotations import rle_to_mask
from datagen.sources.base import CatalogError

FIRST_STUFF_ID = 92
STUFF_NAMES = (
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house",
    "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad", "river",
    "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
THING_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "street sign", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
    "cow", "elephant", "bear", "zebra", "giraffe", "hat", "backpack", "umbrella", "shoe", "eye glasses", "handbag",
    "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "plate", "wine glass", "cup", "fork", "knife", "spoon",
    "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", "mirror", "dining table", "window", "desk", "toilet", "door", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator",
    "blender", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "hair brush",
)
CLASS_NAMES = {i + 1: n for i, n in enumerate(THING_NAMES)} | {FIRST_STUFF_ID + i: n for i, n in enumerate(STUFF_NAMES)}
OTHER_ID = 183
UNLABELED_INDEX = 255


def readable(name: str) -> str:
    """COCO-Stuff class name -> noun phrase: "sky-other" -> "sky", "wall-brick" -> "brick wall",
    "desk-stuff" -> "desk", "playingfield" -> "playing field"."""
    head, _, kind = name.partition("-")
    if kind in ("other", "stuff", ""):
        return {"playingfield": "playing field", "waterdrops": "water drops"}.get(head, head)
    return f"{kind} {head}"


class CocoStuffImporter(Importer):
    """``CocoStuffImporter(root, *, images=None, split=None, things=False, min_fraction=0.02,
    max_per_image=3, seed=0)``: ``root`` is a label-map folder or a stuff JSON file; ``images``
    the COCO image folder (default: ``ROOT/../images`` for maps, the JSON's folder for JSON)."""

    name = "cocostuff"
    scenario = "perception"

    def __init__(self, root, *, images=None, split: str | None = None, things: bool = False,
                 min_fraction: float = 0.02, max_per_image: int = 3, seed: int = 0):
        super().__init__(root, seed=seed)
        if not 0 < float(min_fraction) < 1 or int(max_per_image) < 1:
            raise ValueError(f"min_fraction must be in (0, 1) and max_per_image >= 1, got {min_fraction}, {max_per_image}")
        self.things, self.min_fraction, self.max_per_image = bool(things), float(min_fraction), int(max_per_image)
        self.split = split or (self.root.stem.split("_")[-1] if self.root.is_file() else self.root.name)
        if self.root.is_file():
            self.coco = CocoIndex(self.root)
            self.names = {**CLASS_NAMES, **self.coco.categories}
            self._anns_by_image: dict = {}
            for ann in self.coco.anns.values():
                self._anns_by_image.setdefault(ann.get("image_id"), []).append(ann["id"])
            self.images = Path(images) if images else self.root.parent
            self._records = {f"{self.split}:{i}": i for i in sorted(self.coco.images, key=str)}
        else:
            self.coco, self.names = None, dict(CLASS_NAMES)
            self.images = Path(images) if images else self.root.parent.parent / "images" / self.root.name
            self._records = {f"{self.split}:{p.stem}": p for p in sorted(self.root.glob("*.png"))}
        if not self._records:
            raise CatalogError(f"{self.root} holds no COCO-Stuff label map (*.png) or image entry")
        if not self.images.is_dir():
            raise CatalogError(f"images folder {self.images} does not exist; pass the COCO images folder as --images")
        self._set_ids(list(self._records))

    def settings(self) -> dict:
        return {**super().settings(), "split": self.split, "things": self.things,
                "min_fraction": self.min_fraction, "max_per_image": self.max_per_image}

    def _markable(self, class_id: int) -> bool:
        return class_id != OTHER_ID and class_id in self.names and (self.things or class_id >= FIRST_STUFF_ID)

    def _label_map(self, path: Path, hw: tuple[int, int]) -> np.ndarray:
        """The HxW uint8 index map of one image (index = class id - 1, 255 = unlabeled)."""
        try:
            labels = np.asarray(Image.open(path))
        except OSError as exc:
            raise ImportProblem("undecodable", f"label map {path.name}: {exc}") from exc
        if labels.ndim != 2 or labels.shape != hw or labels.dtype != np.uint8:
            raise ImportProblem("size_mismatch", f"label map {path.name} is {labels.shape} {labels.dtype}, "
                                                 f"the image {hw} (8-bit indices expected)")
        return labels

    def _regions_from_json(self, image_id, hw: tuple[int, int]) -> dict[int, np.ndarray]:
        regions: dict[int, np.ndarray] = {}
        for ann_id in self._anns_by_image.get(image_id, []):
            ann = self.coco.anns[ann_id]
            mask = rle_to_mask(ann.get("segmentation") or {}, hw)
            class_id = int(ann.get("category_id", -1))
            regions[class_id] = regions[class_id] | mask if class_id in regions else mask
        return regions

    def load_record(self, record_id: str) -> ImageRecord:
        entry = self._records[record_id]
        if self.coco is not None:
            info = self.coco.images[entry]
            image = load_image(confined_path(self.images, str(info["file_name"])))
            regions = self._regions_from_json(entry, image.shape[:2])
            areas = {c: int(m.sum()) for c, m in regions.items()}
        else:
            image = load_image(self.images / f"{entry.stem}.jpg")
            labels = self._label_map(entry, image.shape[:2])
            counts = np.bincount(labels.ravel(), minlength=256)  # one pass; masks only for the chosen
            areas = {int(v) + 1: int(counts[v]) for v in np.flatnonzero(counts) if v != UNLABELED_INDEX}
        total = image.shape[0] * image.shape[1]
        kept = sorted(((area, c) for c, area in areas.items()
                       if self._markable(c) and area >= self.min_fraction * total), reverse=True)
        if not kept:
            raise ImportProblem("no_region", f"no {'class' if self.things else 'stuff class'} covers "
                                             f"{self.min_fraction:.0%} of the image")
        chosen = [(c, regions[c] if self.coco is not None else labels == c - 1) for _, c in kept[: self.max_per_image]]
        return ImageRecord(record_id, image, [], source=self.source, meta={
            "dataset": self.name, "split": self.split, "image": str(entry if self.coco is not None else entry.stem),
            "regions": chosen})

    def samples(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        for class_id, mask in record.meta["regions"]:
            name = self.names[class_id]
            yield mark_sample(self, record, mask=mask, expression=f"the {readable(name)}", parts=("class", class_id),
                              own_colour=region_colour(record.image, mask),
                              target={"category": name, "class_id": class_id},
                              ids={"image": record.meta["image"], "class_id": class_id})
