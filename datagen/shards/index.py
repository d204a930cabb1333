"""Per-sample index rows (the Parquet table and the sidecars' ``samples``) and counts over them.

One function turns a sample's metadata into a row and one counts rows, so a sidecar's counts, a
manifest's counts and the Parquet table can never disagree.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Iterable

NO_ATTRIBUTE = "none"


def attribute_of(target: dict) -> str:
    """The referring attribute a sample used (``target["attribute"]``): a string, a list joined
    with ``+``, or ``"none"`` when the instruction needed none (e.g. reasoning samples)."""
    value = target.get("attribute") if isinstance(target, dict) else None
    if value is None or value == "" or value == []:
        return NO_ATTRIBUTE
    if isinstance(value, (list, tuple)):
        return "+".join(str(v) for v in value)
    return str(value)


def index_row(meta: dict) -> dict:
    """A sample's metadata (``EditSample.metadata()``) -> one JSON-serialisable index row.

    Columns: ``key, scenario, op, instruction, n_paraphrases, category, attribute, width, height,
    review_status, target, provenance, quality`` (the last three as dicts; ``parquet_table``
    flattens ``quality`` into columns and stores the other two as JSON text).
    """
    target = meta.get("target") or {}
    width, height = (meta.get("size") or [None, None])[:2]
    review = meta.get("review") or {}
    return {
        "key": meta["key"],
        "scenario": meta.get("scenario"),
        "op": meta.get("op"),
        "instruction": meta.get("instruction"),
        "n_paraphrases": len(meta.get("paraphrases") or []),
        "category": target.get("category"),
        "attribute": attribute_of(target),
        "width": width,
        "height": height,
        "review_status": review.get("status"),
        "target": target,
        "provenance": meta.get("provenance") or {},
        "quality": meta.get("quality") or {},
    }


def count_rows(rows: Iterable[dict]) -> dict[str, dict[str, int]]:
    """``{"scenario": {...}, "op": {...}, "attribute": {...}, "category": {...}}`` sample counts."""
    counts = {name: Counter() for name in ("scenario", "op", "attribute", "category")}
    for row in rows:
        for name, counter in counts.items():
            counter[str(row.get(name))] += 1
    return {name: dict(sorted(counter.items())) for name, counter in counts.items()}


def flatten_quality(quality: dict) -> dict:
    """``{"scores": {"clip": 0.3}, "passed": True}`` -> ``{"quality.scores.clip": 0.3,
    "quality.passed": True}``: two levels deep; deeper values and lists become JSON text."""
    flat = {}
    for name, value in quality.items():
        if isinstance(value, dict):
            for sub, subvalue in value.items():
                flat[f"quality.{name}.{sub}"] = _scalar(subvalue)
        else:
            flat[f"quality.{name}"] = _scalar(value)
    return flat


def _scalar(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return json.dumps(value, sort_keys=True, default=str)


def parquet_table(rows: list[dict]):
    """Index rows (plus ``shard``/``index`` added by the manifest builder) -> ``pyarrow.Table``.

    Columns missing from some rows are null there; a quality column whose values mix types (say a
    score in one sample and a string in another) is stored as text rather than failing the write.
    """
    import pyarrow as pa

    flat_rows = []
    for row in rows:
        flat = {k: v for k, v in row.items() if k not in ("target", "provenance", "quality")}
        flat["target"] = json.dumps(row.get("target") or {}, sort_keys=True, default=str)
        flat["provenance"] = json.dumps(row.get("provenance") or {}, sort_keys=True, default=str)
        flat.update(flatten_quality(row.get("quality") or {}))
        flat_rows.append(flat)
    columns: dict[str, list] = {}
    for i, flat in enumerate(flat_rows):
        for name in flat:
            columns.setdefault(name, [None] * i)
        for name, values in columns.items():
            values.append(flat.get(name))
    arrays = {}
    for name, values in columns.items():
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1:
            values = [None if v is None else str(v) for v in values]
        arrays[name] = pa.array(values)
    return pa.table(arrays)
