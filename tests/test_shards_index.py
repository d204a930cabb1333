"""The committed-key index: O(1) writer open, kills at every step of a commit, shared by processes,
and hand edits of the data folder noticed."""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from datagen.shards import ShardError, ShardWriter, build_manifest, committed_shards, load_manifest, verify_manifest
from datagen.shards.keyindex import describe
from datagen.shards.layout import CommittedShard, PARTIAL_DIR
from test_shards_resume import _wait_for, tar_keys
from test_shards_support import REPO, TESTS_DIR, make_sample, record_keys, start_writer


def test_writer_opens_without_reading_a_sidecar(tmp_path, monkeypatch):
    with ShardWriter(tmp_path, "p", maxcount=2) as writer:
        for i in range(5):
            writer.write(make_sample(i))
        writer.mark_record_done("r0")

    def no_reading(self):
        raise AssertionError(f"read {self.sidecar}")

    monkeypatch.setattr(CommittedShard, "load_sidecar", no_reading)
    with ShardWriter(tmp_path, "q", maxcount=2) as writer:
        assert "r0" in writer.done_records and "r1" not in writer.done_records
        assert writer.done_records | {"r1"} == {"r0", "r1"} and len(writer.done_records) == 1
        assert [writer.write(make_sample(i)) for i in range(7)] == [False] * 5 + [True] * 2
    assert describe(tmp_path) == {"shards": 4, "keys": 7, "records_done": 1}


# A writer that dies (os._exit, as a SIGKILL would) at one step of its second commit.
DYING_CHILD = r"""
import os, sys
sys.path.insert(0, {tests!r})
from test_shards_support import make_sample
from datagen.shards import ShardWriter
from datagen.shards import commit, keyindex
data_dir, step = sys.argv[1:3]
commits = [0]
real_replace, real_begin, real_record, real_mtime = os.replace, keyindex.KeyIndex.begin_commit, \
    keyindex.KeyIndex.record_commit, keyindex.KeyIndex._set_mtime

def die_if(name):
    if commits[0] == 1 and step == name:
        os._exit(9)

def begin(self, name):
    real_begin(self, name); die_if("intent")

def replace(src, dst, *a, **k):
    real_replace(src, dst, *a, **k)
    die_if("sidecar-renamed" if str(dst).endswith(".json") else "tar-renamed")

def record(self, *a, **k):
    die_if("before-index"); real_record(self, *a, **k); commits[0] += 1

def mtime(self, value):
    real_mtime(self, value); die_if("inside-index")  # rows inserted, transaction not committed

keyindex.KeyIndex.begin_commit, keyindex.KeyIndex.record_commit = begin, record
keyindex.KeyIndex._set_mtime, os.replace = mtime, replace
with ShardWriter(data_dir, "p", maxcount=4) as w:
    for r in range(7):
        if str(r) in w.done_records:
            continue
        for j in range(3):
            w.write(make_sample(3 * r + j, record=str(r)))
        w.mark_record_done(str(r))
print("DONE", flush=True)
"""


@pytest.mark.parametrize("step", ["intent", "tar-renamed", "sidecar-renamed", "before-index", "inside-index"])
def test_kill_at_each_step_of_a_commit(tmp_path, step):
    code = DYING_CHILD.format(tests=str(TESTS_DIR))
    died = subprocess.run([sys.executable, "-c", code, str(tmp_path), step], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert died.returncode == 9, died.stderr
    committed_before = {s.tar.name for s in committed_shards(tmp_path)}
    assert committed_before >= {"p-000000.tar"}
    assert ("p-000001.tar" in committed_before) == (step in ("sidecar-renamed", "before-index", "inside-index"))

    rerun = start_writer(tmp_path, "p", 0, 7)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0 and "DONE" in out, err
    assert tar_keys(tmp_path) == Counter({k: 1 for k in record_keys(0, 7)})
    assert describe(tmp_path) == {"shards": len(committed_shards(tmp_path)), "keys": 21, "records_done": 7}
    assert not list((tmp_path / PARTIAL_DIR).iterdir())
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == sorted(s.tar.name for s in committed_shards(tmp_path))
    manifest = build_manifest(tmp_path, "p", tmp_path / "m")
    assert verify_manifest(manifest) == [] and load_manifest(manifest)["nsamples"] == 21


def test_two_processes_share_the_index_and_one_is_killed(tmp_path):
    # Records 0-11 and 8-19 written at once; writer a is killed at a random moment, then rerun.
    a = start_writer(tmp_path, "a", 0, 12, ready_after=3, delay=0.004)
    b = start_writer(tmp_path, "b", 8, 20, delay=0.004)
    _wait_for(a, "READY")
    time.sleep(random.uniform(0.02, 0.15))
    a.send_signal(signal.SIGKILL)
    a.wait()
    out, err = b.communicate(timeout=60)
    assert b.returncode == 0 and "DONE" in out, err
    a = start_writer(tmp_path, "a", 0, 12)
    out, err = a.communicate(timeout=60)
    assert a.returncode == 0 and "DONE" in out, err
    assert tar_keys(tmp_path) == Counter({k: 1 for k in record_keys(0, 20)})
    assert describe(tmp_path)["keys"] == 60
    assert describe(tmp_path)["records_done"] == 20


def test_hand_edits_of_the_folder_are_noticed(tmp_path):
    with ShardWriter(tmp_path / "d", "p", maxcount=2) as writer:
        for i in range(4):
            writer.write(make_sample(i))
    first = tmp_path / "d" / "p-000000.tar"
    # A shard deleted by hand: its keys may be written again.
    for path in (first, first.with_name(first.name + ".json")):
        shutil.move(path, tmp_path / path.name)
    with ShardWriter(tmp_path / "d", "p", maxcount=2) as writer:
        assert [writer.write(make_sample(i)) for i in range(4)] == [True, True, False, False]
    assert describe(tmp_path / "d")["keys"] == 4
    # A shard copied in from elsewhere holding keys the folder already has: refused, named.
    for name in (first.name, first.name + ".json"):
        shutil.copy(tmp_path / name, tmp_path / "d" / name.replace("p-000000", "x-000000"))
    with pytest.raises(ShardError, match=r"is in both p-00000\d.tar and x-000000.tar"):
        ShardWriter(tmp_path / "d", "p")


_OPEN_AT_GO = """
import os, sys, time
from datagen.shards.keyindex import open_index
folder, go = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
open_index(folder).close()
"""


def test_writers_starting_together_on_a_new_folder_all_open_the_index(tmp_path):
    # Switching a new index to WAL needs the file to itself, and SQLite then answers "database is
    # locked" at once instead of waiting: 9 of 120 openers failed so before the retry.
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for round_ in range(6):
        folder, go = tmp_path / f"d{round_}", tmp_path / f"go{round_}"
        folder.mkdir()
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT_GO, str(folder), str(go)], env=env,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]
        time.sleep(1.0)  # every child imported and waiting
        go.touch()
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 8, "".join(errors)[-2000:]
