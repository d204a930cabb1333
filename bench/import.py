"""Importer throughput against the bare decode + encode of the same images.

For each dataset a synthetic copy in its released format is written (N records of 320x240
images), imported through the real job (``datagen.jobs``, scenario ``import``, PNG shards), and
compared with the least any converter to this shard format must do for the same records: decode
every source image once, then encode src, tgt and mask per sample. Prints samples/s of both and
their ratio (target >= 0.8). Rates are per CPU second of this process (``time.process_time``):
the development machines share two cores between many jobs, and wall-clock rates there swing by
2x from one run to the next.

    .venv/bin/python bench/import.py [--n 64]
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datagen.imageio import decode_image, encode_image, encode_mask  # noqa: E402
from datagen.jobs import JobConfig, clear_cache, run_job  # noqa: E402
from tests.importers.fixtures import encode, scene  # noqa: E402

W, H = 320, 240
BOX = (40, 40, 120, 160)  # x0, y0, x1, y1 of the marked object in every scene


def _scene(i: int) -> np.ndarray:
    img = scene(i, W, H)
    x0, y0, x1, y1 = BOX
    img[y0:y1, x0:x1] = (20 + i % 50, 40, 200)
    return img


def _coco(root: Path, images: Path, n: int) -> list[bytes]:
    images.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        data = encode(_scene(i), "JPEG")
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


def make_refcoco(tmp: Path, n: int):
    root, images = tmp / "refcoco", tmp / "coco" / "train2014"
    root.mkdir(parents=True)
    files = _coco(root, images, n)
    with open(root / "refs(unc).p", "wb") as f:
        pickle.dump(_refs(n, False), f, protocol=2)
    return root, {"images": str(images)}, [([b], 2) for b in files]


def make_grefcoco(tmp: Path, n: int):
    root, images = tmp / "grefcoco", tmp / "coco" / "train2014"
    root.mkdir(parents=True)
    files = _coco(root, images, n)
    (root / "grefs(unc).json").write_text(json.dumps(_refs(n, True)))
    return root, {"images": str(images)}, [([b], 2) for b in files]


def make_reasonseg(tmp: Path, n: int):
    root = tmp / "ReasonSeg" / "train"
    root.mkdir(parents=True)
    x0, y0, x1, y1 = BOX
    plan = []
    for i in range(n):
        data = encode(_scene(i), "JPEG")
        (root / f"{i:05d}.jpg").write_bytes(data)
        (root / f"{i:05d}.json").write_text(json.dumps({"text": ["what can be read?", "the book"], "is_sentence": True,
                                                        "shapes": [{"label": "target", "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}]}))
        plan.append(([data], 2))
    return root.parent, {}, plan


def make_cocostuff(tmp: Path, n: int):
    from PIL import Image

    maps, images = tmp / "maps" / "train2017", tmp / "images" / "train2017"
    maps.mkdir(parents=True)
    images.mkdir(parents=True)
    labels = np.full((H, W), 255, np.uint8)
    labels[: H // 2], labels[H // 2:] = 156, 123
    label_png = encode(np.dstack([labels] * 3))  # decoded like any image: the same work as the L map
    plan = []
    for i in range(n):
        Image.fromarray(labels).save(maps / f"{i:012d}.png")
        data = encode(_scene(i), "JPEG")
        (images / f"{i:012d}.jpg").write_bytes(data)
        plan.append(([data, label_png], 2))
    return maps, {"images": str(images)}, plan


def _struct(data: bytes) -> dict:
    return {"bytes": data, "path": "x.png"}


def make_instructpix2pix(tmp: Path, n: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp / "ip2p"
    root.mkdir()
    rows, plan = [], []
    for i in range(n):
        src, tgt = encode(_scene(i)), encode(255 - _scene(i))
        rows.append({"original_prompt": "a", "original_image": _struct(src), "edit_prompt": "invert it",
                     "edited_prompt": "b", "edited_image": _struct(tgt)})
        plan.append(([src, tgt], 1))
    pq.write_table(pa.Table.from_pylist(rows), root / "train-00000-of-00001.parquet", row_group_size=16)
    return root, {}, plan


def make_magicbrush(tmp: Path, n: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp / "magicbrush"
    root.mkdir()
    rows, plan = [], []
    x0, y0, x1, y1 = BOX
    for i in range(n):
        img = _scene(i)
        painted = img.copy()
        painted[y0:y1, x0:x1] = 255
        src, tgt, mask = encode(img), encode(255 - img), encode(painted)
        rows.append({"img_id": str(i), "turn_index": 1, "source_img": _struct(src), "mask_img": _struct(mask),
                     "instruction": "invert it", "target_img": _struct(tgt)})
        plan.append(([src, mask, tgt], 1))
    pq.write_table(pa.Table.from_pylist(rows), root / "train-00000-of-00001-x.parquet", row_group_size=16)
    return root, {}, plan


def make_reason_edit(tmp: Path, n: int):
    folder = tmp / "Reason-Edit" / "1-Left-Right"
    folder.mkdir(parents=True)
    mask = np.zeros((H, W, 3), np.uint8)
    x0, y0, x1, y1 = BOX
    mask[y0:y1, x0:x1] = 255
    plan = []
    for i in range(n):
        data, mdata = encode(_scene(i)), encode(mask)
        (folder / f"{i:05d}.png").write_bytes(data)
        (folder / f"{i:05d}_mask.png").write_bytes(mdata)
        plan.append(([data, mdata], 1))
    (folder / "cases.txt").write_text("".join("Remove the left book CLIP: a desk\n" for _ in range(n)))
    return folder.parent, {}, plan


MAKERS = {"refcoco": make_refcoco, "grefcoco": make_grefcoco, "reasonseg": make_reasonseg,
          "cocostuff": make_cocostuff, "instructpix2pix": make_instructpix2pix, "magicbrush": make_magicbrush,
          "reason-edit": make_reason_edit}


def bare_rate(plan) -> float:
    """Samples per CPU second of decoding each record's images (source, target, mask or label
    map) once and encoding src, tgt and mask per sample."""
    mask = np.zeros((H, W), bool)
    mask[BOX[1]:BOX[3], BOX[0]:BOX[2]] = True
    start, samples = time.process_time(), 0
    for blobs, n_samples in plan:
        decoded = [decode_image(b) for b in blobs]
        for _ in range(n_samples):
            encode_image(decoded[0], "png")
            encode_image(decoded[-1], "png")
            encode_mask(mask)
            samples += 1
    return samples / (time.process_time() - start)


def import_rate(dataset: str, root: Path, options: dict, tmp: Path) -> tuple[float, int]:
    clear_cache()
    images = options.pop("images", None)
    config = JobConfig("import", source=str(root), images=images, out=str(tmp / "out" / dataset),
                       name=dataset.replace("-", "_"), manifest_dir=str(tmp / "manifests"), batch_size=64,
                       builder_options={"dataset": dataset, **options})
    start = time.process_time()
    result = run_job(config)
    seconds = time.process_time() - start
    return result.stats.samples_written / seconds, result.stats.samples_written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="records per dataset")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved timings per dataset; the best counts")
    args = parser.parse_args(argv)
    from datagen.importers import importer_names

    assert set(MAKERS) == set(importer_names()), "bench/import.py must cover every registered importer"
    print(f"{'dataset':16s} {'samples':>7s} {'import/cpu-s':>12s} {'bare/cpu-s':>10s} {'ratio':>6s}")
    worst = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, make in MAKERS.items():
            # A 4-record warm-up import first, so module imports (pyarrow, pandas for the Parquet index,
            # pycocotools) are not charged to the timed run; a long import pays them once.
            warm = Path(tmp) / f"{dataset}-warm-up"
            warm.mkdir()
            warm_root, warm_options, _ = make(warm, 4)
            import_rate(dataset, warm_root, dict(warm_options), warm)
            folder = Path(tmp) / dataset
            folder.mkdir()
            root, options, plan = make(folder, args.n)
            bare = rate = 0.0
            for rep in range(args.repeat):  # interleaved, best of each: other jobs share the cores
                bare = max(bare, bare_rate(plan))
                run = folder / f"run{rep}"
                run.mkdir()
                got, samples = import_rate(dataset, root, dict(options), run)
                rate = max(rate, got)
            worst = min(worst, rate / bare)
            print(f"{dataset:16s} {samples:7d} {rate:12.1f} {bare:10.1f} {rate / bare:6.2f}")
    print(f"lowest ratio {worst:.2f} (target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
