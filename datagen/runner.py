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

How: ``_events`` loads and builds records and describes each outcome as an ``_Event``, in order;
``_Outcomes`` applies them to the writer and the counts. ``mode="sequential"`` runs both in the
calling thread; ``mode="overlapped"`` runs ``_events`` on a builder thread fed by prefetched loads
and drains it through a bounded queue (``datagen.overlap``), so that the builder's model calls
overlap decoding before them and encoding and writing after them. The writer is only ever called
from the calling thread, in the same order in both modes.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import AbstractSet, Callable, Iterable, Iterator, Protocol

from datagen.overlap import background, prefetched
from datagen.schema import EditSample, ImageRecord, Quarantined, SampleError
from datagen.shards.encoding import SampleEncoder
from datagen.shards.index import attribute_of

logger = logging.getLogger(__name__)


class RunWriter(Protocol):
    """What ``run_builder`` needs of a writer (``ShardWriter``, the reasoning ``QueueWriter``)."""

    @property
    def done_records(self) -> AbstractSet[str]:
        """Ids of records completed earlier (a snapshot, read once per run)."""

    def write(self, sample: EditSample) -> bool:
        """Write ``sample``; False if its key was already written; ``SampleError`` if invalid."""

    def quarantine(self, q: Quarantined) -> object:
        """Record a record that could not be used (counted once per id)."""

    def skip(self, reason: str, item_id: str) -> object:
        """Record a builder rejection (counted once per ``(reason, item_id)``)."""

    def mark_record_done(self, record_id: str) -> None:
        """Declare everything of ``record_id`` written (durable with the next commit)."""


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


@dataclass(frozen=True)
class _Event:
    """One outcome, in run order. ``kind``: ``seen`` (a work item; ``done`` = completed earlier),
    ``record_quarantined`` (the source's ``Quarantined``), ``load_error``, ``item`` (what the
    builder yielded), ``builder_error``, ``end`` (the builder finished the record)."""

    kind: str
    record_id: str
    payload: object = None
    done: bool = False
    source: str | None = None


def _events(work, done, builder, abandoned: set[str]) -> Iterator[_Event]:
    """Load and build every work item; describe what happened as ``_Event``s, in order.

    Stops building a record as soon as its id is in ``abandoned`` (the writer refused one of its
    samples). Runs on the builder thread in overlapped mode, inline in sequential mode.
    """
    for record_id, load in work:
        if record_id in done:
            yield _Event("seen", record_id, done=True)
            continue
        yield _Event("seen", record_id)
        try:
            record = load()
        except Exception as exc:
            yield _Event("load_error", record_id, exc)
            continue
        if isinstance(record, Quarantined):
            yield _Event("record_quarantined", record.id, record)
            continue
        if (record.meta or {}).get("dropped_instances"):
            yield _Event("dropped_annotations", record.id, record)
        yield from _build_events(record, builder, abandoned)


def _build_events(record: ImageRecord, builder, abandoned: set[str]) -> Iterator[_Event]:
    try:
        items = iter(builder(record))
        while record.id not in abandoned:
            try:
                item = next(items)
            except StopIteration:
                yield _Event("end", record.id, source=record.source)
                return
            yield _Event("item", record.id, item, source=record.source)
    except Exception as exc:
        yield _Event("builder_error", record.id, exc, source=record.source)


class _Outcomes:
    """Applies ``_Event``s to the writer and the counts: the only code that touches the writer."""

    def __init__(self, writer, stats: RunStats, abandoned: set[str]):
        self.writer, self.stats, self.abandoned = writer, stats, abandoned
        self._logged: set[str] = set()

    def apply(self, ev: _Event) -> None:
        stats, writer = self.stats, self.writer
        if ev.kind == "seen":
            stats.records += 1
            stats.records_done_before += ev.done
        elif ev.kind == "load_error":
            self._quarantine(Quarantined(ev.record_id, "load_error", _describe(ev.payload)))
        elif ev.kind == "record_quarantined":
            self._quarantine(ev.payload)
            writer.mark_record_done(ev.record_id)  # bad input stays bad: not retried
        elif ev.kind == "dropped_annotations":
            self._log_dropped_annotations(ev.payload)
        elif ev.record_id in self.abandoned:
            return  # what the builder produced after the writer refused one of its samples
        elif ev.kind == "item":
            self._item(ev)
        elif ev.kind == "builder_error":
            self._log_first(ev.payload)
            self._quarantine(Quarantined(ev.record_id, "builder_error", _describe(ev.payload), ev.source))
        elif ev.kind == "end":
            writer.mark_record_done(ev.record_id)

    def _item(self, ev: _Event) -> None:
        item, stats = ev.payload, self.stats
        if isinstance(item, Quarantined):
            self.writer.skip(item.reason, item.id)
            stats.skipped[item.reason] += 1
            return
        try:
            written = self.writer.write(item)
        except SampleError as exc:
            self.abandoned.add(ev.record_id)
            detail = f"sample {getattr(item, 'key', '?')}: {exc}"
            self._quarantine(Quarantined(ev.record_id, "invalid_sample", detail, ev.source))
            return
        if written:
            stats.count_sample(item)
        else:
            stats.duplicates += 1

    def _quarantine(self, q: Quarantined) -> None:
        self.writer.quarantine(q)
        self.stats.quarantined[q.reason] += 1

    def _log_dropped_annotations(self, record: ImageRecord) -> None:
        """Count, and log with their reasons, the annotations the catalog dropped from ``record``.
        The log dedupes by id, so a record retried after a crash does not log its drops twice."""
        for dropped in record.meta["dropped_instances"]:
            q = Quarantined(f"{record.id}#{dropped.get('id')}", str(dropped.get("reason")),
                            str(dropped.get("detail", "")), record.source, level="annotation")
            self.writer.quarantine(q)
            self.stats.dropped_annotations[q.reason] += 1

    def _log_first(self, exc: BaseException) -> None:
        """The first builder error of each exception type keeps its traceback in the log: a bug
        that fails every record must not end as one line per record."""
        kind = type(exc).__name__
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning("builder error (first %s of this run; later ones are only counted)", kind,
                           exc_info=(type(exc), exc, exc.__traceback__))


