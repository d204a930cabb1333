"""Shards and manifests read back through our reader, webdataset, wids and plain tar."""
from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset
import wids

from datagen.imageio import decode_image, decode_mask, encode_image
from datagen.schema import SampleError
from datagen.shards import (
    ShardWriter,
    build_manifest,
    decode_sample,
    load_manifest,
    read_samples,
    verify_manifest,
    wids_dataset,
)
from datagen.shards.tario import member_header
from test_shards_support import ATTRIBUTES, make_sample

N = 11


@pytest.fixture
def dataset(tmp_path):
    """11 samples in shards of 4 under tmp/data/demo, manifest in tmp/manifests."""
    data_dir = tmp_path / "data" / "demo"
    samples = [make_sample(i) for i in range(N)]
    with ShardWriter(data_dir, "demo", maxcount=4) as writer:
        for sample in samples:
            assert writer.write(sample)
    manifest = build_manifest(data_dir, "demo", tmp_path / "manifests", extra={"backends": {"masker": "annotation"}})
    return samples, data_dir, manifest


def assert_same(a, b):
    assert a.key == b.key and a.instruction == b.instruction and a.op == b.op
    assert a.target == b.target and a.quality == b.quality and a.paraphrases == b.paraphrases
    np.testing.assert_array_equal(a.src, b.src)
    np.testing.assert_array_equal(a.tgt, b.tgt)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_manifest_contents(dataset):
    samples, data_dir, manifest_path = dataset
    manifest = json.loads(manifest_path.read_text())
    assert manifest["wids_version"] == 1 and manifest["name"] == "demo"
    assert [s["url"] for s in manifest["shardlist"]] == [f"../data/demo/demo-00000{i}.tar" for i in range(3)]
    assert [s["nsamples"] for s in manifest["shardlist"]] == [4, 4, 3]
    for shard in manifest["shardlist"]:
        assert shard["filesize"] == os.path.getsize(manifest_path.parent / shard["url"])
        assert len(shard["sha256"]) == 64
    assert manifest["counts"]["op"] == {"mark": 4, "remove": 4, "replace": 3}
    assert manifest["counts"]["attribute"] == {a: n for a, n in zip(ATTRIBUTES, (4, 4, 3))}
    assert manifest["scenario_mix"] == {"perception": round(4 / 11, 6), "understanding": round(7 / 11, 6)}
    assert manifest["backends"] == {"masker": "annotation"}
    assert manifest["index"]["url"] == "../data/demo/demo.parquet"
    assert manifest["pipeline_version"] and manifest["created"].endswith("Z")


def test_read_samples_round_trip(dataset):
    samples, _, manifest = dataset
    back = list(read_samples(manifest))
    assert len(back) == N
    for a, b in zip(samples, back):
        assert_same(a, b)
    # A folder of manifests reads every manifest in it.
    assert [s.key for s in read_samples(manifest.parent)] == [s.key for s in samples]


def test_webdataset_reads_shards(dataset):
    samples, data_dir, manifest = dataset
    urls = [s["path"] for s in load_manifest(manifest)["shardlist"]]
    got = list(webdataset.WebDataset(urls, shardshuffle=False, empty_check=False))
    assert [g["__key__"] for g in got] == [s.key for s in samples]
    first = got[0]
    assert set(first) >= {"src.png", "tgt.png", "mask.png", "json"}
    np.testing.assert_array_equal(decode_image(first["src.png"]), samples[0].src)
    np.testing.assert_array_equal(decode_mask(first["mask.png"]), samples[0].mask)
    assert json.loads(first["json"])["instruction"] == samples[0].instruction
    assert_same(decode_sample(first), samples[0])


def test_wids_resolves_relative_urls(dataset, tmp_path):
    samples, _, manifest = dataset
    # Plain wids, as any trainer would call it: relative URLs resolve against the manifest folder.
    raw = wids.ShardListDataset(str(manifest), cache_dir=str(tmp_path / "wids-cache"), transformations=[])
    assert len(raw) == N
    item = raw[6]
    assert item["__key__"] == samples[6].key
    assert_same(decode_sample(item), samples[6])
    # Our wrapper reads local shards in place and yields EditSamples.
    ds = wids_dataset(manifest)
    assert len(ds) == N
    assert_same(ds[10], samples[10])


def test_plain_tar_lists_members(dataset):
    samples, data_dir, _ = dataset
    listing = subprocess.run(["tar", "-tf", str(data_dir / "demo-000001.tar")],
                             check=True, capture_output=True, text=True).stdout.split()
    expected = [f"{s.key}.{ext}" for s in samples[4:8] for ext in ("src.png", "tgt.png", "mask.png", "json")]
    assert listing == expected


