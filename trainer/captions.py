"""Stage-1 caption data, in the formats people already have it in.

- **img2dataset WebDataset output**: a folder of ``NNNNN.tar`` shards (each sample ``KEY.jpg`` +
  ``KEY.txt`` caption + ``KEY.json``), with ``NNNNN_stats.json`` beside them; or one ``.tar``.
- **Parquet**: a file or a folder of ``*.parquet`` with one row per (image path or bytes, caption);
  the caption column is ``--caption-column`` (default: the first of ``caption``, ``text``, ``txt``,
  ``TEXT``). Rows with an img2dataset ``status`` other than ``success`` are passed over.

The official stage-1 objective is text-only: the caption goes to the LLM, and the QFormer's output
is regressed onto the CLIP text encoder's embedding of the same caption. Images are therefore never
decoded here (a tar's image bytes are read past, a Parquet's image column is not loaded).
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.sources import Source

log = logging.getLogger(__name__)
CAPTION_COLUMNS = ("caption", "text", "txt", "TEXT")


def _tar_count(tar: Path) -> int:
    """Samples in an img2dataset shard from its ``_stats.json`` (``successes``); 1 when unknown
    (the count only weighs sources against each other)."""
    stats = tar.with_name(tar.stem + "_stats.json")
    if stats.exists():
        return max(1, int(json.loads(stats.read_text()).get("successes", 1)))
    return 1


def caption_source(spec: str) -> Source:
    """One ``--shards`` value (tar / Parquet file, or a folder of either) -> a ``Source``."""
    import pyarrow.parquet as pq

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"--shards {spec}: no such file or folder")
    tars = sorted(path.glob("*.tar")) if path.is_dir() else [path] if path.suffix == ".tar" else []
    parquets = sorted(path.glob("*.parquet")) if path.is_dir() else [path] if path.suffix == ".parquet" else []
    name = path.stem if path.is_file() else path.name
    if tars:
        return Source(name=name, kind="shards", nsamples=sum(_tar_count(t) for t in tars), weight=0.0,
                      urls=[str(t.resolve()) for t in tars])
    if parquets:
        rows = sum(pq.ParquetFile(str(p)).metadata.num_rows for p in parquets)
        return Source(name=name, kind="parquet", nsamples=rows, weight=0.0, urls=[str(p.resolve()) for p in parquets])
    raise FileNotFoundError(f"--shards {spec}: no .tar shards (img2dataset webdataset) or .parquet files found")


def caption_sources(specs: list[str]) -> list[Source]:
    """Every ``--shards`` value as a source, weighted by size."""
    from trainer.sources import assign_weights, check_unique_names

    sources = [caption_source(s) for s in specs]
    check_unique_names(sources)
    return assign_weights(sources, {})


def caption_of(raw: dict, column: str = "") -> str:
    """The caption of one raw sample (tar ``txt`` member or Parquet row); raises ValueError when
    there is none (the stream skips the sample and says why)."""
    if "__row__" in raw:
        row = raw["__row__"]
        if row.get("status") not in (None, "success"):
            raise ValueError(f"img2dataset status {row['status']!r}")
        names = [column] if column else [c for c in CAPTION_COLUMNS if c in row]
        if not names or names[0] not in row:
            raise ValueError(f"no caption column (looked for {column or ', '.join(CAPTION_COLUMNS)})")
        text = row[names[0]]
    else:
        text = raw.get("txt")
        if text is None:
            raise ValueError("no .txt caption member")
        text = text.decode("utf-8") if isinstance(text, bytes) else text
    text = (text or "").strip()
    if not text:
        raise ValueError("empty caption")
    return text


@dataclass
class CaptionFeaturizer:
    """Raw caption sample -> ``input_ids``/``labels`` (LLM request + image-token answer) and
    ``clip_ids`` [77] (the CLIP tokenizer's ids of the same caption, the alignment target's input).
    ``prompts``: ``PromptBuilder``; ``clip_tokenizer``: the SD folder's CLIP tokenizer."""

    prompts: object
    clip_tokenizer: object
    clip_length: int = 77
    caption_column: str = ""

    def __call__(self, raw: dict, source: Source, rng: random.Random) -> dict:
        caption = caption_of(raw, self.caption_column)
        tokens = self.prompts.caption_sample(caption, rng)
        clip_ids = self.clip_tokenizer(caption, padding="max_length", max_length=self.clip_length, truncation=True,
                                       return_tensors="pt").input_ids[0]
        return {"input_ids": torch.tensor(tokens.input_ids, dtype=torch.long),
                "labels": torch.tensor(tokens.labels, dtype=torch.long),
                "clip_ids": clip_ids, "key": raw["__key__"], "caption": caption}