def _encoding_ahead(events: Iterator[_Event], encoder, pool) -> Iterator[_Event]:
    """``events`` unchanged; each sample's images start encoding on ``pool`` as it is yielded."""
    for ev in events:
        if ev.kind == "item" and isinstance(ev.payload, EditSample):
            encoder.prepare(ev.payload, pool)
        yield ev


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


MODES = ("overlapped", "sequential")


def run_builder(records, builder: Callable[[ImageRecord], Iterable[EditSample | Quarantined]], writer: RunWriter, *,
                ids: Iterable[str] | None = None, progress: bool = True, mode: str = "overlapped",
                prefetch: int = 2, load_workers: int = 2, write_ahead: int = 32, encode_workers: int = 0) -> RunStats:
    """Run ``builder`` over ``records`` and write what it yields through ``writer``.

    ``writer``: a ``ShardWriter`` or anything else with the ``RunWriter`` protocol.
    ``records``: a catalog (``.ids()`` / ``.load(id) -> ImageRecord | Quarantined``) or any
    iterable of ``ImageRecord | Quarantined``; ``ids`` restricts the run to those record ids.
    Records in ``writer.done_records`` are skipped. Exceptions from the builder or from loading a
    record are quarantined (``builder_error`` / ``load_error``) and the run goes on; exceptions from
    the writer itself (disk full...) stop the run. Shows a tqdm bar when ``progress``.

    ``mode="overlapped"`` (default): records are loaded ``prefetch`` ahead on ``load_workers``
    threads, the builder runs on a thread of its own, and up to ``write_ahead`` of its outputs wait
    for the writer, which is only called from the calling thread, in order. ``encode_workers > 0``
    encodes a ``ShardWriter``'s images ahead on that many threads as the builder yields them: for
    hosts with cores to spare; on a busy 2-core CPU it took CPU from the builder thread and lowered
    the model's busy share (``bench/model_busy.py --modes overlapped,overlapped:2``), hence off by
    default. A builder must not modify an array after yielding a sample that holds it. ``mode="sequential"``: one thing at a
    time in the calling thread. Both give the same shards, counts and markers.
    """
    from tqdm import tqdm

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    started = time.perf_counter()
    stats = RunStats()
    done = writer.done_records
    work, total = _work_items(records, ids)
    abandoned: set[str] = set()
    outcomes = _Outcomes(writer, stats, abandoned)
    desc = getattr(builder, "name", None) or getattr(builder, "__name__", "records")
    encoder = getattr(writer, "encoder", None)
    encode_ahead = mode == "overlapped" and isinstance(encoder, SampleEncoder) and int(encode_workers) > 0
    with tqdm(total=total, desc=desc, unit="rec", disable=not progress, dynamic_ncols=True) as bar, \
            ThreadPoolExecutor(max(1, int(load_workers)), thread_name_prefix="load") as pool, \
            ThreadPoolExecutor(max(1, int(encode_workers)), thread_name_prefix="encode") as encode_pool:
        if mode == "sequential":
            events = _events(work, done, builder, abandoned)
        else:
            ahead = prefetched(work, done.__contains__, pool, max(0, int(prefetch)))

            def build():
                built = _events(ahead, done, builder, abandoned)
                return _encoding_ahead(built, encoder, encode_pool) if encode_ahead else built

            if encode_ahead:
                # Everything prepared but not yet written stays cached: two images per queued sample.
                encoder.keep_at_least(2 * int(write_ahead) + 8)
            events = background(build, write_ahead, name="builder")
        try:
            for ev in events:
                outcomes.apply(ev)
                if ev.kind == "seen":
                    bar.update(1)
                    bar.set_postfix(samples=stats.samples_written, refresh=False)
        finally:
            events.close()  # overlapped: stops and joins the builder thread before the pool closes
    stats.seconds = time.perf_counter() - started
    return stats
