"""Tiny copies of each dataset in its released on-disk format, each with broken records.

Every writer returns the root to import and ``expected``: what a correct import gives (record
ids that must quarantine, by reason, and facts per record). Images are small (64x48) scenes
with flat-coloured boxes so the marked regions are known exactly.
"""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 64, 48


def scene(seed: int, w: int = W, h: int = H) -> np.ndarray:
    """HxWx3 uint8: a seeded smooth background with a blue box at (8, 8)-(24, 32) and a yellow
    one at (36, 10)-(56, 30)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 180, size=3)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.clip(base[None, None, :] + (xx[..., None] + yy[..., None]) // 4, 0, 255).astype(np.uint8)
    img[8:32, 8:24] = (20, 40, 200)
    img[10:30, 36:56] = (230, 220, 30)
    return img


def encode(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def box_polygon(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco_instances(folder: Path, images_dir: Path) -> dict:
    """COCO train2014-style images + ``instances.json``: images 1 and 2 exist, 3 is listed but
    missing; ann 10 / 11 = the blue / yellow box of image 1, 20 = the blue box of image 2 (RLE),
    30 = on the missing image, 40 = a two-point polygon (broken)."""
    from pycocotools import mask as mask_utils

    images_dir.mkdir(parents=True, exist_ok=True)
    for image_id in (1, 2):
        (images_dir / f"COCO_train2014_{image_id:012d}.jpg").write_bytes(encode(scene(image_id), "JPEG"))
    blue = np.zeros((H, W), np.uint8)
    blue[8:32, 8:24] = 1
    rle = mask_utils.encode(np.asfortranarray(blue))
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "segmentation": box_polygon(8, 8, 24, 32), "bbox": [8, 8, 16, 24], "iscrowd": 0, "area": 384},
        {"id": 11, "image_id": 1, "category_id": 2, "segmentation": box_polygon(36, 10, 56, 30), "bbox": [36, 10, 20, 20], "iscrowd": 0, "area": 400},
        {"id": 20, "image_id": 2, "category_id": 1, "segmentation": {"size": [H, W], "counts": rle["counts"].decode()}, "bbox": [8, 8, 16, 24], "iscrowd": 0, "area": 384},
        {"id": 30, "image_id": 3, "category_id": 1, "segmentation": box_polygon(8, 8, 24, 32), "bbox": [8, 8, 16, 24], "iscrowd": 0, "area": 384},
        {"id": 40, "image_id": 1, "category_id": 2, "segmentation": [[1, 1, 5, 5]], "bbox": [1, 1, 4, 4], "iscrowd": 0, "area": 0},
    ]
    doc = {"images": [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": H, "width": W} for i in (1, 2, 3)],
           "annotations": anns, "categories": [{"id": 1, "name": "book"}, {"id": 2, "name": "banana"}]}
    (folder / "instances.json").write_text(json.dumps(doc))
    return doc


def _ref(ref_id, ann_id, image_id, split, sentences, **more) -> dict:
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": split, "category_id": 1,
            "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",
            "sent_ids": [s[0] for s in sentences],
            "sentences": [{"sent_id": sid, "sent": text, "raw": text, "tokens": text.split()} for sid, text in sentences],
            **more}


def write_refcoco(tmp: Path) -> tuple[Path, Path, dict]:
    """``refcoco/refs(unc).p`` (protocol-2 pickle, as the Python-2 original) + ``instances.json``."""
    root, images = tmp / "refer" / "refcoco", tmp / "coco" / "train2014"
    root.mkdir(parents=True)
    write_coco_instances(root, images)
    refs = [
        _ref(0, 10, 1, "train", [(100, "blue book on the left"), (101, "left thing")]),
        _ref(1, 11, 1, "testA", [(102, "the yellow banana")]),
        _ref(2, 20, 2, "val", [(103, "book near the top")]),
        _ref(3, 999, 1, "train", [(104, "ghost")]),
        _ref(4, 30, 3, "train", [(105, "book in a lost photo")]),
        _ref(5, 40, 1, "train", [(106, "a sliver")]),
        _ref(6, 10, 1, "train", [(107, "   ")]),
    ]
    with open(root / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    expected = {"samples": 4, "quarantined": {"refcoco:3": "missing_id", "refcoco:4": "missing",
                                              "refcoco:5": "empty_polygon", "refcoco:6": "no_expression"},
                "expressions": ["blue book on the left", "left thing", "the yellow banana", "book near the top"]}
    return root, images, expected


def write_grefcoco(tmp: Path) -> tuple[Path, Path, dict]:
    """``grefcoco/grefs(unc).json`` + ``instances.json``: single, multi-target (union of the two
    boxes), no-target, and one pointing at an annotation that does not exist."""
    root, images = tmp / "grefcoco", tmp / "coco" / "train2014"
    root.mkdir(parents=True)
    write_coco_instances(root, images)
    refs = [
        _ref(0, [10], 1, "train", [(200, "the blue book")], no_target=False),
        _ref(1, [10, 11], 1, "train", [(201, "both things")], no_target=False),
        _ref(2, [-1], 1, "train", [(202, "the red car")], no_target=True),
        _ref(3, [10, 999], 1, "val", [(203, "book and ghost")], no_target=False),
    ]
    (root / "grefs(unc).json").write_text(json.dumps(refs))
    expected = {"samples": 3, "quarantined": {"grefcoco:3": "missing_id"}}
    return root, images, expected


def write_reasonseg(tmp: Path) -> tuple[Path, dict]:
    """``ReasonSeg/{train,val}/NAME.jpg`` + ``NAME.json`` (labelme-style shapes)."""
    root = tmp / "ReasonSeg"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()

    def put(split, name, doc, image=True):
        if image:
            (root / split / f"{name}.jpg").write_bytes(encode(scene(len(name) + 7), "JPEG"))
        (root / split / f"{name}.json").write_text(json.dumps(doc))

    target = {"label": "target", "labeltype": "polygon", "points": [[36, 10], [56, 10], [56, 30], [36, 30]]}
    put("train", "kitchen", {"text": ["What could a monkey peel and eat in this picture?"], "is_sentence": True,
                             "shapes": [target, {"label": "ignore", "labeltype": "polygon",
                                                 "points": [[36, 10], [40, 10], [40, 30], [36, 30]]}]})
    put("train", "desk", {"text": ["the thing to read", "the blue cover"], "is_sentence": False,
                          "shapes": [{"label": "target", "labeltype": "polygon",
                                      "points": [[8, 8], [24, 8], [24, 32], [8, 32]]}]})
    put("train", "lost", {"text": ["anything"], "is_sentence": False, "shapes": [target]}, image=False)
    put("train", "sliver", {"text": ["a line"], "is_sentence": False,
                            "shapes": [{"label": "target", "labeltype": "polygon", "points": [[1, 1], [5, 5]]}]})
    put("val", "mute", {"text": [], "is_sentence": True, "shapes": [target]})
    expected = {"samples": 3, "quarantined": {"train/lost": "missing", "train/sliver": "empty_polygon",
                                              "val/mute": "no_expression"}}
    return root, expected


def write_cocostuff_maps(tmp: Path) -> tuple[Path, Path, dict]:
    """``stuffthingmaps_trainval2017/train2017/NAME.png`` (index = class id - 1, 255 unlabeled) and
    ``images/train2017/NAME.jpg``. Image a: sky (157) on top, grass (124) below, a person box;
    b: unlabeled only; c: its photo is missing."""
    maps, images = tmp / "stuffthingmaps_trainval2017" / "train2017", tmp / "images" / "train2017"
    maps.mkdir(parents=True)
    images.mkdir(parents=True)
    labels = np.full((H, W), 255, np.uint8)
    labels[: H // 2] = 157 - 1
    labels[H // 2:] = 124 - 1
    labels[8:32, 8:24] = 1 - 1
    for name, lab in (("000000000001", labels), ("000000000002", np.full((H, W), 255, np.uint8)),
                      ("000000000003", labels)):
        Image.fromarray(lab, mode="L").save(maps / f"{name}.png")
    for name in ("000000000001", "000000000002"):
        (images / f"{name}.jpg").write_bytes(encode(scene(int(name)), "JPEG"))
    expected = {"samples": 2, "quarantined": {"train2017:000000000002": "no_region",
                                              "train2017:000000000003": "missing"},
                "expressions": ["the sky", "the grass"], "labels": labels}
    return maps, images, expected


def write_cocostuff_json(tmp: Path) -> tuple[Path, Path, dict]:
    """``stuff_train2017.json``: COCO format, one RLE per (image, stuff class); image 2's RLE has
    the wrong size (broken)."""
    from pycocotools import mask as mask_utils

    images = tmp / "coco" / "train2017"
    images.mkdir(parents=True)
    for i in (1, 2):
        (images / f"{i:012d}.jpg").write_bytes(encode(scene(i), "JPEG"))
    top = np.zeros((H, W), np.uint8)
    top[: H // 2] = 1
    good = mask_utils.encode(np.asfortranarray(top))
    wrong = mask_utils.encode(np.asfortranarray(np.ones((H + 1, W), np.uint8)))
    doc = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": H, "width": W} for i in (1, 2)],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 106, "segmentation": {"size": good["size"], "counts": good["counts"].decode()}},
                           {"id": 2, "image_id": 2, "category_id": 157, "segmentation": {"size": wrong["size"], "counts": wrong["counts"].decode()}}],
           "categories": [{"id": 106, "name": "clouds", "supercategory": "sky"}, {"id": 157, "name": "sky-other", "supercategory": "sky"}]}
    path = tmp / "stuff_train2017.json"
    path.write_text(json.dumps(doc))
    return path, images, {"samples": 1, "quarantined": {"train2017:2": "bad_mask"}, "expressions": ["the clouds"]}


def _image_struct(data: bytes | None) -> dict:
    return {"bytes": data, "path": None if data is None else "image.png"}


def write_ip2p_parquet(tmp: Path) -> tuple[Path, dict]:
    """The HF clip-filtered release: two Parquet files, image structs; row 1 of the first file has
    undecodable edited bytes, row 0 of the second an empty edit prompt."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp / "instructpix2pix-clip-filtered" / "data"
    root.mkdir(parents=True)

    def table(rows):
        return pa.Table.from_pylist(rows)

    def row(i, prompt, edited=None):
        return {"original_prompt": f"a photo {i}", "original_image": _image_struct(encode(scene(i))),
                "edit_prompt": prompt, "edited_prompt": f"a photo {i}, edited",
                "edited_image": _image_struct(edited if edited is not None else encode(255 - scene(i)))}

    pq.write_table(table([row(0, "make it a negative"), row(1, "turn it inside out", edited=b"\x89PNG\r\n garbage")]),
                   root / "train-00000-of-00002.parquet", row_group_size=1)
    pq.write_table(table([row(2, ""), row(3, "invert the colours")]), root / "train-00001-of-00002.parquet")
    expected = {"samples": 2, "quarantined": {"train-00000-of-00002:1": "undecodable",
                                              "train-00001-of-00002:0": "no_instruction"},
                "instructions": ["make it a negative", "invert the colours"]}
    return root.parent, expected


