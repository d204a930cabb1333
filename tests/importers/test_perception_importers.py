"""RefCOCO, gRefCOCO, ReasonSeg and COCO-Stuff fixtures in their released formats -> perception
shards that webdataset, wids and the trainer read, with broken records quarantined by reason."""
from __future__ import annotations

import numpy as np
import pytest

from datagen.perception import overlay_mask
from tests.importers import fixtures
from tests.importers.helpers import import_job, quarantine_reasons, read_three_ways, run_import


def _box(y0, y1, x0, x1) -> np.ndarray:
    mask = np.zeros((fixtures.H, fixtures.W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _assert_overlay(sample, mask: np.ndarray) -> None:
    """The target is the source with exactly ``mask`` overlaid in the named colour."""
    assert (sample["mask"] == mask).all()
    rgb = sample["meta"]["target"]["colour_rgb"]
    assert (sample["tgt"] == overlay_mask(sample["src"], mask, rgb, 0.5)).all()
    assert sample["meta"]["target"]["colour"] in sample["meta"]["instruction"]


def test_refcoco_sentences_become_marks_with_splits_and_quarantines(tmp_path):
    root, images, expected = fixtures.write_refcoco(tmp_path)
    config = import_job("refcoco", root, tmp_path, images=images)
    result = run_import(config)
    samples = read_three_ways(result.manifest)
    assert len(samples) == expected["samples"] == result.stats.samples_written
    assert quarantine_reasons(config) == expected["quarantined"]
    by_sentence = {s["meta"]["provenance"]["ids"]["sent_id"]: s for s in samples}
    for sample in samples:
        meta = sample["meta"]
        assert meta["scenario"] == "perception" and meta["op"] == "mark"
        assert meta["target"]["expression"] in meta["instruction"]  # the annotator's words, verbatim
        assert meta["provenance"]["dataset"] == "refcoco"
    assert sorted(s["meta"]["target"]["expression"] for s in samples) == sorted(expected["expressions"])
    assert {s["meta"]["provenance"]["split"] for s in samples} == {"train", "testA", "val"}
    _assert_overlay(by_sentence[100], _box(8, 32, 8, 24))
    _assert_overlay(by_sentence[102], _box(10, 30, 36, 56))
    _assert_overlay(by_sentence[103], _box(8, 32, 8, 24))  # RLE annotation
    assert by_sentence[100]["meta"]["provenance"]["ids"] == {"ref_id": 0, "image_id": 1, "ann_ids": [10], "sent_id": 100}


def test_refcoco_split_option_keeps_one_split(tmp_path):
    root, images, _ = fixtures.write_refcoco(tmp_path)
    config = import_job("refcoco", root, tmp_path, images=images, split="testA")
    samples = read_three_ways(run_import(config).manifest)
    assert [s["meta"]["target"]["expression"] for s in samples] == ["the yellow banana"]


def test_refcoco_pickle_asking_for_a_global_is_refused(tmp_path):
    import pickle

    from datagen.importers import open_importer
    from datagen.sources.base import CatalogError

    root, images, _ = fixtures.write_refcoco(tmp_path)
    with open(root / "refs(unc).p", "wb") as f:
        pickle.dump([{"ref_id": 0, "x": np.int64(3)}], f, protocol=2)  # np.int64 needs a global
    with pytest.raises(CatalogError, match="refuses global"):
        open_importer("refcoco", str(root), images=str(images))


def test_grefcoco_multi_target_union_and_no_target_keep(tmp_path):
    root, images, expected = fixtures.write_grefcoco(tmp_path)
    config = import_job("grefcoco", root, tmp_path, images=images)
    samples = read_three_ways(run_import(config).manifest)
    assert len(samples) == expected["samples"]
    assert quarantine_reasons(config) == expected["quarantined"]
    by_text = {s["meta"]["target"]["expression"]: s for s in samples}
    _assert_overlay(by_text["the blue book"], _box(8, 32, 8, 24))
    both = by_text["both things"]
    _assert_overlay(both, _box(8, 32, 8, 24) | _box(10, 30, 36, 56))
    assert both["meta"]["target"]["targets"] == 2 and both["meta"]["provenance"]["ids"]["ann_ids"] == [10, 11]
    absent = by_text["the red car"]
    assert absent["meta"]["op"] == "keep" and absent["meta"]["target"]["no_target"] is True
    assert not absent["mask"].any() and (absent["tgt"] == absent["src"]).all()
    assert "the red car" in absent["meta"]["instruction"]
    assert absent["meta"]["target"]["colour"] != "red"  # never "Mark the red car in red"


def test_reasonseg_queries_polygons_ignore_and_quarantines(tmp_path):
    root, expected = fixtures.write_reasonseg(tmp_path)
    config = import_job("reasonseg", root, tmp_path)
    samples = read_three_ways(run_import(config).manifest)
    assert len(samples) == expected["samples"]
    assert quarantine_reasons(config) == expected["quarantined"]
    by_text = {s["meta"]["target"]["expression"]: s for s in samples}
    question = by_text["What could a monkey peel and eat in this picture?"]
    assert question["meta"]["instruction"].startswith("What could a monkey peel and eat in this picture? ")
    assert question["meta"]["target"]["sentence"] is True
    # The rasterised target box minus the rasterised ignore strip: the strip stays unmarked.
    from datagen.sources.annotations import polygons_to_mask

    hw = (fixtures.H, fixtures.W)
    target = polygons_to_mask([[36, 10, 56, 10, 56, 30, 36, 30]], hw)
    ignore = polygons_to_mask([[36, 10, 40, 10, 40, 30, 36, 30]], hw)
    _assert_overlay(question, target & ~ignore)
    assert question["meta"]["target"]["ignored_pixels"] == int((target & ignore).sum()) > 0
    phrase = by_text["the thing to read"]
    assert phrase["meta"]["target"]["sentence"] is False and "the thing to read" in phrase["meta"]["instruction"]
    assert by_text["the blue cover"]["meta"]["provenance"]["split"] == "train"


def test_cocostuff_label_maps_mark_stuff_by_readable_name(tmp_path):
    maps, images, expected = fixtures.write_cocostuff_maps(tmp_path)
    config = import_job("cocostuff", maps, tmp_path, images=images)
    samples = read_three_ways(run_import(config).manifest)
    assert quarantine_reasons(config) == expected["quarantined"]
    assert sorted(s["meta"]["target"]["expression"] for s in samples) == sorted(expected["expressions"])
    labels = expected["labels"]
    for sample in samples:
        class_id = sample["meta"]["target"]["class_id"]
        _assert_overlay(sample, labels == class_id - 1)
        assert sample["meta"]["target"]["expression"] in sample["meta"]["instruction"]


def test_cocostuff_things_option_adds_the_person(tmp_path):
    maps, images, _ = fixtures.write_cocostuff_maps(tmp_path)
    config = import_job("cocostuff", maps, tmp_path, images=images, things=True)
    samples = read_three_ways(run_import(config).manifest)
    assert "the person" in {s["meta"]["target"]["expression"] for s in samples}


def test_cocostuff_stuff_json_with_rle(tmp_path):
    path, images, expected = fixtures.write_cocostuff_json(tmp_path)
    config = import_job("cocostuff", path, tmp_path, images=images)
    samples = read_three_ways(run_import(config).manifest)
    assert quarantine_reasons(config) == expected["quarantined"]
    assert [s["meta"]["target"]["expression"] for s in samples] == expected["expressions"]
    _assert_overlay(samples[0], _box(0, fixtures.H // 2, 0, fixtures.W))
