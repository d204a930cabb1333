"""Where reasoning candidates go: the human review queue (``datagen.review``), never shards.

* ``queue_url(spec)``: ``postgresql://...`` and ``sqlite:///...`` URLs and ``*.db`` paths as they
  are; any other path is a queue *folder* holding ``queue.db`` (and its ``blobs/``).
* ``enqueue(items, store) -> EnqueueStats``: put a builder's output in the queue; the candidates
  of one case (``provenance["case_id"]``) are added in one transaction, so a reviewer never sees
  half a case; skips are counted by reason.
* ``QueueWriter(store)``: the same, behind the writer protocol of ``datagen.runner.run_builder``
  (``write`` / ``skip`` / ``quarantine`` / ``mark_record_done`` / ``done_records``), so the CLI
  runs the one shared loop; ``fill_queue(catalog, builder, store)`` is that loop plus a summary.
* ``review_hint(db)``: how to open the filled queue.

When the queue holds a calibrated rule (``python -m datagen calibrate``), every new candidate is
routed as it is added (``datagen.review.routing``): auto-approved, auto-rejected, audited or left
to people.

Exactly once: the store ignores a key it already holds (``add`` returns False), and keys are
derived from inputs and settings, so rerunning a command adds only what is new.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from datagen.review.routing import Router
from datagen.schema import EditSample, Quarantined

QUEUE_FILE = "queue.db"
_DB_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def queue_url(spec: str | Path) -> str:
    """The review store URL for a ``--queue`` value (see the module docstring)."""
    text = str(spec)
    if text.startswith(("postgresql://", "postgres://", "sqlite:///")):
        return text
    path = Path(text)
    return str(path if path.suffix.lower() in _DB_SUFFIXES else path / QUEUE_FILE)


def open_queue(spec: str | Path, **options):
    """``datagen.review.open_store`` on ``queue_url(spec)``; ``options`` go to ``open_store``."""
    from datagen.review import open_store

    return open_store(queue_url(spec), **options)


@dataclass
class EnqueueStats:
    """What one ``enqueue`` call did: candidates ``added`` (new keys), ``already`` queued, the
    distinct ``cases`` seen, skips by reason."""

    added: int = 0
    already: int = 0
    cases: set = field(default_factory=set)
    skipped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"added": self.added, "already": self.already, "cases": len(self.cases),
                "skipped": dict(sorted(self.skipped.items()))}


def case_of(sample: EditSample) -> str:
    return str(sample.provenance.get("case_id") or sample.key)


def enqueue(items: Iterable[EditSample | Quarantined], store, stats: EnqueueStats | None = None) -> EnqueueStats:
    """Add every ``EditSample`` in ``items`` to ``store`` (a ``ReviewStore``), a case at a time;
    count every ``Quarantined`` by reason. Returns ``stats`` (new or the one passed in)."""
    stats = stats if stats is not None else EnqueueStats()
    batch: list[EditSample] = []

    router = Router(store)

    def flush() -> None:
        if batch:
            added = store.add_many(batch, case_id=case_of(batch[0]))
            router.route_keys(s.key for s in batch)  # only new, unrouted items are touched
            stats.added += added
            stats.already += len(batch) - added
            batch.clear()

    for item in items:
        if isinstance(item, Quarantined):
            stats.skipped[item.reason] += 1
            continue
        if batch and case_of(item) != case_of(batch[0]):
            flush()
        stats.cases.add(case_of(item))
        batch.append(item)
    flush()
    return stats


class QueueWriter:
    """``run_builder``'s writer protocol over a review store.

    ``done_records`` is always empty: the queue does not track source records, so a rerun
    rebuilds every record and the store drops the keys it already holds (counted as duplicates).
    Skips and quarantines are kept in memory (``skips``, ``quarantined``) for the caller's report;
    quarantines also go to ``quarantine_log`` (a ``QuarantineLog``, closed with the writer) when
    given, so each bad record can be found with its reason as in the shard-writing jobs.
    """

    def __init__(self, store, *, quarantine_log=None):
        self.store = store
        self.quarantine_log = quarantine_log
        self.cases: set[str] = set()
        self.skips: list[tuple[str, str]] = []
        self.quarantined: list[Quarantined] = []
        self.records_done: set[str] = set()
        self.router = Router(store)

    @property
    def done_records(self) -> frozenset[str]:
        return frozenset()

    def write(self, sample: EditSample) -> bool:
        self.cases.add(case_of(sample))
        added = self.store.add(sample, case_id=case_of(sample))
        if added:
            self.router.route_keys([sample.key])
        return added

    def skip(self, reason: str, item_id: str) -> bool:
        self.skips.append((str(reason), str(item_id)))
        return True

    def quarantine(self, q: Quarantined) -> bool:
        self.quarantined.append(q)
        if self.quarantine_log is not None:
            self.quarantine_log.append(q)
        return True

    def mark_record_done(self, record_id: str) -> None:
        self.records_done.add(str(record_id))

    def close(self) -> None:
        """Every ``write`` is committed by the store before it returns; only the log is closed."""
        if self.quarantine_log is not None:
            self.quarantine_log.close()

    def __enter__(self) -> "QueueWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fill_queue(catalog, builder, store, *, ids: Iterable[str] | None = None, progress: bool = False,
               quarantine_log=None) -> dict:
    """Run ``builder`` over ``catalog`` (``ids``: a subset, stable order) through
    ``datagen.runner.run_builder`` into ``store`` (bad records also to ``quarantine_log``, a
    ``QuarantineLog`` path or None); return a JSON-able summary: records, candidates
    added, already queued, cases, skips and quarantines by reason, seconds."""
    from datagen.runner import run_builder
    from datagen.shards.quarantine import QuarantineLog

    log = QuarantineLog(quarantine_log) if quarantine_log is not None else None
    with QueueWriter(store, quarantine_log=log) as writer:
        stats = run_builder(catalog, builder, writer, ids=ids, progress=progress)
    return {
        "records": stats.records, "added": stats.samples_written, "already_queued": stats.duplicates,
        "cases": len(writer.cases), "by_op": dict(sorted(stats.by_op.items())),
        "skipped": dict(sorted(stats.skipped.items())), "quarantined": dict(sorted(stats.quarantined.items())),
        "dropped_annotations": dict(sorted(stats.dropped_annotations.items())),
        "seconds": round(stats.seconds, 2), "routed": dict(sorted(writer.router.counts.items())),
    }


def review_hint(db: str) -> str:
    """The commands that open a filled queue to reviewers and publish what they approve."""
    return (f"review the candidates:\n"
            f"  python -m datagen review add-reviewer NAME --db {db}    # prints NAME's sign-in token\n"
            f"  python -m datagen review serve --db {db}                # then open http://127.0.0.1:8765/\n"
            f"publish the approved ones:\n"
            f"  python -m datagen publish-reviewed --db {db} --out data/reasoning --name reasoning")
