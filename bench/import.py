"""Importer throughput against the floor: the bare decode + encode of the same images.

For each dataset a synthetic copy in its released format is written (N records of 320x240
images: crops of the photographs bundled with scikit-image, or with ``--content flat`` smooth
synthetic gradients) and imported through the real job (``datagen.jobs``, scenario ``import``,
PNG shards).
The floor is the least any converter to these shards must do for the same records, and is
measured on exactly what the import wrote (read back from its shards, untimed): decode every
source file once, encode every distinct src/tgt image once and every mask, and SHA-256 the
encoded bytes (the writer does both: it encodes an image shared by samples once, and every
shard's sidecar carries the SHA-256 of its bytes). Everything else the import does -- reading
the annotations, masks and overlays, validation, keys, metadata, the tar, markers, manifest and
Parquet index -- is the importer's overhead.

Both sides are timed in CPU seconds of this process (``time.process_time``, all threads): the
development machines share two cores between many jobs, and wall-clock rates there swing by 2x
from one run to the next. Floor and import alternate ``--repeat`` times; the best rate of each
counts, and the median of the paired ratios is printed beside it. Target: ratio >= 0.8.

``--stages`` also times the importer and the shard writer apart and prints, per sample, the
floor's decoding and encoding and what the importer, the writer and the job add to them.

    .venv/bin/python bench/import.py [--n 64] [--repeat 5] [--datasets refcoco,cocostuff] [--content flat] [--stages]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datagen.imageio import decode_image, encode_image, encode_mask  # noqa: E402
from datagen.jobs import JobConfig, JobResult, clear_cache, open_source, run_job  # noqa: E402
from datagen.schema import EditSample  # noqa: E402
from datagen.shards import ShardWriter, read_samples  # noqa: E402
from tests.importers.fixtures import encode, scene  # noqa: E402

W, H = 320, 240
BOX = (40, 40, 120, 160)  # x0, y0, x1, y1 of the marked object in every scene


CONTENTS = ("photo", "flat")
_PHOTOS: list[np.ndarray] = []


def _photos() -> list[np.ndarray]:
    """Photographs bundled with scikit-image (no download), loaded once."""
    if not _PHOTOS:
        from skimage import data

        _PHOTOS.extend(getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket"))
    return _PHOTOS


def _scene(i: int, content: str) -> np.ndarray:
    """HxWx3 uint8 scene ``i`` with a blue box at ``BOX``: a seeded crop of a photograph
    (``photo``: compresses, hence encodes, like the datasets' own images) or a smooth synthetic
    gradient (``flat``: its PNG is ~28x smaller, 4 KB against 117 KB, and encodes ~3x faster than
    a photograph's, so encoding weighs far less against everything else)."""
    if content == "photo":
        photo = _photos()[i % len(_photos())]
        rng = np.random.default_rng(i)
        top, left = (int(rng.integers(0, photo.shape[k] - size + 1)) for k, size in ((0, H), (1, W)))
        img = photo[top:top + H, left:left + W].copy()
    else:
        img = scene(i, W, H)
    x0, y0, x1, y1 = BOX
    img[y0:y1, x0:x1] = (20 + i % 50, 40, 200)
    return img


def _coco(root: Path, images: Path, n: int, content: str) -> list[bytes]:
    images.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        data = encode(_scene(i, content), "JPEG")
        (images / f"COCO_train2014_{i:012d}.jpg").write_bytes(data)
        files.append(data)
    x0, y0, x1, y1 = BOX
    doc = {"images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": H, "width": W} for i in range(n)],
           "annotations": [{"id": 1000 + i, "image_id": i, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                            "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]} for i in range(n)],
           "categories": [{"id": 1, "name": "book"}]}
    (root / "instances.json").write_text(json.dumps(doc))
    return files


def _refs(n: int, multi: bool) -> list[dict]:
    return [{"ref_id": i, "ann_id": [1000 + i] if multi else 1000 + i, "image_id": i, "split": "train",
             "category_id": 1, "no_target": False,
             "sentences": [{"sent_id": 2 * i + k, "sent": f"the book number {i} view {k}"} for k in range(2)]}
            for i in range(n)]


def make_refcoco(tmp: Path, n: int, content: str):
    root, images = tmp / "refcoco", tmp / "coco" / "train2014"
    root.mkdir(parents=True)
    files = _coco(root, images, n, content)
    with open(root / "refs(unc).p", "wb") as f:
        pickle.dump(_refs(n, False), f, protocol=2)
    return root, {"images": str(images)}, [[b] for b in files]


def make_grefcoco(tmp: Path, n: int, content: str):
    root, images = tmp / "grefcoco", tmp / "coco" / "train2014"
    root.mkdir(parents=True)
    files = _coco(root, images, n, content)
    (root / "grefs(unc).json").write_text(json.dumps(_refs(n, True)))
    return root, {"images": str(images)}, [[b] for b in files]


def make_reasonseg(tmp: Path, n: int, content: str):
    root = tmp / "ReasonSeg" / "train"
    root.mkdir(parents=True)
    x0, y0, x1, y1 = BOX
    plan = []
    for i in range(n):
        data = encode(_scene(i, content), "JPEG")
        (root / f"{i:05d}.jpg").write_bytes(data)
        (root / f"{i:05d}.json").write_text(json.dumps({"text": ["what can be read?", "the book"], "is_sentence": True,
                                                        "shapes": [{"label": "target", "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}]}))
        plan.append([data])
    return root.parent, {}, plan


def make_cocostuff(tmp: Path, n: int, content: str):
    from PIL import Image

    maps, images = tmp / "maps" / "train2017", tmp / "images" / "train2017"
    maps.mkdir(parents=True)
    images.mkdir(parents=True)
    labels = np.full((H, W), 255, np.uint8)
    labels[: H // 2], labels[H // 2:] = 156, 123
    plan = []
    for i in range(n):
        Image.fromarray(labels).save(maps / f"{i:012d}.png")
        data = encode(_scene(i, content), "JPEG")
        (images / f"{i:012d}.jpg").write_bytes(data)
        plan.append([data, (maps / f"{i:012d}.png").read_bytes()])
    return maps, {"images": str(images)}, plan


def _struct(data: bytes) -> dict:
    return {"bytes": data, "path": "x.png"}


def make_instructpix2pix(tmp: Path, n: int, content: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp / "ip2p"
    root.mkdir()
    rows, plan = [], []
    for i in range(n):
        src, tgt = encode(_scene(i, content)), encode(255 - _scene(i, content))
        rows.append({"original_prompt": "a", "original_image": _struct(src), "edit_prompt": "invert it",
                     "edited_prompt": "b", "edited_image": _struct(tgt)})
        plan.append([src, tgt])
    pq.write_table(pa.Table.from_pylist(rows), root / "train-00000-of-00001.parquet", row_group_size=16)
    return root, {}, plan


def make_magicbrush(tmp: Path, n: int, content: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp / "magicbrush"
    root.mkdir()
    rows, plan = [], []
    x0, y0, x1, y1 = BOX
    for i in range(n):
        img = _scene(i, content)
        painted = img.copy()
        painted[y0:y1, x0:x1] = 255
        src, tgt, mask = encode(img), encode(255 - img), encode(painted)
        rows.append({"img_id": str(i), "turn_index": 1, "source_img": _struct(src), "mask_img": _struct(mask),
                     "instruction": "invert it", "target_img": _struct(tgt)})
        plan.append([src, mask, tgt])
    pq.write_table(pa.Table.from_pylist(rows), root / "train-00000-of-00001-x.parquet", row_group_size=16)
    return root, {}, plan


def make_reason_edit(tmp: Path, n: int, content: str):
    folder = tmp / "Reason-Edit" / "1-Left-Right"
    folder.mkdir(parents=True)
    mask = np.zeros((H, W, 3), np.uint8)
    x0, y0, x1, y1 = BOX
    mask[y0:y1, x0:x1] = 255
    plan = []
    for i in range(n):
        data, mdata = encode(_scene(i, content)), encode(mask)
        (folder / f"{i:05d}.png").write_bytes(data)
        (folder / f"{i:05d}_mask.png").write_bytes(mdata)
        plan.append([data, mdata])
    (folder / "cases.txt").write_text("".join("Remove the left book CLIP: a desk\n" for _ in range(n)))
    return folder.parent, {}, plan


MAKERS = {"refcoco": make_refcoco, "grefcoco": make_grefcoco, "reasonseg": make_reasonseg,
          "cocostuff": make_cocostuff, "instructpix2pix": make_instructpix2pix, "magicbrush": make_magicbrush,
          "reason-edit": make_reason_edit}


def written_images(manifest: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """What an import wrote, read back from its shards: the distinct src/tgt images (HxWx3
    uint8, the writer encodes each distinct image once) and every sample's mask (HxW bool)."""
    images, seen, masks = [], set(), []
    for sample in read_samples(manifest):
        for image in (sample.src, sample.tgt):
            digest = hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()
            if digest not in seen:
                seen.add(digest)
                images.append(image)
        masks.append(sample.mask)
    return images, masks


def floor_seconds(plan: list[list[bytes]], images: list[np.ndarray], masks: list[np.ndarray]) -> tuple[float, float]:
    """CPU seconds ``(decoding, encoding)`` of the least any converter to these shards must do:
    decode every source file (``plan``: each record's encoded inputs) once, encode every distinct
    image and every mask it writes, and take the SHA-256 of those bytes (every shard's sidecar
    records one)."""
    start = time.process_time()
    for blobs in plan:
        for blob in blobs:
            decode_image(blob)
    decoded = time.process_time()
    digest = hashlib.sha256()
    for image in images:
        digest.update(encode_image(image, "png"))
    for mask in masks:
        digest.update(encode_mask(mask))
    digest.digest()
    return decoded - start, time.process_time() - decoded


def _config(dataset: str, root: Path, options: dict, out: Path) -> JobConfig:
    options = dict(options)
    images = options.pop("images", None)
    return JobConfig("import", source=str(root), images=images, out=str(out / "shards"),
                     name=dataset.replace("-", "_"), manifest_dir=str(out / "manifests"), batch_size=64,
                     builder_options={"dataset": dataset, **options})


def import_seconds(dataset: str, root: Path, options: dict, out: Path) -> tuple[float, JobResult]:
    """CPU seconds of this process (all its threads) for one import job from scratch, with a
    fresh catalog: everything a user's ``python -m datagen import`` pays but interpreter start."""
    clear_cache()
    config = _config(dataset, root, options, out)
    start = time.process_time()
    result = run_job(config)
    return time.process_time() - start, result


def stage_seconds(dataset: str, root: Path, options: dict, out: Path) -> tuple[float, float, int]:
    """CPU seconds ``(importer, writer)`` of the job's two stages timed apart, in one thread, and
    the number of src/tgt images the writer encoded (the floor must encode as many): the
    importer opening the dataset, loading each record and building its samples, and a
    ``ShardWriter`` writing them, record by record (as the job does, so memory is reused the same
    way). What a job costs beyond both is the job's own (threads, marker, manifest, Parquet index)."""
    clear_cache()
    config = _config(dataset, root, options, out)
    importer_s = writer_s = 0.0
    start = time.process_time()
    importer = open_source(config)
    with ShardWriter(config.out, "stages", maxcount=config.maxcount, image_format=config.image_format) as writer:
        for record_id in importer.ids():
            built = [item for item in importer(importer.load(record_id)) if isinstance(item, EditSample)]
            built_at = time.process_time()
            importer_s += built_at - start
            for sample in built:
                writer.write(sample)
            start = time.process_time()
            writer_s += start - built_at
    # Closing commits the last shard.
    return importer_s, writer_s + time.process_time() - start, writer.encoder.encoded


@dataclass
class Measured:
    """Best-of-repeat CPU seconds of one dataset (``stages`` only with ``--stages``)."""

    samples: int
    decode: float
    encode: float
    job: float
    median_ratio: float
    importer: float = float("nan")
    writer: float = float("nan")

    @property
    def ratio(self) -> float:
        return (self.decode + self.encode) / self.job


def measure(dataset: str, folder: Path, n: int, repeat: int, stages: bool, content: str = "photo") -> Measured:
    """Floor and import timings of ``dataset`` at ``n`` records; each the best of ``repeat``
    interleaved runs (other jobs share the cores: the least disturbed run is the closest to the
    code's own cost), with the median of the paired floor/import ratios."""
    root, options, plan = MAKERS[dataset](folder, n, content)
    # An untimed first import: warms module imports (pyarrow, pycocotools...) and yields the
    # exact images the floor must encode.
    _, reference = import_seconds(dataset, root, options, folder / "reference")
    images, masks = written_images(reference.manifest)
    samples = reference.stats.samples_written
    assert samples == len(masks), f"{dataset}: {samples} samples written, {len(masks)} read back"
    floors, imports, importers, writers = [], [], [], []
    for rep in range(repeat):
        floors.append(floor_seconds(plan, images, masks))
        seconds, result = import_seconds(dataset, root, options, folder / f"run{rep}")
        assert result.stats.samples_written == samples, f"{dataset}: a repeat wrote a different sample count"
        imports.append(seconds)
        if stages:
            importer, writer, encoded = stage_seconds(dataset, root, options, folder / f"stages{rep}")
            assert encoded == len(images), f"{dataset}: the writer encoded {encoded} images, the floor {len(images)}"
            importers.append(importer)
            writers.append(writer)
    ratios = sorted(sum(f) / i for f, i in zip(floors, imports))
    measured = Measured(samples, min(f[0] for f in floors), min(f[1] for f in floors), min(imports),
                        ratios[len(ratios) // 2])
    if stages:
        measured.importer, measured.writer = min(importers), min(writers)
    return measured


def print_stages(dataset: str, m: Measured) -> None:
    """Where an import's CPU goes beyond the floor, in ms per sample."""
    per = 1e3 / m.samples
    importer_extra = (m.importer - m.decode) * per
    writer_extra = (m.writer - m.encode) * per
    job_extra = (m.job - m.importer - m.writer) * per
    print(f"{dataset:16s} {m.decode * per:7.2f} {m.encode * per:7.2f} {importer_extra:9.2f} "
          f"{writer_extra:8.2f} {job_extra:6.2f} {m.job * per:7.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="records per dataset")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved floor/import timings per dataset")
    parser.add_argument("--datasets", default=",".join(MAKERS), help="comma-separated subset to measure")
    parser.add_argument("--content", choices=CONTENTS, default="photo",
                        help="scene images: crops of photographs (default) or smooth synthetic gradients")
    parser.add_argument("--stages", action="store_true",
                        help="also time the importer and the shard writer apart and print where the CPU beyond "
                             "the floor goes (ms per sample)")
    args = parser.parse_args(argv)
    from datagen.importers import importer_names

    assert set(MAKERS) == set(importer_names()), "bench/import.py must cover every registered importer"
    chosen = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(chosen) - set(MAKERS))
    if unknown:
        parser.error(f"--datasets: unknown {unknown}; choose from {sorted(MAKERS)}")
    print(f"{args.content} scenes, {args.n} records per dataset, best of {args.repeat}")
    print(f"{'dataset':16s} {'samples':>7s} {'import/cpu-s':>12s} {'floor/cpu-s':>11s} {'ratio':>6s} {'median':>6s}")
    worst, results = float("inf"), {}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in chosen:
            folder = Path(tmp) / dataset
            folder.mkdir()
            m = results[dataset] = measure(dataset, folder, args.n, args.repeat, args.stages, args.content)
            worst = min(worst, m.ratio)
            print(f"{dataset:16s} {m.samples:7d} {m.samples / m.job:12.1f} {m.samples / (m.decode + m.encode):11.1f} "
                  f"{m.ratio:6.2f} {m.median_ratio:6.2f}", flush=True)
    print(f"lowest ratio {worst:.2f} (target >= 0.8; ratio = best import rate / best floor rate, "
          f"median = median of the paired runs' ratios)")
    if args.stages:
        print("\nms per sample: the floor's decoding and encoding; beyond it: importer (reading annotations, "
              "masks, overlays, colours, phrasing), writer (validation, content keys, metadata, tar, commit), "
              "job (threads, marker, manifest, Parquet index)")
        print(f"{'dataset':16s} {'decode':>7s} {'encode':>7s} {'+importer':>9s} {'+writer':>8s} {'+job':>6s} {'import':>7s}")
        for dataset, m in results.items():
            print_stages(dataset, m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
