"""Folder + annotations.json / .jsonl catalog, and ``open_catalog``'s spec forms."""
import json

import numpy as np
import pytest
from PIL import Image

from datagen.schema import ImageRecord, Quarantined
from datagen.sources import open_catalog
from datagen.sources.coco import CocoCatalog
from datagen.sources.demo import DemoScenes
from datagen.sources.folder import FolderCatalog


def save_png(path, hw=(40, 50)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*hw, 3), 90, np.uint8)).save(path)


def test_json_schema_with_every_shape_form(tmp_path):
    save_png(tmp_path / "room" / "a.png")
    mask = np.zeros((40, 50), bool)
    mask[5:15, 30:45] = True
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    doc = {
        "categories": ["cat", "cup"],
        "images": [{"file": "room/a.png", "instances": [
            {"category": "cat", "box": [1, 2, 11, 22]},
            {"category": "cat", "polygon": [[20, 20], [30, 20], [30, 30], [20, 30]], "in_mirror": True},
            {"category": "cup", "mask": "m.png", "attributes": {"color": "red"}},
            {"category": "cup", "polygons": [[0, 30, 5, 30, 5, 35, 0, 35], [40, 30, 45, 30, 45, 35, 40, 35]],
             "id": "two-parts"},
            {"category": "dog", "box": [1, 1, 5, 5]},          # not in the category list
            {"category": "cat", "box": [10, 10, 90, 20]},      # outside the 50 px wide image
            {"category": "cat", "polygon": []},                # empty polygon
            {"category": "cat", "polygons": 5},                # a shape no check anticipated
        ]}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    catalog = open_catalog(tmp_path)
    assert isinstance(catalog, FolderCatalog)
    assert catalog.ids() == [f"folder:{tmp_path.name}:room/a"]
    rec = catalog.load(catalog.ids()[0])
    assert isinstance(rec, ImageRecord)
    by_id = {i.id: i for i in rec.instances}
    assert list(by_id) == ["0", "1", "2", "two-parts"]
    assert by_id["0"].mask is None and by_id["0"].box == (1.0, 2.0, 11.0, 22.0)
    assert by_id["1"].mask[20:30, 20:30].all() and by_id["1"].mask.sum() == 100
    assert by_id["1"].attributes == {"in_mirror": True} and by_id["1"].box == (20.0, 20.0, 30.0, 30.0)
    assert np.array_equal(by_id["2"].mask, mask) and by_id["2"].attributes == {"color": "red"}
    assert by_id["two-parts"].mask.sum() == 50
    assert {d["id"]: d["reason"] for d in rec.meta["dropped_instances"]} == {
        "4": "unknown_category", "5": "bad_box", "6": "empty_polygon", "7": "bad_annotation"}


def test_jsonl_bad_lines_are_counted_records(tmp_path):
    save_png(tmp_path / "a.png")
    lines = [
        json.dumps({"file": "a.png", "id": "first", "instances": [{"category": "cat", "box": [0, 0, 5, 5]}]}),
        "# a comment",
        "{broken json",
        json.dumps({"file": "gone.png"}),
        json.dumps({"instances": []}),
        json.dumps(["not", "an", "object"]),
    ]
    (tmp_path / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    catalog = open_catalog(tmp_path / "annotations.jsonl")
    assert len(catalog) == 5
    results = list(catalog)
    assert isinstance(results[0], ImageRecord) and results[0].id.endswith(":first")
    assert [r.reason for r in results[1:]] == ["bad_annotation", "missing", "bad_record", "bad_annotation"]
    assert all(isinstance(r, Quarantined) for r in results[1:])


def test_ids_are_stable_and_unique(tmp_path):
    save_png(tmp_path / "a.png")
    entries = [{"file": "a.png"}, {"file": "a.png"}, {"file": "a.png", "id": 3}]
    (tmp_path / "annotations.json").write_text(json.dumps(entries))
    first, second = open_catalog(tmp_path).ids(), open_catalog(tmp_path).ids()
    assert first == second and len(set(first)) == 3


def test_spec_forms(tmp_path):
    demo = open_catalog("demo:3")
    assert isinstance(demo, DemoScenes) and len(demo) == 3 and demo.ids()[0] == "demo:s0:00000"
    assert open_catalog("demo:2:7").ids() == ["demo:s7:00000", "demo:s7:00001"]
    save_png(tmp_path / "images" / "x.png")
    doc = {"images": [{"id": 1, "file_name": "x.png", "width": 50, "height": 40}], "annotations": [],
           "categories": []}
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    assert isinstance(open_catalog(tmp_path), CocoCatalog)  # a folder as write_coco leaves it
    assert isinstance(open_catalog(tmp_path / "instances.json"), CocoCatalog)
    with pytest.raises(ValueError):
        open_catalog("demo:-1")
