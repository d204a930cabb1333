"""MagicBrush (``osunlp/MagicBrush`` Parquet shards) as editing samples, one per turn.

Columns: ``img_id`` (COCO id as text), ``turn_index`` (1 = the real photo; 2, 3 = edits of the
previous turn's result), ``source_img``, ``mask_img``, ``instruction``, ``target_img``; images are
HF image structs. Files are named ``{split}-NNNNN-of-NNNNN-HASH.parquet`` (``train``, ``dev``); the
split comes from that prefix. Every turn is its own sample; ``target.turn`` keeps its index so a
trainer can weight or filter multi-turn edits.

``mask_img`` is the annotator's free-form region drawn on the source: painted white (or made
transparent, which decoding composites on white). The mask is the white pixels of ``mask_img``
that differ from ``source_img``, or all white pixels when ``mask_img`` is a plain black-and-white
mask. A turn whose mask comes out empty keeps the whole image as its mask and says so
(``target.mask = "whole_image"``), since MagicBrush also has mask-free edits.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from datagen.importers.base import Importer, check_same_size, text_or_problem
from datagen.importers.parquet_rows import ParquetRows, image_cell
from datagen.schema import EditSample, ImageRecord, Quarantined

COLUMNS = ["img_id", "turn_index", "source_img", "mask_img", "instruction", "target_img"]
WHITE = 250  # channel value from which a mask pixel counts as painted white


def region_from_mask_image(mask_img: np.ndarray, source: np.ndarray) -> np.ndarray:
    """MagicBrush ``mask_img`` (HxWx3 uint8, white = region) -> HxW bool. ``source``: the
    turn's source image (HxWx3 uint8), to tell painted white from white that was there."""
    # Per-channel comparisons joined with & / |: numpy reduces over a 3-wide last axis slowly.
    white = (mask_img[..., 0] >= WHITE) & (mask_img[..., 1] >= WHITE) & (mask_img[..., 2] >= WHITE)
    binary = ((mask_img <= 255 - WHITE) | (mask_img >= WHITE)).all()
    if binary:
        return white
    diff = np.abs(mask_img.astype(np.int16) - source.astype(np.int16)) > 30
    return white & (diff[..., 0] | diff[..., 1] | diff[..., 2])


class MagicBrushImporter(Importer):
    """``MagicBrushImporter(root, *, seed=0)``: ``root`` is the folder of ``*.parquet`` files."""

    name = "magicbrush"
    scenario = "editing"

    def __init__(self, root, *, seed: int = 0):
        super().__init__(root, seed=seed)
        self.rows = ParquetRows(sorted(self.root.rglob("*.parquet")), COLUMNS)
        self._set_ids(self.rows.ids)

    def load_record(self, record_id: str) -> ImageRecord:
        row = self.rows.row(record_id)
        instruction = text_or_problem(row["instruction"], "instruction")
        src = image_cell(row["source_img"], "source_img")
        tgt = image_cell(row["target_img"], "target_img")
        check_same_size(record_id, src, tgt)
        painted = image_cell(row["mask_img"], "mask_img") if row["mask_img"] else None
        if painted is not None:
            check_same_size(record_id, src, painted)
        region = region_from_mask_image(painted, src) if painted is not None else np.zeros(src.shape[:2], bool)
        split = record_id.split("-", 1)[0] if "-" in record_id else "train"
        return ImageRecord(record_id, src, [], source=self.source, meta={
            "dataset": self.name, "split": split, "instruction": instruction, "tgt": tgt, "region": region,
            "img_id": str(row["img_id"]), "turn": int(row["turn_index"])})

    def samples(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        meta = record.meta
        has_region = bool(meta["region"].any())
        yield EditSample(
            key=self.key(record, meta["img_id"], meta["turn"]), src=record.image, tgt=meta["tgt"],
            mask=meta["region"] if has_region else np.ones(record.image.shape[:2], dtype=bool),
            instruction=meta["instruction"], scenario="editing", op="edit",
            target={"turn": meta["turn"], "img_id": meta["img_id"], "mask": "annotated" if has_region else "whole_image"},
            provenance=self.provenance(record, img_id=meta["img_id"], turn=meta["turn"], row=record.id))
