"""run_builder: counts, quarantines, skips, builder failures, resume by completion markers."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

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


# ----- overlapped mode: the same outcomes as sequential, and kill-safe with its queues full -----

def _outcome(data_dir, stats: RunStats) -> tuple:
    from test_shards_resume import tar_keys

    counts = {k: v for k, v in stats.to_dict().items() if k != "seconds"}
    log = sorted((e["id"], e["reason"], e["detail"]) for e in read_quarantine_log(data_dir / "run.quarantine.jsonl"))
    return tar_keys(data_dir), counts, log


def test_overlapped_and_sequential_modes_give_the_same_shards_counts_and_markers(tmp_path):
    outcomes, encoded = [], []
    for name, mode, encode_workers in (("seq", "sequential", 0), ("ovl", "overlapped", 0),
                                       ("ahead", "overlapped", 2)):
        data_dir = tmp_path / name
        with ShardWriter(data_dir, "run", maxcount=3) as writer:
            stats = run_builder(catalog(), TwoSampleBuilder(), writer, progress=False, mode=mode,
                                prefetch=3, write_ahead=2, encode_workers=encode_workers)
        outcomes.append((*_outcome(data_dir, stats), writer.done_records))
        encoded.append(writer.encoder.encoded)
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert sum(outcomes[0][0].values()) == 9
    # Two distinct images per written sample; encoding ahead also encoded the invalid sample's.
    assert encoded == [18, 18, 20]


def test_writer_failure_stops_the_run_and_its_threads(tmp_path):
    import threading

    class FullDisk(ShardWriter):
        def write(self, sample):
            if self.written == 3:
                raise OSError(28, "No space left on device")
            return super().write(sample)

    records = {f"ok-{i}": record(f"ok-{i}") for i in range(20)}
    with pytest.raises(OSError, match="No space left"):
        with FullDisk(tmp_path, "run") as writer:
            run_builder(ListCatalog(records), TwoSampleBuilder(), writer, progress=False, write_ahead=2)
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("builder", "load"))]


def test_first_builder_error_of_each_type_is_logged_with_its_traceback(tmp_path, caplog):
    records = {f"boom-{i}": record(f"boom-{i}") for i in range(3)}
    with ShardWriter(tmp_path, "run") as writer, caplog.at_level("WARNING", logger="datagen.runner"):
        stats = run_builder(ListCatalog(records), TwoSampleBuilder(), writer, progress=False)
    assert stats.quarantined == {"builder_error": 3}
    logged = [r for r in caplog.records if r.name == "datagen.runner"]
    assert len(logged) == 1 and logged[0].exc_info[0] is RuntimeError
    assert "CUDA out of memory (pretend)" in caplog.text and "Traceback" in caplog.text


def test_bad_mode_is_a_one_sentence_error(tmp_path):
    with ShardWriter(tmp_path, "run") as writer, pytest.raises(ValueError, match="mode must be one of"):
        run_builder([], TwoSampleBuilder(), writer, mode="parallel")


class IdCatalog:
    """Records named "0".."N-1", tiny images (the kill test's catalog)."""

    name = "ids"

    def __init__(self, n: int):
        self.n = n

    def ids(self) -> list[str]:
        return [str(r) for r in range(self.n)]

    def load(self, record_id: str) -> ImageRecord:
        return record(record_id)


class ThreeSampleBuilder:
    """Samples 3r, 3r+1, 3r+2 for record "r" (``record_keys`` of the shard tests); remembers starts."""

    name = "three-samples"

    def __init__(self):
        self.started: list[str] = []

    def __call__(self, rec: ImageRecord):
        self.started.append(rec.id)
        for j in range(3):
            yield make_sample(3 * int(rec.id) + j, record=rec.id)


# The child: 30 records x 3 samples through the overlapped runner; the writer stalls for good after
# STALL_AFTER samples (shards of 4, so two are committed), the builder runs on until every queue
# ahead of the writer is full, and the child reports FULL with how many records the builder started.
KILL_CHILD = r"""
import sys, threading, time
sys.path.insert(0, {tests!r})
from test_runner import IdCatalog, ThreeSampleBuilder
from datagen.runner import run_builder
from datagen.shards import ShardWriter

data_dir, stall_after = sys.argv[1], int(sys.argv[2])
builder = ThreeSampleBuilder()

def report_when_full():
    seen = -1
    while seen != len(builder.started):
        seen = len(builder.started)
        time.sleep(0.5)
    print("FULL", seen, flush=True)

class StallingWriter(ShardWriter):
    def write(self, sample):
        written = super().write(sample)
        if self.written == stall_after:
            threading.Thread(target=report_when_full, daemon=True).start()
            time.sleep(120)
        return written

with StallingWriter(data_dir, "run", maxcount=4) as writer:
    run_builder(IdCatalog(30), builder, writer, progress=False, prefetch=2, write_ahead=6)
print("DONE", flush=True)
"""


def test_sigkill_with_full_queues_then_rerun_is_exactly_once(tmp_path):
    import signal
    import subprocess
    import sys

    from test_shards_resume import tar_keys
    from test_shards_support import REPO, TESTS_DIR, record_keys

    data_dir, stall_after = tmp_path / "data", 10
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD.format(tests=str(TESTS_DIR)), str(data_dir),
                              str(stall_after)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().split()
        assert line[:1] == ["FULL"], child.stderr.read()
        # 10 samples written = 3 records and a third of the 4th; a queue of 6 events (a record
        # is 5: seen, 3 samples, end) and 2 prefetched records put the builder well beyond.
        assert int(line[1]) >= 5, f"the builder only started {line[1]} records: the queues were not full"
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    killed = tar_keys(data_dir)
    assert sum(killed.values()) == 8 and set(killed.values()) == {1}  # shards 0 and 1 committed

    with ShardWriter(data_dir, "run", maxcount=4) as writer:
        stats = run_builder(IdCatalog(30), ThreeSampleBuilder(), writer, progress=False, prefetch=2, write_ahead=6)
    assert tar_keys(data_dir) == Counter({k: 1 for k in record_keys(0, 30)})
    # Records 0 and 1 were marked with shard 1; record 2's samples straddle the kill: rebuilt,
    # its committed sample refused as a duplicate.
    assert stats.records_done_before == 2 and stats.duplicates == 2 and stats.samples_written == 82
    assert writer.done_records == {str(r) for r in range(30)}
