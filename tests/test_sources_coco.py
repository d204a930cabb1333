"""COCO catalog: masks decoded exactly from polygons and RLE; every broken input is quarantined
(record) or dropped (instance) with its reason, and nothing raises out of ``load``."""
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from datagen.schema import ImageRecord, Quarantined
from datagen.sources import CatalogError, dropped_instance_reasons, open_catalog
from datagen.sources.coco import CocoCatalog

H, W = 48, 64


def circle(cx, cy, r, hw=(H, W)):
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def uncompressed_rle(mask):
    """COCO's uncompressed RLE written from scratch: column-major runs, starting with zeros."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def compressed_rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def save_png(path, hw=(H, W), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(path)


def ann(aid, image_id, cat, **kw):
    return {"id": aid, "image_id": image_id, "category_id": cat, "iscrowd": 0, **kw}


def write_coco_json(folder, images, annotations, categories=({"id": 1, "name": "cat"}, {"id": 2, "name": "cup"})):
    path = folder / "instances_test.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": list(categories)}))
    return path


def image_entry(iid, name, hw=(H, W)):
    return {"id": iid, "file_name": name, "height": hw[0], "width": hw[1]}


@pytest.fixture
def good(tmp_path):
    save_png(tmp_path / "a.png")
    disk = circle(40, 24, 9)
    rect_poly = [10, 10, 20, 10, 20, 30, 10, 30]  # covers columns 10-19, rows 10-29
    anns = [
        ann(1, 1, 1, bbox=[10, 10, 10, 20], segmentation=[rect_poly]),
        ann(2, 1, 2, bbox=[31, 15, 19, 19], segmentation=uncompressed_rle(disk)),
        ann(3, 1, 1, bbox=[30, 2, 5, 4], segmentation=compressed_rle(circle(32, 4, 2))),
        ann(4, 1, 2, bbox=[50, 30, 10, 12], segmentation=[]),  # box only
        ann(5, 1, 1, bbox=[0, 0, 64, 48], segmentation=uncompressed_rle(np.ones((H, W), bool)), iscrowd=1),
        {**ann(6, 1, 1, bbox=[1, 1, 3, 3]), "attributes": {"in_mirror": True, "color": "red"}},
    ]
    path = write_coco_json(tmp_path, [image_entry(1, "a.png")], anns)
    return path, disk


def test_masks_decode_exactly(good):
    path, disk = good
    cat = open_catalog(path)
    assert isinstance(cat, CocoCatalog) and cat.name == "test"
    assert cat.ids() == ["coco:test:1"] and len(cat) == 1
    rec = cat.load("coco:test:1")
    assert isinstance(rec, ImageRecord) and rec.image.shape == (H, W, 3)
    by_id = {i.id: i for i in rec.instances}
    assert set(by_id) == {"1", "2", "3", "4", "6"}  # the crowd annotation is skipped
    assert rec.meta["skipped_crowd"] == 1
    assert [(d["id"], d["reason"]) for d in rec.meta["dropped_instances"]] == [("5", "crowd")]
    expected_rect = np.zeros((H, W), bool)
    expected_rect[10:30, 10:20] = True
    assert np.array_equal(by_id["1"].mask, expected_rect)
    assert by_id["1"].category == "cat" and by_id["1"].box == (10.0, 10.0, 20.0, 30.0)
    assert np.array_equal(by_id["2"].mask, disk) and by_id["2"].category == "cup"
    assert np.array_equal(by_id["3"].mask, circle(32, 4, 2))
    assert by_id["4"].mask is None and by_id["4"].box == (50.0, 30.0, 60.0, 42.0)
    assert by_id["6"].attributes == {"in_mirror": True, "color": "red"}


def test_polygon_circle_matches_its_disk(tmp_path):
    save_png(tmp_path / "a.png")
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ring = np.stack([32 + 15 * np.cos(angles), 24 + 15 * np.sin(angles)], 1).reshape(-1).tolist()
    path = write_coco_json(tmp_path, [image_entry(7, "a.png")], [ann(1, 7, 1, bbox=[17, 9, 30, 30], segmentation=[ring])])
    mask = open_catalog(path).load("coco:test:7").instances[0].mask
    disk = circle(31.5, 23.5, 15)  # pixel centres sit half a pixel in from polygon coordinates
    iou = (mask & disk).sum() / (mask | disk).sum()
    assert iou > 0.95


def test_broken_annotations_are_dropped_with_reasons(tmp_path):
    save_png(tmp_path / "a.png")
    full = np.zeros((H, W), bool)
    full[5:9, 5:9] = True
    short = uncompressed_rle(full)
    short["counts"] = short["counts"][:-1]  # runs stop before the end of the image
    anns = [
        ann(1, 1, 1, bbox=[10, 10, 10, 10], segmentation=[[10, 10, 20, 10, 20, 20, 10, 20]]),  # kept
        ann(2, 1, 1, bbox=[60, 40, 30, 30]),                       # far outside: bad_box
        ann(3, 1, 1, bbox=[5, 5, 0, 4]),                           # no area: bad_box
        ann(4, 1, 1, bbox=[5, 5, 4, 4], segmentation=[[]]),        # empty_polygon
        ann(5, 1, 1, bbox=[5, 5, 4, 4], segmentation=[[1, 1, 3, 3]]),          # 2 points
        ann(6, 1, 1, bbox=[5, 5, 4, 4], segmentation=[[70, 70, 80, 70, 80, 80]]),  # off-image
        ann(7, 1, 99, bbox=[5, 5, 4, 4]),                          # unknown_category
        ann(8, 1, 1, bbox=[5, 5, 4, 4], segmentation=uncompressed_rle(np.ones((10, 10), bool))),
        ann(9, 1, 1, bbox=[5, 5, 4, 4], segmentation=short),       # runs do not cover h*w
        ann(10, 1, 1, bbox=[5, 5, 4, 4], segmentation={"size": [H, W], "counts": "\x7f\x7f garbage"}),
        ann(11, 1, 1, bbox=[-0.4, 0, 64.6, 48]),                   # rounding overshoot: clipped, kept
        ann(12, 1, 1, bbox=[5, 5, 4, 4], segmentation=[[5, 5, 1e9, 5, 5, 9]]),  # absurd vertex
        ann(13, 1, [1], bbox=[5, 5, 4, 4]),                        # category id of the wrong type
        ann(14, 1, 1, bbox="5 5 4 4"),                             # bbox of the wrong type
    ]
    path = write_coco_json(tmp_path, [image_entry(1, "a.png")], anns)
    rec = open_catalog(path).load("coco:test:1")
    assert isinstance(rec, ImageRecord)
    assert [i.id for i in rec.instances] == ["1", "11"]
    assert rec.instances[1].box == (0.0, 0.0, 64.0, 48.0)
    reasons = {d["id"]: d["reason"] for d in rec.meta["dropped_instances"]}
    assert reasons == {
        "2": "bad_box", "3": "bad_box", "4": "empty_polygon", "5": "empty_polygon", "6": "empty_polygon",
        "7": "unknown_category", "8": "bad_mask", "9": "bad_mask", "10": "bad_mask",
        "12": "bad_polygon", "13": "unknown_category", "14": "bad_box",
    }
    assert sorted(dropped_instance_reasons(rec)) == sorted(reasons.values())


def _bad_files(folder):
    save_png(folder / "ok.png")
    (folder / "garbage.png").write_bytes(b"\x89PNG but not really")
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)).save(data, "JPEG")
    (folder / "cut.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    save_png(folder / "big.png", hw=(200, 300))
    save_png(folder / "wrongsize.png", hw=(40, 40))
    data = io.BytesIO()
    Image.fromarray(np.zeros((H, W), np.float32), "F").save(data, "TIFF")
    (folder / "float.tif").write_bytes(data.getvalue())
    return [
        image_entry(1, "ok.png"), image_entry(2, "missing.png"), image_entry(3, "garbage.png"),
        image_entry(4, "cut.jpg"), image_entry(5, "big.png", (200, 300)), image_entry(6, "wrongsize.png"),
        image_entry(7, "float.tif"), {"id": 8, "height": H, "width": W},
    ]


def test_bad_images_are_quarantined_with_reasons(tmp_path):
    images = _bad_files(tmp_path)
    anns = [ann(i, i, 1, bbox=[1, 1, 5, 5]) for i in range(1, 9)]
    anns += [ann(99, 12345, 1, bbox=[1, 1, 5, 5]), ann(100, [1], 1, bbox=[1, 1, 5, 5])]
    images.append({"id": [9], "file_name": "ok.png"})
    catalog = open_catalog(write_coco_json(tmp_path, images, anns), max_pixels=50_000)
    results = {r.id: r for r in catalog}  # iterating must not raise
    assert isinstance(results["coco:test:1"], ImageRecord)
    reasons = {rid: r.reason for rid, r in results.items() if isinstance(r, Quarantined)}
    assert reasons == {
        "coco:test:2": "missing", "coco:test:3": "undecodable", "coco:test:4": "truncated",
        "coco:test:5": "oversized", "coco:test:6": "size_mismatch", "coco:test:7": "bad_mode",
        "coco:test:8": "bad_record", "coco:test:images[8]": "bad_record",
    }
    assert all(q.detail for q in results.values() if isinstance(q, Quarantined))
    assert [p["reason"] for p in catalog.problems] == ["orphan_annotation", "orphan_annotation"]
    with pytest.raises(KeyError):
        catalog.load("coco:test:404")


def test_exif_rotated_image_keeps_its_annotations(tmp_path):
    stored = np.zeros((40, 60, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif.tobytes())
    # Annotators see the displayed image: 40 wide, 60 high.
    path = write_coco_json(tmp_path, [image_entry(1, "r.jpg", hw=(60, 40))],
                           [ann(1, 1, 1, bbox=[5, 40, 10, 15], segmentation=[[5, 40, 15, 40, 15, 55, 5, 55]])])
    rec = open_catalog(path).load("coco:test:1")
    assert rec.image.shape == (60, 40, 3) and rec.instances[0].mask[40:55, 5:15].all()


def test_image_folder_resolution(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "elsewhere").mkdir()
    save_png(tmp_path / "images" / "sub.png")
    save_png(tmp_path / "elsewhere" / "x.png")
    path = write_coco_json(tmp_path, [image_entry(1, "sub.png")], [])
    assert isinstance(open_catalog(path).load("coco:test:1"), ImageRecord)  # found in images/
    path = write_coco_json(tmp_path, [image_entry(1, "x.png")], [])
    assert open_catalog(path).load("coco:test:1").reason == "missing"
    assert isinstance(open_catalog(path, images=tmp_path / "elsewhere").load("coco:test:1"), ImageRecord)


def test_unopenable_specs_raise_catalog_error(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    for spec in [tmp_path / "nope.json", tmp_path / "broken.json", "demo:x", "demo:3:1:2", tmp_path, "what"]:
        with pytest.raises(CatalogError):
            open_catalog(spec)