def write_ip2p_folders(tmp: Path) -> tuple[Path, dict]:
    """The original release: ``seeds.json`` + per-prompt folders with ``prompt.json`` and
    ``{seed}_0.jpg`` / ``{seed}_1.jpg``; seed 21's edited image is missing."""
    root = tmp / "clip-filtered-dataset"
    for folder, seeds, edit in (("0000001", [11, 12], "add snow"), ("0000002", [21], "make it night")):
        (root / folder).mkdir(parents=True)
        (root / folder / "prompt.json").write_text(json.dumps({"input": "a street", "edit": edit, "output": "x"}))
        for seed in seeds:
            (root / folder / f"{seed}_0.jpg").write_bytes(encode(scene(seed), "JPEG"))
            if seed != 21:
                (root / folder / f"{seed}_1.jpg").write_bytes(encode(255 - scene(seed), "JPEG"))
    (root / "seeds.json").write_text(json.dumps([["0000001", [11, 12]], ["0000002", [21]]]))
    return root, {"samples": 2, "quarantined": {"0000002/21": "missing"}, "instructions": ["add snow"]}


def write_magicbrush(tmp: Path) -> tuple[Path, dict]:
    """``data/train-*.parquet`` and ``data/dev-*.parquet``: image 242679 with two turns (turn 2's
    source is turn 1's target), the mask drawn as a transparent hole (RGBA), image 5 with a
    truncated target PNG."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp / "MagicBrush" / "data"
    root.mkdir(parents=True)
    first, second = scene(1), scene(1).copy()
    second[8:32, 8:24] = (200, 30, 30)
    third = second.copy()  # turn 2 edits turn 1's result
    third[10:30, 36:56] = (30, 200, 30)
    rgba = np.dstack([first, np.full((H, W), 255, np.uint8)])
    rgba[8:32, 8:24, 3] = 0  # the annotator's region, transparent as DALL-E 2's editor wants it
    mask2 = np.dstack([second, np.full((H, W), 255, np.uint8)])
    mask2[10:30, 36:56, 3] = 0

    def row(img_id, turn, src, mask, instruction, tgt_bytes):
        return {"img_id": img_id, "turn_index": turn, "source_img": _image_struct(encode(src)),
                "mask_img": _image_struct(encode(mask)), "instruction": instruction,
                "target_img": _image_struct(tgt_bytes)}

    pq.write_table(pa.Table.from_pylist([
        row("242679", 1, first, rgba, "make the book red", encode(second)),
        row("242679", 2, second, mask2, "turn the banana green", encode(third)),
    ]), root / "train-00000-of-00001-abc.parquet")
    pq.write_table(pa.Table.from_pylist([
        row("5", 1, first, rgba, "add a hat", encode(second)[:200]),
    ]), root / "dev-00000-of-00001-def.parquet")
    return root, {"samples": 2, "quarantined": {"dev-00000-of-00001-def:0": "truncated"},
                  "regions": {1: (slice(8, 32), slice(8, 24)), 2: (slice(10, 30), slice(36, 56))}}


def write_reason_edit(tmp: Path) -> tuple[Path, dict]:
    """``Reason-Edit/1-Left-Right`` (two cases, one without a mask) and
    ``Reason-Edit/6-Reasoning-231115`` (one image, two text lines: cannot be paired)."""
    root = tmp / "Reason-Edit"
    lr, rs = root / "1-Left-Right", root / "6-Reasoning-231115"
    lr.mkdir(parents=True)
    rs.mkdir()
    mask = np.zeros((H, W, 3), np.uint8)
    mask[8:32, 8:24] = 255
    for folder, names in ((lr, ("001", "002")), (rs, ("001",))):
        for name in names:
            (folder / f"{name}.png").write_bytes(encode(scene(int(name))))
            if (folder, name) != (lr, "002"):
                (folder / f"{name}_mask.jpg").write_bytes(encode(mask, "JPEG"))
    (lr / "Left-Right.txt").write_text("Remove the left book CLIP: a desk with a banana\n"
                                       "Replace the right fruit with an apple CLIP: an apple\n")
    (rs / "Reasoning.txt").write_text("Remove what you read CLIP: a desk\nMake the fruit blue CLIP: a blue banana\n")
    return root, {"samples": 1, "quarantined": {"1-Left-Right/002": "missing", "6-Reasoning-231115/001": "count_mismatch"}}