def test_parquet_index(dataset):
    samples, data_dir, _ = dataset
    arrow = pq.read_table(data_dir / "demo.parquet")  # a folder of parts, read as one table
    table = arrow.to_pylist()
    assert [row["key"] for row in table] == [s.key for s in samples]
    assert table[5]["shard"] == "demo-000001.tar" and table[5]["index"] == 1
    assert table[5]["op"] == "replace" and table[5]["attribute"] == "color" and table[5]["category"] == "cup"
    assert dict(table[5]["quality"]["scores"]) == {"psnr": 25.0}
    # make_sample's ``passed: True`` does not fit the list of check names: kept as JSON in ``extra``.
    assert table[5]["quality"]["passed"] is None and dict(table[5]["quality"]["extra"]) == {"passed": "true"}
    assert table[5]["provenance"]["record_id"] == "rec5" and table[5]["provenance"]["seed"] == 5
    assert table[5]["target"]["box"] == [15.0, 5.0, 20.0, 10.0] and table[5]["target"]["attribute"] == ["color"]
    assert table[5]["paraphrases"] == ["Paint cat 5 red"] and table[5]["review_status"] is None
    assert not [name for name in arrow.schema.names if "." in name]


def test_verify_catches_damage(dataset):
    _, data_dir, manifest = dataset
    assert verify_manifest(manifest) == []
    shard = data_dir / "demo-000001.tar"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0xFF  # inside the first member's PNG bytes: the tar still parses
    shard.write_bytes(bytes(data))
    problems = verify_manifest(manifest)
    assert len(problems) == 1 and "demo-000001.tar: sha256" in problems[0]

    (data_dir / "demo-000002.tar").write_bytes(bytes(data[:5000]))  # truncated
    (data_dir / "demo-000000.tar").unlink()
    problems = "\n".join(verify_manifest(manifest))
    assert "demo-000000.tar: shard is missing" in problems
    assert "demo-000002.tar: size 5000 != manifest filesize" in problems


def test_verify_catches_wrong_nsamples(dataset):
    _, _, manifest = dataset
    doc = json.loads(manifest.read_text())
    doc["shardlist"][2]["nsamples"] = 4
    manifest.write_text(json.dumps(doc))
    assert verify_manifest(manifest) == ["../data/demo/demo-000002.tar: 3 samples != manifest nsamples 4"]


def test_absolute_and_fsspec_urls(tmp_path):
    data_dir = tmp_path / "data"
    with ShardWriter(data_dir, "x", maxcount=2, image_format="jpg") as writer:
        for i in range(3):
            writer.write(make_sample(i, hw=(40, 40)))
    manifest = build_manifest(data_dir, "x", tmp_path / "m", base_url=f"file://{data_dir}")
    assert json.loads(manifest.read_text())["shardlist"][0]["url"] == f"file://{data_dir}/x-000000.tar"
    assert verify_manifest(manifest) == []
    back = list(read_samples(manifest))
    assert len(back) == 3
    # Images are what a JPEG round trip gives; the mask stays a lossless PNG.
    original = make_sample(1, hw=(40, 40))
    np.testing.assert_array_equal(back[1].src, decode_image(encode_image(original.src, "jpg")))
    np.testing.assert_array_equal(back[1].mask, original.mask)
    # Absolute local paths work as URLs too.
    doc = json.loads(manifest.read_text())
    for shard in doc["shardlist"]:
        shard["url"] = shard["url"].removeprefix("file://")
    manifest.write_text(json.dumps(doc))
    assert [s.key for s in read_samples(manifest)] == [s.key for s in back]


def test_maxsize_rolls_shards(tmp_path):
    with ShardWriter(tmp_path, "s", maxcount=1000, maxsize=12_000) as writer:
        for i in range(6):
            writer.write(make_sample(i))
    sizes = [os.path.getsize(p) for p in writer.shards]
    assert len(sizes) >= 3 and sum(json.loads(Path(f"{p}.json").read_text())["nsamples"]
                                   for p in writer.shards) == 6


def test_bad_samples_raise_and_write_nothing(tmp_path):
    with ShardWriter(tmp_path, "bad") as writer:
        sample = make_sample(0)
        sample.mask = sample.mask.astype(np.uint8)
        with pytest.raises(SampleError, match="mask must be bool"):
            writer.write(sample)
        with pytest.raises(SampleError, match="KEY.json is written from meta"):
            writer.write_encoded("k1", {"json": b"{}"}, {})
        with pytest.raises(SampleError, match="longer than 100 bytes"):
            writer.write_encoded("k" * 95, {"src.png": b"x"}, {})
        with pytest.raises(SampleError, match="must be 1-128 characters"):
            writer.write_encoded("a.b", {"src.png": b"x"}, {})
        assert writer.written == 0
    assert writer.shards == []


def test_build_manifest_refuses_empty_or_clashing(tmp_path):
    with pytest.raises(ValueError, match="no committed sample"):
        build_manifest(tmp_path / "nothing", "empty", tmp_path / "m")
    with ShardWriter(tmp_path / "d", "p") as writer:
        writer.write(make_sample(0))
    with pytest.raises(ValueError, match="may not set manifest keys"):
        build_manifest(tmp_path / "d", "d", tmp_path / "m", extra={"shardlist": []})


@pytest.mark.parametrize("name,size,mtime", [("a.json", 0, 0), ("k" * 91 + ".src.png", 123456789, 1764000000)])
def test_member_header_matches_tarfile(name, size, mtime):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = size, mtime, 0o444, "", ""
    assert member_header(name, size, mtime) == info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8")
    with pytest.raises(ValueError, match="longer than 100 bytes"):
        member_header("k" * 101, 1, 0)
