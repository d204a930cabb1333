"""run_builder: counts, quarantines, skips, builder failures, resume by completion markers."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np

from datagen.runner import RunStats, run_builder
from datagen.schema import ImageRecord, Quarantined
from datagen.shards import ShardWriter, build_manifest, read_quarantine_log, read_samples
from test_shards_support import make_sample


class ListCatalog:
    """The catalog interface (ids / load) over a dict; counts loads to prove done records are not loaded."""

    name = "list"

    def __init__(self, records: dict):
        self.records = records
        self.loads: list[str] = []

    def ids(self) -> list[str]:
        return list(self.records)

    def load(self, record_id: str):
        self.loads.append(record_id)
        record = self.records[record_id]
        if isinstance(record, Exception):
            raise record
        return record


def record(record_id: str) -> ImageRecord:
    return ImageRecord(id=record_id, image=np.zeros((24, 32, 3), np.uint8), instances=[], source="test")


class TwoSampleBuilder:
    """Two samples per record; misbehaves on purpose for records named after a failure."""

    name = "two-samples"

    def __init__(self):
        self.calls = 0

    def settings(self) -> dict:
        return {}

    def __call__(self, rec: ImageRecord):
        self.calls += 1
        n = int(rec.id.rsplit("-", 1)[1])
        yield make_sample(2 * n, record=rec.id)
        if rec.id.startswith("boom"):
            raise RuntimeError("CUDA out of memory (pretend)")
        if rec.id.startswith("ambiguous"):
            yield Quarantined(f"{rec.id}:inst1", "ambiguous", "two identical cats")
            return
        second = make_sample(2 * n + 1, record=rec.id)
        if rec.id.startswith("invalid"):
            second.mask = np.zeros_like(second.mask)  # empty mask: a contract violation
        yield second


def catalog() -> ListCatalog:
    return ListCatalog({
        "ok-0": record("ok-0"),
        "ok-1": record("ok-1"),
        "bad-2": Quarantined("bad-2", "truncated", "image file is truncated"),
        "boom-3": record("boom-3"),
        "ambiguous-4": record("ambiguous-4"),
        "invalid-5": record("invalid-5"),
        "gone-6": FileNotFoundError("no such file"),
        "ok-7": record("ok-7"),
    })


def test_counts_quarantines_and_skips(tmp_path):
    cat, builder = catalog(), TwoSampleBuilder()
    with ShardWriter(tmp_path, "run", maxcount=3) as writer:
        stats = run_builder(cat, builder, writer, progress=False)
    assert stats.records == 8 and stats.records_done_before == 0
    # ok-0, ok-1, ok-7: 2 each; boom-3, ambiguous-4, invalid-5: the first sample before trouble.
    assert stats.samples_written == 9 and stats.duplicates == 0
    written = [make_sample(i) for i in (0, 1, 2, 3, 6, 8, 10, 14, 15)]
    assert stats.by_op == Counter(s.op for s in written) and len(stats.by_op) == 3
    assert stats.by_attribute == Counter(s.target["attribute"] for s in written)
    assert stats.quarantined == {"truncated": 1, "builder_error": 1, "invalid_sample": 1, "load_error": 1}
    assert stats.skipped == {"ambiguous": 1}
    log = {e["id"]: e for e in read_quarantine_log(tmp_path / "run.quarantine.jsonl")}
    assert log["boom-3"]["detail"] == "RuntimeError: CUDA out of memory (pretend)"
    assert "mask is empty" in log["invalid-5"]["detail"]
    assert log["gone-6"]["reason"] == "load_error"
    assert len(list(read_samples(build_manifest(tmp_path, "run", tmp_path / "m")))) == 9
    assert writer.done_records == {"ok-0", "ok-1", "bad-2", "ambiguous-4", "ok-7"}


def test_rerun_skips_done_records_and_retries_failures(tmp_path):
    with ShardWriter(tmp_path, "run") as writer:
        first = run_builder(catalog(), TwoSampleBuilder(), writer, progress=False)
    cat, builder = catalog(), TwoSampleBuilder()
    with ShardWriter(tmp_path, "run") as writer:
        second = run_builder(cat, builder, writer, progress=False)
    # Done records are not even loaded; failed ones are retried and fail the same way.
    assert cat.loads == ["boom-3", "invalid-5", "gone-6"]
    assert second.records_done_before == 5 and builder.calls == 2
    assert second.samples_written == 0 and second.duplicates == 2
    total = first + second
    assert total.samples_written == 9 and total.records == 16
    assert total.quarantined["builder_error"] == 2
    manifest = json.loads(build_manifest(tmp_path, "run", tmp_path / "m").read_text())
    # The quarantine log has each record once, however many runs saw it.
    assert manifest["quarantined"] == {"builder_error": 1, "invalid_sample": 1, "load_error": 1, "truncated": 1}
    assert manifest["nsamples"] == 9 and manifest["skipped"] == {"ambiguous": 1}


def test_plain_iterable_ids_filter_and_progress(tmp_path, capsys):
    records = [record("ok-0"), Quarantined("bad-1", "oversized", "huge"), record("ok-2")]
    with ShardWriter(tmp_path, "it") as writer:
        stats = run_builder(iter(records), TwoSampleBuilder(), writer, ids=["ok-0", "bad-1"], progress=True)
    assert stats.records == 2 and stats.samples_written == 2 and stats.quarantined == {"oversized": 1}
    assert "two-samples" in capsys.readouterr().err


def test_run_stats_add_and_to_dict():
    a = RunStats(records=2, samples_written=3, by_op={"mark": 3}, quarantined={"truncated": 1}, seconds=1.5)
    b = RunStats(records=1, samples_written=1, by_op={"mark": 1, "add": 0}, skipped={"ambiguous": 2})
    total = a + b
    assert total.records == 3 and total.samples_written == 4 and total.seconds == 1.5
    d = total.to_dict()
    assert d["by_op"] == {"mark": 4} and d["skipped"] == {"ambiguous": 2} and d["quarantined"] == {"truncated": 1}
    json.dumps(d)
    assert sum([a, b], RunStats()).records == 3
