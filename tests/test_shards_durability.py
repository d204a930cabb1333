"""The order of durable operations in a commit, and shard rolling within ``maxsize``.

A kill test cannot see a tar renamed before it is fsynced (the page cache survives the kill), so
these tests record the calls themselves: every ``os.fsync`` (with the file it syncs), every
``os.replace`` and the key index's two commit steps, in order.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from datagen.shards import ShardWriter
from datagen.shards.keyindex import KeyIndex
from datagen.shards.tario import archive_size, end_of_archive, member_span
from test_shards_support import make_sample


@pytest.fixture
def durable_calls(monkeypatch):
    """A list that fills with ``("fsync", path)``, ``("replace", src, dst)``, ``("intent", name)``
    and ``("indexed", name)`` events, in the order the writer makes them."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    real_begin, real_record = KeyIndex.begin_commit, KeyIndex.record_commit

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", str(src), str(dst)))
        return real_replace(src, dst, *args, **kwargs)

    def begin(self, name):
        events.append(("intent", name))
        return real_begin(self, name)

    def record(self, name, *args, **kwargs):
        events.append(("indexed", name))
        return real_record(self, name, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(KeyIndex, "begin_commit", begin)
    monkeypatch.setattr(KeyIndex, "record_commit", record)
    return events


def _position(events, predicate, what):
    hits = [i for i, event in enumerate(events) if predicate(event)]
    assert hits, f"no {what} among {events}"
    return hits[0]


def test_commit_is_durable_in_order(tmp_path, durable_calls):
    data_dir = tmp_path / "data"
    with ShardWriter(data_dir, "p", maxcount=2) as writer:
        for i in range(4):
            writer.write(make_sample(i))
    assert len(writer.shards) == 2
    events = durable_calls
    for final in writer.shards:
        tar, sidecar = str(final), f"{final}.json"
        rename_tar = _position(events, lambda e: e[0] == "replace" and e[2] == tar, f"rename to {tar}")
        temp_tar = events[rename_tar][1]
        rename_sidecar = _position(events, lambda e: e[0] == "replace" and e[2] == sidecar, "sidecar rename")
        temp_sidecar = events[rename_sidecar][1]
        tar_synced = _position(events, lambda e: e == ("fsync", temp_tar), f"fsync of {temp_tar}")
        sidecar_synced = _position(events, lambda e: e == ("fsync", temp_sidecar), "fsync of the sidecar")
        folder_synced = max(i for i, e in enumerate(events) if e == ("fsync", str(data_dir)))
        intent = _position(events, lambda e: e == ("intent", final.name), "index intent")
        indexed = _position(events, lambda e: e == ("indexed", final.name), "index record")
        assert tar_synced < rename_tar, "the tar must be on disk before it gets its final name"
        assert sidecar_synced < rename_sidecar, "the sidecar must be on disk before it is renamed"
        assert intent < rename_tar, "the index must know a commit is under way before any rename"
        assert rename_tar < rename_sidecar, "the sidecar is the commit point: the tar goes first"
        first_folder_sync_after = min(i for i, e in enumerate(events)
                                      if e == ("fsync", str(data_dir)) and i > rename_sidecar)
        assert first_folder_sync_after <= folder_synced
        assert rename_sidecar < first_folder_sync_after < indexed, \
            "the renames must be durable before the index records the shard"


def test_fsync_false_makes_no_fsync(tmp_path, durable_calls):
    with ShardWriter(tmp_path, "p", maxcount=2, fsync=False) as writer:
        for i in range(3):
            writer.write(make_sample(i))
    assert not [e for e in durable_calls if e[0] == "fsync"]
    assert [e[0] for e in durable_calls if e[0] != "fsync"].count("replace") == 4


@pytest.mark.parametrize("maxsize", [25_000, 41_000, 52_000])
def test_rolled_shards_stay_within_maxsize(tmp_path, maxsize):
    with ShardWriter(tmp_path, "s", maxcount=1000, maxsize=maxsize) as writer:
        for i in range(12):
            writer.write(make_sample(i))
    sidecars = [json.loads(Path(f"{p}.json").read_text()) for p in writer.shards]
    assert sum(s["nsamples"] for s in sidecars) == 12
    assert len(writer.shards) >= 2
    for path, sidecar in zip(writer.shards, sidecars):
        size = os.path.getsize(path)
        assert size == sidecar["filesize"]
        # Only a shard of one sample may pass maxsize (that sample alone does not fit).
        assert sidecar["nsamples"] == 1 or size <= maxsize, \
            f"{path.name} holds {sidecar['nsamples']} samples in {size} > maxsize {maxsize} bytes"
    assert any(s["nsamples"] > 1 for s in sidecars)


def test_a_sample_larger_than_maxsize_gets_a_shard_of_its_own(tmp_path):
    big = make_sample(0, hw=(64, 64))
    with ShardWriter(tmp_path, "b", maxsize=2_000) as writer:
        writer.write(big)
        writer.write(make_sample(1))
    assert [json.loads(Path(f"{p}.json").read_text())["nsamples"] for p in writer.shards] == [1, 1]


def test_archive_size_includes_the_padded_end():
    span = member_span(1000)
    assert span == 512 + 1024
    assert archive_size(span) == len(end_of_archive(span)) + span == 10240
    assert archive_size(10240) == 20480
