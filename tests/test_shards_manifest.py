"""The manifest + Parquet build: each sidecar read once, incremental when shards were only added,
and exact after a kill at any step of an incremental update."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest

from datagen.shards import ShardWriter, build_manifest, load_manifest, verify_manifest
from datagen.shards.layout import CommittedShard
from datagen.shards.tablefolder import state_path
from test_shards_support import REPO, make_sample


def write(data_dir, prefix, numbers, maxcount=3):
    with ShardWriter(data_dir, prefix, maxcount=maxcount) as writer:
        for i in numbers:
            writer.write(make_sample(i))
        writer.mark_record_done(f"{prefix}-done")
        writer.skip("ambiguous", f"{prefix}-skip")


@pytest.fixture
def sidecar_reads(monkeypatch):
    """Counter of sidecar reads by shard file name."""
    reads = Counter()
    real = CommittedShard.load_sidecar

    def counting(self):
        reads[self.tar.name] += 1
        return real(self)

    monkeypatch.setattr(CommittedShard, "load_sidecar", counting)
    return reads


def table_keys(path) -> Counter:
    return Counter(pq.read_table(path, columns=["key"]).column("key").to_pylist())


def test_incremental_build_reads_only_new_sidecars(tmp_path, sidecar_reads):
    data_dir, manifests = tmp_path / "d", tmp_path / "m"
    write(data_dir, "a", range(7))
    build_manifest(data_dir, "ds", manifests)
    assert sidecar_reads == Counter({"a-000000.tar": 1, "a-000001.tar": 1, "a-000002.tar": 1})
    parquet = data_dir / "ds.parquet"

    parts = {p.name: os.stat(p).st_ino for p in parquet.iterdir()}
    sidecar_reads.clear()
    build_manifest(data_dir, "ds", manifests)  # nothing new: the table is not rewritten
    assert sidecar_reads == Counter() and {p.name: os.stat(p).st_ino for p in parquet.iterdir()} == parts

    write(data_dir, "b", range(7, 12))
    sidecar_reads.clear()
    manifest = load_manifest(build_manifest(data_dir, "ds", manifests))
    assert sidecar_reads == Counter({"b-000000.tar": 1, "b-000001.tar": 1})
    assert set(parts) < {p.name for p in parquet.iterdir()} == set(manifest["index"]["parts"])
    assert table_keys(parquet) == Counter({make_sample(i).key: 1 for i in range(12)})
    assert manifest["nsamples"] == 12 and manifest["records_done"] == 2 and manifest["skipped"] == {"ambiguous": 2}
    assert manifest["counts"]["op"] == {"mark": 4, "remove": 4, "replace": 4}

    # The incremental result equals a build from scratch.
    incremental = pq.read_table(parquet).sort_by("key")
    state_path(data_dir, "ds").unlink()
    sidecar_reads.clear()
    scratch = load_manifest(build_manifest(data_dir, "ds", manifests))
    assert sum(sidecar_reads.values()) == 5
    assert pq.read_table(parquet).sort_by("key").equals(incremental)
    for doc in (scratch, manifest):
        del doc["created"], doc["index"]["parts"], doc["index"]["path"]
    assert scratch == manifest


def test_a_deleted_shard_forces_a_full_rebuild(tmp_path):
    data_dir, manifests = tmp_path / "d", tmp_path / "m"
    write(data_dir, "a", range(6))
    build_manifest(data_dir, "ds", manifests)
    for path in (data_dir / "a-000000.tar", data_dir / "a-000000.tar.json"):
        path.unlink()
    manifest = load_manifest(build_manifest(data_dir, "ds", manifests))
    assert manifest["nsamples"] == 3
    assert table_keys(data_dir / "ds.parquet") == Counter({make_sample(i).key: 1 for i in range(3, 6)})


# Builds the manifest and dies (as a SIGKILL would) at one step of the update.
DYING_BUILD = r"""
import os, sys
import pyarrow.parquet as pq
from datagen.shards import build_manifest, manifest
data_dir, manifests, step = sys.argv[1:4]
real_replace, real_atomic, real_write = os.replace, manifest.atomic_write_json, pq.ParquetWriter.write_table

def replace(src, dst, *a, **k):
    real_replace(src, dst, *a, **k)
    if step == "part-renamed" and str(dst).endswith(".parquet") and ".parquet/" in str(dst):
        os._exit(9)
    if step == "swap" and ".parquet.old-" in str(dst):
        os._exit(9)

def atomic(path, data):
    if step == "before-manifest":
        os._exit(9)
    return real_atomic(path, data)

def write_table(self, table, *a, **k):
    real_write(self, table, *a, **k)
    if step == "mid-part":
        os._exit(9)

os.replace, manifest.atomic_write_json, pq.ParquetWriter.write_table = replace, atomic, write_table
build_manifest(data_dir, "ds", manifests)
print("DONE")
"""


@pytest.mark.parametrize("step", ["mid-part", "part-renamed", "before-manifest", "swap"])
def test_kill_during_a_manifest_update(tmp_path, step):
    data_dir, manifests = tmp_path / "d", tmp_path / "m"
    write(data_dir, "a", range(6))
    build_manifest(data_dir, "ds", manifests)
    write(data_dir, "b", range(6, 15))
    if step == "swap":  # no state: the build rebuilds the whole table and swaps folders
        state_path(data_dir, "ds").unlink()
    died = subprocess.run([sys.executable, "-c", DYING_BUILD, str(data_dir), str(manifests), step], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert died.returncode == 9, died.stderr
    old = json.loads((manifests / "ds.json").read_text())
    assert old["nsamples"] == 6  # the kill left the previous manifest in place
    if (data_dir / "ds.parquet").is_dir():
        assert max(table_keys(data_dir / "ds.parquet").values()) == 1  # never a row twice

    write(data_dir, "c", range(15, 17))
    path = build_manifest(data_dir, "ds", manifests)
    manifest = load_manifest(path)
    assert manifest["nsamples"] == 17 and verify_manifest(path) == []
    assert table_keys(data_dir / "ds.parquet") == Counter({make_sample(i).key: 1 for i in range(17)})
    assert manifest["records_done"] == 3 and manifest["skipped"] == {"ambiguous": 3}
    assert sorted(p.name for p in (data_dir / "ds.parquet").iterdir()) == sorted(manifest["index"]["parts"])
    assert not list(data_dir.glob(".ds.parquet*"))  # what the killed build left is gone
