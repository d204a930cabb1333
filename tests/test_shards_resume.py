"""Resume, atomic commit under SIGKILL, concurrent writers, stale temporary files."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter

import pytest

from datagen.schema import Quarantined
from datagen.shards import (
    ShardWriter,
    WriterBusyError,
    build_manifest,
    committed_shards,
    load_manifest,
    read_quarantine_log,
    verify_manifest,
)
from datagen.shards.layout import PARTIAL_DIR
from test_shards_support import make_sample, record_keys, start_writer


def tar_keys(data_dir) -> Counter:
    """Keys over every committed shard, counted from the tars themselves (``tar -tf``)."""
    keys = Counter()
    for shard in committed_shards(data_dir):
        names = subprocess.run(["tar", "-tf", str(shard.tar)], check=True, capture_output=True,
                               text=True).stdout.split()
        keys.update(name.split(".")[0] for name in names if name.endswith(".json"))
    return keys


def test_reopened_writer_skips_committed_keys(tmp_path):
    with ShardWriter(tmp_path, "p", maxcount=3) as writer:
        assert [writer.write(make_sample(i)) for i in range(5)] == [True] * 5
        assert writer.write(make_sample(2)) is False  # pending in this writer
        writer.mark_record_done("r1")
        assert writer.skip("ambiguous", "r1:cat2") and not writer.skip("ambiguous", "r1:cat2")
    with ShardWriter(tmp_path, "p", maxcount=3) as writer:
        assert writer.done_records == {"r1"}
        assert [writer.write(make_sample(i)) for i in range(7)] == [False] * 5 + [True] * 2
        assert writer.duplicates == 5
        assert not writer.skip("ambiguous", "r1:cat2")  # counted by the first run already
    assert tar_keys(tmp_path) == Counter({make_sample(i).key: 1 for i in range(7)})
    # The second writer continued the sequence instead of overwriting shard 0.
    assert [s.tar.name for s in committed_shards(tmp_path)] == [f"p-00000{i}.tar" for i in range(3)]
    manifest = json.loads(build_manifest(tmp_path, "p", tmp_path / "m").read_text())
    assert manifest["skipped"] == {"ambiguous": 1} and manifest["records_done"] == 1


def test_quarantine_log_deduplicates_across_runs(tmp_path):
    for _ in range(2):
        with ShardWriter(tmp_path, "q") as writer:
            writer.quarantine(Quarantined("img7", "truncated", "broken data stream"))
            writer.quarantine(Quarantined("img8", "oversized", "100000x100000"))
            writer.write(make_sample(0))
    log = tmp_path / "q.quarantine.jsonl"
    with open(log, "ab") as fh:
        fh.write(b'{"id": "img9", "rea')  # a writer killed mid-append
    with ShardWriter(tmp_path, "q") as writer:
        assert writer.quarantine(Quarantined("img9", "undecodable"))
    assert [e["id"] for e in read_quarantine_log(log)] == ["img7", "img8", "img9"]
    manifest = json.loads(build_manifest(tmp_path, "q", tmp_path / "m").read_text())
    assert manifest["quarantined"] == {"oversized": 1, "truncated": 1, "undecodable": 1}


def test_same_prefix_twice_is_refused(tmp_path):
    with ShardWriter(tmp_path, "p"):
        with pytest.raises(WriterBusyError, match="own prefix"):
            ShardWriter(tmp_path, "p")
    ShardWriter(tmp_path, "p").close()  # free again once the first one closed


def test_overlapping_writers_never_commit_a_key_twice(tmp_path):
    a = ShardWriter(tmp_path, "a", maxcount=100)
    b = ShardWriter(tmp_path, "b", maxcount=100)
    for i in range(6):
        assert a.write(make_sample(i))
    for i in range(3, 9):
        assert b.write(make_sample(i))  # b cannot know yet: a has not committed
    a.close()
    b.close()
    assert b.dropped_at_commit == 3
    assert tar_keys(tmp_path) == Counter({make_sample(i).key: 1 for i in range(9)})
    manifest = build_manifest(tmp_path, "ab", tmp_path / "m")
    assert verify_manifest(manifest) == []
    assert load_manifest(manifest)["nsamples"] == 9


def test_stale_files_of_dead_writers_are_removed(tmp_path):
    partial = tmp_path / PARTIAL_DIR
    partial.mkdir()
    (partial / "dead.123-abc.tar.part").write_bytes(b"half a shard")
    (tmp_path / "dead-000004.tar").write_bytes(b"renamed, but its sidecar never came")
    live = ShardWriter(tmp_path, "live")
    live.write(make_sample(0))
    live_temp = list(partial.glob("live.*.part"))
    assert len(live_temp) == 1
    with ShardWriter(tmp_path, "other") as other:
        other.write(make_sample(1))
    assert not (partial / "dead.123-abc.tar.part").exists()
    assert not (tmp_path / "dead-000004.tar").exists()
    assert live_temp[0].exists()  # its writer is alive: not touched
    live.close()
    assert tar_keys(tmp_path) == Counter({make_sample(0).key: 1, make_sample(1).key: 1})


def _wait_for(proc: subprocess.Popen, word: str) -> None:
    line = proc.stdout.readline()
    assert line.strip() == word, f"child said {line!r}; stderr: {proc.stderr.read()}"


def test_sigkill_mid_shard_then_rerun_is_exactly_once(tmp_path):
    data_dir = tmp_path / "data"
    # 10 records x 3 samples, shards of 4: after 10 samples, shards 0-1 are committed and the
    # third holds 2 samples, one of them from record 3 whose third sample is not written yet.
    child = start_writer(data_dir, "p", 0, 10, ready_after=10, hang=True)
    _wait_for(child, "READY")
    deadline = time.monotonic() + 10
    while len(committed_shards(data_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # commits run on the writer's helper thread: let shard 1's finish
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert list((data_dir / PARTIAL_DIR).glob("p.*.tar.part")), "the kill should leave a partial shard"
    manifest = build_manifest(data_dir, "p", tmp_path / "m")
    assert [s["nsamples"] for s in load_manifest(manifest)["shardlist"]] == [4, 4]
    assert verify_manifest(manifest) == []

    # A second kill at an arbitrary moment of a continuous run, then a run to completion.
    child = start_writer(data_dir, "p", 0, 40, ready_after=1, delay=0.003)
    _wait_for(child, "READY")
    time.sleep(random.uniform(0.05, 0.2))
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate()
    assert child.returncode == -signal.SIGKILL and "DONE" not in out
    child = start_writer(data_dir, "p", 0, 40)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and "DONE" in out, err

    assert tar_keys(data_dir) == Counter({k: 1 for k in record_keys(0, 40)})
    assert not list((data_dir / PARTIAL_DIR).iterdir())
    manifest = build_manifest(data_dir, "p", tmp_path / "m")
    assert verify_manifest(manifest) == []
    assert load_manifest(manifest)["nsamples"] == 120
    assert load_manifest(manifest)["records_done"] == 40


def test_concurrent_writer_processes_share_a_folder(tmp_path):
    # Records 0-11 and 8-19: four records are written by both processes at the same time.
    children = [start_writer(tmp_path, "a", 0, 12, delay=0.005), start_writer(tmp_path, "b", 8, 20, delay=0.005)]
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0 and "DONE" in out, err
    assert tar_keys(tmp_path) == Counter({k: 1 for k in record_keys(0, 20)})
    assert {s.prefix for s in committed_shards(tmp_path)} == {"a", "b"}
    manifest = build_manifest(tmp_path, "ab", tmp_path / "m")
    assert verify_manifest(manifest) == []
    assert os.path.exists(tmp_path / "ab.parquet")
