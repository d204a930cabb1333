"""InstructPix2Pix's generated pairs as editing samples, from either release.

* Parquet (``timbrooks/instructpix2pix-clip-filtered``): columns ``original_prompt``,
  ``original_image``, ``edit_prompt``, ``edited_prompt``, ``edited_image``; ``root`` is the folder
  of ``*.parquet`` files (searched recursively). Record id ``FILE:ROW``.
* Folders (the original ``clip-filtered-dataset`` / ``random-sample-dataset``): ``ROOT/seeds.json``
  = ``[[prompt_folder, [seed, ...]], ...]``; ``ROOT/PROMPT/prompt.json`` = ``{"input", "edit",
  "output"}``; ``ROOT/PROMPT/{seed}_0.jpg`` (before) and ``{seed}_1.jpg`` (after). Every listed
  seed is a pair that passed the CLIP filter, so each ``(prompt, seed)`` is one record.

The instruction is ``edit_prompt`` / ``edit``; the captions are kept in ``target``. The edit may
change any pixel (no mask is published), so the mask is the whole image.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from datagen.imageio import load_image
from datagen.importers.base import ImportProblem, Importer, check_same_size, read_json, text_or_problem
from datagen.importers.parquet_rows import ParquetRows, image_cell
from datagen.schema import EditSample, ImageRecord, Quarantined
from datagen.sources.base import CatalogError

PARQUET_COLUMNS = ["original_prompt", "original_image", "edit_prompt", "edited_prompt", "edited_image"]


class InstructPix2PixImporter(Importer):
    """``InstructPix2PixImporter(root, *, split="train", seed=0)``: Parquet folder or seeds.json
    folder (detected)."""

    name = "instructpix2pix"
    scenario = "editing"

    def __init__(self, root, *, split: str = "train", seed: int = 0):
        super().__init__(root, seed=seed)
        self.split = split
        if (self.root / "seeds.json").exists():
            self.layout, self.rows = "folders", None
            self._pairs = self._read_seeds()
            self._set_ids(list(self._pairs))
        else:
            self.layout = "parquet"
            self.rows = ParquetRows(sorted(self.root.rglob("*.parquet")), PARQUET_COLUMNS)
            self._set_ids(self.rows.ids)

    def _read_seeds(self) -> dict[str, tuple[str, object]]:
        seeds = read_json(self.root / "seeds.json", "InstructPix2Pix seeds file")
        if not isinstance(seeds, list):
            raise CatalogError(f"{self.root / 'seeds.json'} is not a list of [prompt folder, seeds]")
        pairs = {}
        for entry in seeds:
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list):
                for seed in entry[1]:
                    pairs[f"{entry[0]}/{seed}"] = (str(entry[0]), seed)
        return pairs

    def settings(self) -> dict:
        return {**super().settings(), "split": self.split}

    def load_record(self, record_id: str) -> ImageRecord:
        if self.layout == "folders":
            folder, seed = self._pairs[record_id]
            prompt = read_json(self.root / folder / "prompt.json", "prompt file") if (
                self.root / folder / "prompt.json").exists() else None
            if not isinstance(prompt, dict):
                raise ImportProblem("missing", f"{folder}/prompt.json is missing or not an object")
            instruction = text_or_problem(prompt.get("edit"), f"{folder}/prompt.json 'edit'")
            captions = {"input": prompt.get("input"), "output": prompt.get("output")}
            src = load_image(self.root / folder / f"{seed}_0.jpg")
            tgt = load_image(self.root / folder / f"{seed}_1.jpg")
            ids = {"prompt": folder, "seed": seed}
        else:
            row = self.rows.row(record_id)
            instruction = text_or_problem(row["edit_prompt"], "edit_prompt")
            captions = {"input": row["original_prompt"], "output": row["edited_prompt"]}
            src = image_cell(row["original_image"], "original_image")
            tgt = image_cell(row["edited_image"], "edited_image")
            ids = {"row": record_id}
        check_same_size(record_id, src, tgt)
        return ImageRecord(record_id, src, [], source=self.source, meta={
            "dataset": self.name, "split": self.split, "instruction": instruction, "tgt": tgt,
            "captions": captions, "ids": ids})

    def samples(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        meta = record.meta
        yield EditSample(
            key=self.key(record), src=record.image, tgt=meta["tgt"],
            mask=np.ones(record.image.shape[:2], dtype=bool), instruction=meta["instruction"],
            scenario="editing", op="edit",
            target={"mask": "whole_image", "captions": meta["captions"], "layout": self.layout},
            provenance=self.provenance(record, **meta["ids"]))
