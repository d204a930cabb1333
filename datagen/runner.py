"""The one loop that turns source records into shards: ``run_builder``.

Both the CLI and the Prefect flows call it (flows once per batch, summing the ``RunStats``).
What happens to each kind of outcome:

* a record the source could not load (``Quarantined``), or that made the builder raise, or for
  which the builder produced an invalid sample -> ``writer.quarantine`` (reasons: the source's
  code, ``builder_error``, ``invalid_sample``), counted in ``quarantined``;
* a ``Quarantined`` the builder yields (ambiguous instance, failed quality check...) ->
  ``writer.skip``, counted in ``skipped``;
* an ``EditSample`` -> ``writer.write``; a key already committed counts as a ``duplicate``;
* an annotation the catalog dropped from a record it kept (``record.meta["dropped_instances"]``:
  bad box, crowd region...) -> ``writer.quarantine`` at level ``annotation`` (id
  ``RECORD#INSTANCE``), counted in ``dropped_annotations``.

A record is marked done (and skipped by a restarted run) once everything the builder yielded for it
is written, and also when the source quarantined it (bad input stays bad); a record whose builder
failed is not marked, so a rerun retries it.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable, Iterator

from datagen.schema import EditSample, ImageRecord, Quarantined, SampleError
from datagen.shards.index import attribute_of


@dataclass
class RunStats:
    """Counts of one run (or, summed with ``+``, of many batches)."""

    records: int = 0  # records looked at, including the ones skipped as already done
    records_done_before: int = 0  # skipped because an earlier run completed them
    samples_written: int = 0
    duplicates: int = 0  # samples whose key was already committed (resume)
    by_scenario: Counter = field(default_factory=Counter)
    by_op: Counter = field(default_factory=Counter)
    by_attribute: Counter = field(default_factory=Counter)
    quarantined: Counter = field(default_factory=Counter)  # by reason
    # annotations the catalog dropped from records that were kept (bad_box, crowd...), by reason
    dropped_annotations: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # by reason
    seconds: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            if isinstance(getattr(self, f.name), dict) and not isinstance(getattr(self, f.name), Counter):
                setattr(self, f.name, Counter(getattr(self, f.name)))

    def __add__(self, other: "RunStats") -> "RunStats":
        if not isinstance(other, RunStats):
            return NotImplemented
        return RunStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (counters become sorted dicts)."""
        return {f.name: dict(sorted(v.items())) if isinstance(v := getattr(self, f.name), Counter) else v
                for f in fields(self)}

    def count_sample(self, sample: EditSample) -> None:
        self.samples_written += 1
        self.by_scenario[sample.scenario] += 1
        self.by_op[sample.op] += 1
        self.by_attribute[attribute_of(sample.target)] += 1


def _work_items(records, ids) -> tuple[Iterator[tuple[str, Callable]], int | None]:
    """``(record id, load())`` pairs; for a catalog, done ids are never loaded (no image decode)."""
    if hasattr(records, "ids") and hasattr(records, "load"):
        id_list = list(records.ids() if ids is None else ids)
        return ((rid, (lambda rid=rid: records.load(rid))) for rid in id_list), len(id_list)
    if ids is not None:
        wanted = set(ids)
        records = (r for r in records if r.id in wanted)
    total = len(records) if hasattr(records, "__len__") else None
    return ((r.id, (lambda r=r: r)) for r in records), total


def _build_record(record: ImageRecord, builder, writer, stats: RunStats) -> bool:
    """Write everything ``builder(record)`` yields. False if the record was quarantined."""
    try:
        items = iter(builder(record))
    except Exception as exc:
        return _quarantine(writer, stats, Quarantined(record.id, "builder_error", _describe(exc), record.source))
    while True:
        try:
            item = next(items)
        except StopIteration:
            return True
        except Exception as exc:
            return _quarantine(writer, stats, Quarantined(record.id, "builder_error", _describe(exc), record.source))
        if isinstance(item, Quarantined):
            writer.skip(item.reason, item.id)
            stats.skipped[item.reason] += 1
            continue
        try:
            written = writer.write(item)
        except SampleError as exc:
            detail = f"sample {getattr(item, 'key', '?')}: {exc}"
            return _quarantine(writer, stats, Quarantined(record.id, "invalid_sample", detail, record.source))
        if written:
            stats.count_sample(item)
        else:
            stats.duplicates += 1


def _log_dropped_annotations(record: ImageRecord, writer, stats: RunStats) -> None:
    """Count, and log with their reasons, the annotations the catalog dropped from ``record``.

    The log dedupes by id, so a record retried after a crash does not log its drops twice."""
    for dropped in (record.meta or {}).get("dropped_instances", []):
        q = Quarantined(f"{record.id}#{dropped.get('id')}", str(dropped.get("reason")), str(dropped.get("detail", "")),
                        record.source, level="annotation")
        writer.quarantine(q)
        stats.dropped_annotations[q.reason] += 1


def _quarantine(writer, stats: RunStats, q: Quarantined) -> bool:
    writer.quarantine(q)
    stats.quarantined[q.reason] += 1
    return False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def run_builder(records, builder: Callable[[ImageRecord], Iterable[EditSample | Quarantined]], writer, *,
                ids: Iterable[str] | None = None, progress: bool = True) -> RunStats:
    """Run ``builder`` over ``records`` and write what it yields through ``writer``.

    ``writer``: a ``ShardWriter`` or anything with its run protocol: ``done_records`` (a set-like
    snapshot), ``write(sample) -> bool`` (False = key already written), ``quarantine(q)``,
    ``skip(reason, item_id)`` and ``mark_record_done(record_id)``.
    ``records``: a catalog (``.ids()`` / ``.load(id) -> ImageRecord | Quarantined``) or any
    iterable of ``ImageRecord | Quarantined``; ``ids`` restricts the run to those record ids.
    Records in ``writer.done_records`` are skipped. Exceptions from the builder or from loading a
    record are quarantined (``builder_error`` / ``load_error``) and the run goes on; exceptions from
    the writer itself (disk full...) stop the run. Shows a tqdm bar when ``progress``.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    stats = RunStats()
    done = writer.done_records
    work, total = _work_items(records, ids)
    desc = getattr(builder, "name", None) or getattr(builder, "__name__", "records")
    with tqdm(work, total=total, desc=desc, unit="rec", disable=not progress, dynamic_ncols=True) as bar:
        for record_id, load in bar:
            stats.records += 1
            if record_id in done:
                stats.records_done_before += 1
                continue
            try:
                record = load()
            except Exception as exc:
                _quarantine(writer, stats, Quarantined(record_id, "load_error", _describe(exc)))
                continue
            if isinstance(record, Quarantined):
                _quarantine(writer, stats, record)
                writer.mark_record_done(record.id)
                continue
            _log_dropped_annotations(record, writer, stats)
            if _build_record(record, builder, writer, stats):
                writer.mark_record_done(record.id)
            bar.set_postfix(samples=stats.samples_written, refresh=False)
    stats.seconds = time.perf_counter() - started
    return stats
