"""What every importer shares: the catalog-plus-builder base class and its provenance.

An importer's records are ``ImageRecord``s whose ``meta`` carries what the dataset says about the
image (expressions, target images, split, original ids); ``__call__`` turns one record into
samples. Loading never raises for bad data (``Catalog.load``); on top of the catalog's codes an
importer raises ``InstanceProblem`` (``empty_polygon``, ``bad_polygon``, ``bad_mask``) or
``ImportProblem`` (``missing_id``, ``no_expression``, ``size_mismatch``...) from ``_load`` and
the record is quarantined with that code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from datagen.schema import EditSample, ImageRecord, Quarantined, sample_key
from datagen.sources.annotations import InstanceProblem
from datagen.sources.base import Catalog, CatalogError


class ImportProblem(ValueError):
    """One record of a dataset cannot be imported; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Importer(Catalog):
    """Base of every importer. Subclasses set ``name`` (registry name), ``scenario`` and
    ``split``, build ``self._ids`` (ordered record ids) in ``__init__``, and implement ``_load``
    and ``samples(record)``."""

    name = ""
    scenario = ""

    def __init__(self, root, *, seed: int = 0):
        self.root = Path(root)
        if not self.root.exists():
            raise CatalogError(f"dataset folder {self.root} does not exist")
        self.source = str(self.root)
        self.seed = int(seed)
        self._ids: list[str] = []
        self._index: set[str] = set()

    def _set_ids(self, ids: list[str]) -> None:
        self._ids = list(ids)
        self._index = set(self._ids)

    def ids(self) -> list[str]:
        return list(self._ids)

    def __contains__(self, record_id) -> bool:
        return record_id in self._index

    def _load(self, record_id: str) -> ImageRecord | Quarantined:
        # Catalog.load turns decode errors and unexpected shapes into codes; ours keep their own.
        try:
            return self.load_record(record_id)
        except (ImportProblem, InstanceProblem) as exc:
            return Quarantined(record_id, exc.reason, exc.detail, self.source)

    def load_record(self, record_id: str) -> ImageRecord:
        """Read one record; raise ``ImportProblem`` / ``InstanceProblem`` / ``ImageDecodeError``."""
        raise NotImplementedError

    def settings(self) -> dict:
        """What decides the samples besides the data (part of every key and of the manifest)."""
        return {"dataset": self.name, "seed": self.seed}

    def manifest_facts(self) -> dict:
        """Top-level manifest keys this dataset adds (``holdout``/``split`` for evaluation data)."""
        return {"dataset": self.name}

    def samples(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        raise NotImplementedError

    def __call__(self, record: ImageRecord) -> Iterator[EditSample | Quarantined]:
        return self.samples(record)

    def key(self, record: ImageRecord, *parts) -> str:
        """Stable sample key from the record id, ``parts`` and the settings."""
        return sample_key(self.name, record.id, *parts, self.settings())

    def provenance(self, record: ImageRecord, **ids) -> dict:
        """``{"dataset", "split", "ids", "record", "source", "importer", "settings"}``."""
        return {"dataset": record.meta.get("dataset", self.name), "split": record.meta.get("split"),
                "ids": ids, "record": record.id, "source": self.source, "importer": self.name,
                "builder": self.name, "settings": self.settings()}


def read_json(path: Path, what: str):
    """Parse the JSON file ``path`` (an index file the whole dataset depends on) or raise
    ``CatalogError`` naming ``what`` it is."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise CatalogError(f"{what} {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise CatalogError(f"{what} {path} is not readable JSON: {exc}") from exc


def check_same_size(record_id: str, src, tgt) -> None:
    """``ImportProblem('size_mismatch')`` unless the two HxWx3 images have the same shape."""
    if src.shape != tgt.shape:
        raise ImportProblem("size_mismatch", f"{record_id}: source {src.shape[1]}x{src.shape[0]} and target "
                                             f"{tgt.shape[1]}x{tgt.shape[0]} differ")


def text_or_problem(value, what: str) -> str:
    """A non-empty, whitespace-normalised string, or ``ImportProblem('no_instruction')``."""
    if not isinstance(value, str) or not value.strip():
        raise ImportProblem("no_instruction", f"{what} is missing or empty: {value!r}")
    return " ".join(value.split())
