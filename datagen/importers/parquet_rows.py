"""Rows of Hugging Face-style Parquet shards, by stable id, one row group in memory at a time.

The HF releases of InstructPix2Pix and MagicBrush store each image as a struct
``{"bytes": binary, "path": string}`` (the ``datasets.Image`` feature) or, in some exports, as
plain binary. Record ids are ``FILE_STEM:ROW`` (row within the file), so listing ids reads only
Parquet footers; reading a record reads its row group once and keeps it for the neighbouring
rows (batches are consecutive ids, so each row group is decoded once per batch).
"""
from __future__ import annotations

from pathlib import Path

from datagen.imageio import ImageDecodeError, decode_image
from datagen.importers.base import ImportProblem
from datagen.sources.base import CatalogError


class ParquetRows:
    """``ids`` of every row of ``files`` and ``row(id) -> dict`` of ``columns``."""

    def __init__(self, files: list[Path], columns: list[str]):
        import pyarrow.parquet as pq

        if not files:
            raise CatalogError("no Parquet file (*.parquet) found")
        self.files = {f.stem: f for f in files}
        if len(self.files) != len(files):
            raise CatalogError("two Parquet files share a name; pass one folder per split")
        self.columns = list(columns)
        self._groups: dict[str, list[tuple[int, int]]] = {}  # stem -> [(first row, rows)] per row group
        self.ids: list[str] = []
        for stem, path in self.files.items():
            try:
                meta = pq.ParquetFile(path).metadata
                schema = pq.read_schema(path)
            except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...: the file is not Parquet
                raise CatalogError(f"{path} is not a readable Parquet file: {exc}") from exc
            missing = [c for c in self.columns if c not in schema.names]
            if missing:
                raise CatalogError(f"{path} lacks the column(s) {missing}; it has {schema.names}")
            first, groups = 0, []
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                groups.append((first, rows))
                first += rows
            self._groups[stem] = groups
            self.ids += [f"{stem}:{row}" for row in range(first)]
        self._cached: tuple[str, int, list[dict]] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cached": None}  # ship paths to workers, not decoded rows

    def row(self, record_id: str) -> dict:
        import pyarrow.parquet as pq

        stem, _, row = record_id.rpartition(":")
        row = int(row)
        for index, (first, rows) in enumerate(self._groups[stem]):
            if first <= row < first + rows:
                break
        if self._cached is None or self._cached[:2] != (stem, index):
            table = pq.ParquetFile(self.files[stem]).read_row_group(index, columns=self.columns)
            self._cached = (stem, index, table.to_pylist())
        return self._cached[2][row - first]


def image_cell(value, column: str):
    """An HF image cell (``{"bytes", "path"}`` struct or raw bytes) -> HxWx3 uint8; raises
    ``ImageDecodeError`` for bad bytes, ``ImportProblem('missing')`` for an empty cell."""
    data = value.get("bytes") if isinstance(value, dict) else value
    if not data:
        raise ImportProblem("missing", f"column {column} holds no image bytes")
    try:
        return decode_image(bytes(data))
    except ImageDecodeError as exc:
        raise ImageDecodeError(exc.reason, f"column {column}: {exc.detail}") from exc
