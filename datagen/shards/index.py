"""Per-sample index rows (the Parquet table and the sidecars' ``samples``) and counts over them.

One function turns a sample's metadata into a row and one counts rows, so a sidecar's counts, a
manifest's counts and the Parquet table can never disagree. The Parquet layout of a row is in
``parquet``.
"""
from __future__ import annotations

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

    Keys: ``key, scenario, op, instruction, paraphrases, category, attribute, width, height,
    review_status`` and the dicts ``target, provenance, quality, review``. ``parquet_schema``
    gives every one of them a fixed Parquet type (``parquet_rows`` does the conversion).
    """
    target = meta.get("target") or {}
    width, height = (meta.get("size") or [None, None])[:2]
    review = meta.get("review") or {}
    return {
        "key": meta["key"],
        "scenario": meta.get("scenario"),
        "op": meta.get("op"),
        "instruction": meta.get("instruction"),
        "paraphrases": list(meta.get("paraphrases") or []),
        "category": target.get("category"),
        "attribute": attribute_of(target),
        "width": width,
        "height": height,
        "review_status": review.get("status"),
        "target": target,
        "provenance": meta.get("provenance") or {},
        "quality": meta.get("quality") or {},
        "review": meta.get("review"),
    }


def count_rows(rows: Iterable[dict]) -> dict[str, dict[str, int]]:
    """``{"scenario": {...}, "op": {...}, "attribute": {...}, "category": {...}}`` sample counts."""
    counts = {name: Counter() for name in ("scenario", "op", "attribute", "category")}
    for row in rows:
        for name, counter in counts.items():
            counter[str(row.get(name))] += 1
    return {name: dict(sorted(counter.items())) for name, counter in counts.items()}


