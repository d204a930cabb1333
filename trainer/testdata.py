"""Small synthetic datasets in the project's shard format, for tests, benchmarks and smoke runs.

Writes contract-1 members (``KEY.src.png``, ``KEY.tgt.png``, ``KEY.mask.png`` L 255 = edit,
``KEY.json`` = ``EditSample.metadata()`` fields) with ``webdataset.TarWriter`` and a contract-2
manifest (``wids_version``, ``name``, ``shardlist`` with relative ``url``, ``nsamples``,
``filesize``, ``sha256``). Each sample recolours one rectangle of a gradient picture, so the edit
is real and the background is unchanged.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"red": (220, 30, 30), "green": (30, 190, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_pair(rng: np.random.Generator, size: tuple[int, int] = (80, 64)):
    """-> (src HxWx3 uint8, tgt HxWx3 uint8, mask HxW bool, old colour, new colour)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 128)], -1).astype(np.uint8)
    names = list(COLORS)
    old, new = rng.choice(len(names), 2, replace=False)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    mask = np.zeros((h, w), bool)
    mask[y0:y0 + h // 3, x0:x0 + w // 3] = True
    src, tgt = base.copy(), base.copy()
    src[mask], tgt[mask] = COLORS[names[old]], COLORS[names[new]]
    return src, tgt, mask, names[old], names[new]


def write_dataset(root: str | Path, name: str, n_samples: int, samples_per_shard: int = 4, seed: int = 0,
                  scenario: str = "understanding") -> Path:
    """Write ``root/data/NAME-00000i.tar`` shards and ``root/manifests/NAME.json``; returns the manifest."""
    import webdataset as wds

    root = Path(root)
    data, manifests = root / "data", root / "manifests"
    data.mkdir(parents=True, exist_ok=True)
    manifests.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shardlist = []
    for shard in range(0, n_samples, samples_per_shard):
        path = data / f"{name}-{shard // samples_per_shard:06d}.tar"
        count = min(samples_per_shard, n_samples - shard)
        with wds.TarWriter(str(path)) as sink:
            for i in range(shard, shard + count):
                src, tgt, mask, old, new = make_pair(rng)
                key = hashlib.sha1(f"{name}:{seed}:{i}".encode()).hexdigest()[:24]
                meta = {
                    "key": key, "instruction": f"Change the {old} box to {new}",
                    "paraphrases": [f"Make the {old} rectangle {new}", f"Recolor the {old} box {new}"],
                    "scenario": scenario, "op": "recolor",
                    "target": {"category": "box", "attribute": "color", "box": [0, 0, 1, 1]},
                    "provenance": {"generator": "trainer.testdata"}, "quality": {}, "review": None,
                    "size": [int(src.shape[1]), int(src.shape[0])],
                }
                sink.write({"__key__": key, "src.png": _png(src), "tgt.png": _png(tgt),
                            "mask.png": _png(mask.astype(np.uint8) * 255), "json": json.dumps(meta).encode()})
        blob = path.read_bytes()
        shardlist.append({"url": f"../data/{path.name}", "nsamples": count, "filesize": len(blob),
                          "sha256": hashlib.sha256(blob).hexdigest()})
    manifest = manifests / f"{name}.json"
    manifest.write_text(json.dumps({"wids_version": 1, "name": name, "shardlist": shardlist,
                                    "counts": {"scenario": {scenario: n_samples}}}, indent=1))
    return manifest


def write_vqa(root: str | Path, n: int = 3, seed: int = 0) -> Path:
    """A LLaVA-Instruct style JSON with ``n`` records and their images beside it."""
    root = Path(root)
    (root / "vqa").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        src, _, _, old, _ = make_pair(rng)
        Image.fromarray(src).save(root / "vqa" / f"img{i}.png")
        records.append({"id": f"q{i}", "image": f"img{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the box?"}, {"from": "gpt", "value": f"It is {old}."},
            {"from": "human", "value": "Is there a gradient?"}, {"from": "gpt", "value": "Yes."}]})
    path = root / "vqa" / "llava_instruct_tiny.json"
    path.write_text(json.dumps(records))
    return path


def write_img2dataset_shard(folder: str | Path, captions: list[str], shard: int = 0, size: int = 32) -> Path:
    """A tiny shard in img2dataset's webdataset layout (``NNNNN.tar`` with ``KEY.jpg/.txt/.json``,
    ``NNNNN_stats.json``, ``NNNNN.parquet``), for tests and smoke runs. Returns the tar path."""
    import webdataset as wds

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tar = folder / f"{shard:05d}.tar"
    rng = np.random.default_rng(shard)
    with wds.TarWriter(str(tar)) as sink:
        for i, caption in enumerate(captions):
            key = f"{shard:05d}{i:04d}"
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
            meta = {"key": key, "caption": caption, "url": f"http://example.invalid/{key}.jpg", "status": "success",
                    "width": size, "height": size}
            sink.write({"__key__": key, "jpg": buf.getvalue(), "txt": caption.encode(), "json": json.dumps(meta).encode()})
    stats = {"count": len(captions), "successes": len(captions), "failed_to_download": 0}
    (folder / f"{shard:05d}_stats.json").write_text(json.dumps(stats))
    # img2dataset also keeps a Parquet of the records (no image bytes) beside each shard.
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"key": [f"{shard:05d}{i:04d}" for i in range(len(captions))], "caption": captions,
                             "status": ["success"] * len(captions)}), folder / f"{shard:05d}.parquet")
    return tar
