"""The per-sample Parquet table: one explicit schema for every dataset, so that a user's tables of
any scenario (perception, understanding, reviewed reasoning) read as one table with
``pyarrow.dataset``, DuckDB or pandas.

Columns have no dots; nested data are structs, lists and maps, never JSON text, except for one
``extra`` map in each struct: fields the schema does not name, or values that do not fit the named
field's type, are kept there as JSON text (``{"field": "<json>"}``), so nothing a builder records
is lost and nothing changes a column's type. A column is typed even when every value is null
(``review_status`` of an unreviewed dataset is a null string, not a null-typed column).
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Iterable

EXTRA = "extra"
# Names the schema below; bump it with any change to the schema (a test pins the pair), so that
# table builds notice a table of another schema without importing pyarrow to compare.
SCHEMA_ID = "smartedit-sample-table/2"


class _Misfit:
    """A value that does not fit the declared type (goes to the enclosing struct's ``extra``)."""


MISFIT = _Misfit()


@lru_cache(maxsize=None)
def parquet_schema():
    """The ``pyarrow.Schema`` of every per-sample table (see the module docstring)."""
    import pyarrow as pa

    text = pa.string()
    extra = pa.field(EXTRA, pa.map_(text, text))

    def struct(*fields):
        return pa.struct(list(fields) + [extra])

    stage = struct(pa.field("name", text))
    attribute = struct(pa.field("attribute", text), pa.field("value", text), pa.field("phrase", text))
    target = struct(
        pa.field("category", text), pa.field("instance", text), pa.field("box", pa.list_(pa.float64())),
        pa.field("attribute", pa.list_(text)), pa.field("value", text), pa.field("phrase", text),
        pa.field("attributes", pa.list_(attribute)), pa.field("noun", text), pa.field("edit", text),
        pa.field("colour", text), pa.field("colour_rgb", pa.list_(pa.int32())), pa.field("donor", text),
    )
    provenance = struct(
        pa.field("record", text), pa.field("record_id", text), pa.field("source", text), pa.field("builder", text),
        pa.field("case_id", text), pa.field("candidate", pa.int32()), pa.field("candidates", pa.int32()),
        pa.field("seed", pa.int64()), pa.field("seeds", pa.map_(text, pa.int64())),
        pa.field("masker", stage), pa.field("inpainter", stage), pa.field("harmonizer", stage),
        pa.field("editor", stage), pa.field("versions", pa.map_(text, text)),
    )
    quality = struct(
        pa.field("scores", pa.map_(text, pa.float64())), pa.field("passed", pa.list_(text)),
        pa.field("failed", pa.map_(text, text)),
    )
    vote = struct(pa.field("reviewer", text), pa.field("verdict", text), pa.field("time", text),
                  pa.field("reason", text), pa.field("note", text), pa.field("struck", pa.list_(pa.int32())))
    review = struct(
        pa.field("status", text), pa.field("reviewer", text), pa.field("time", text),
        pa.field("reviewers", pa.list_(text)), pa.field("decisions", pa.list_(vote)),
        pa.field("agreement", text), pa.field("required", pa.int32()), pa.field("case_id", text),
        pa.field("resolved_by", text), pa.field("struck_paraphrases", pa.list_(text)),
    )
    return pa.schema([
        pa.field("key", text, nullable=False), pa.field("shard", text), pa.field("index", pa.int32()),
        pa.field("scenario", text), pa.field("op", text), pa.field("instruction", text),
        pa.field("paraphrases", pa.list_(text)), pa.field("category", text), pa.field("attribute", text),
        pa.field("width", pa.int32()), pa.field("height", pa.int32()), pa.field("review_status", text),
        pa.field("target", target), pa.field("provenance", provenance), pa.field("quality", quality),
        pa.field("review", review),
    ])


_json = json.JSONEncoder(sort_keys=True, default=str).encode


def converter(type_):
    """A function shaping a JSON value for the Arrow ``type_``; it returns ``MISFIT`` when the value
    cannot take that type. Built once per type, so a row costs no type inspection."""
    import pyarrow as pa

    if pa.types.is_struct(type_):
        fields = [(type_.field(i).name, converter(type_.field(i).type))
                  for i in range(type_.num_fields) if type_.field(i).name != EXTRA]
        names = {name for name, _ in fields}

        def struct(value):
            if not isinstance(value, dict):
                return MISFIT
            out, extra = {}, []
            for name, convert in fields:
                item = value.get(name)
                shaped = None if item is None else convert(item)
                if shaped is MISFIT:
                    extra.append((name, _json(item)))
                    shaped = None
                out[name] = shaped
            extra += [(str(k), _json(v)) for k, v in value.items() if k not in names]
            out[EXTRA] = sorted(extra) or None
            return out
        return struct
    if pa.types.is_map(type_):
        item = converter(type_.item_type)

        def mapping(value):
            if not isinstance(value, dict):
                return MISFIT
            pairs = [(str(k), None if v is None else item(v)) for k, v in value.items()]
            return [(k, None if v is MISFIT else v) for k, v in pairs]
        return mapping
    if pa.types.is_list(type_):
        element = converter(type_.value_type)

        def listing(value):
            shaped = [None if v is None else element(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
            return MISFIT if any(v is MISFIT for v in shaped) else shaped
        return listing
    if pa.types.is_string(type_):
        return lambda v: (v if isinstance(v, str)
                          else _json(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else MISFIT)
    if pa.types.is_integer(type_):
        return lambda v: int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == int(v) else MISFIT
    if pa.types.is_floating(type_):
        return lambda v: float(v) if isinstance(v, (int, float)) else MISFIT
    raise TypeError(f"no conversion to {type_}")


@lru_cache(maxsize=None)
def _row_converter():
    import pyarrow as pa

    return converter(pa.struct(list(parquet_schema())))


def parquet_rows(rows: Iterable[dict]):
    """Index rows (``index.index_row`` plus ``shard`` and ``index``) -> a ``pyarrow.Table`` in
    ``parquet_schema()``. Rows from older sidecars (no ``paraphrases`` or ``review``) get nulls."""
    import pyarrow as pa

    convert = _row_converter()
    shaped = []
    for row in rows:
        out = convert(row)
        if out is MISFIT:
            raise TypeError(f"index row is not a dict: {row!r}")
        out.pop(EXTRA)  # top-level names are fixed; anything else in a row is not published
        shaped.append(out)
    return pa.Table.from_pylist(shaped, schema=parquet_schema())
