"""Post-edit checks on demo ground truth: correct edits pass, planted wrong edits are caught by a score.

The demo scenes carry exact instance masks, so the understanding builder with the ``annotation``
masker produces edits whose truth is known. From those we plant the bugs a pipeline really
makes: the edit applied to another instance of the same category, a no-op edit, an object added
on the wrong side, a recolour to the wrong colour, an object left in place.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from datagen.postedit import FILTER_VERSION, DinoScorer, FilterConfig, PostEditChecker, outside_ssim
from datagen.quality import QualityChecker, dilate
from datagen.recolor import recolor
from datagen.schema import EditSample, Quarantined
from datagen.sources.demo import DemoScenes
from datagen.understanding import build_understanding
from tests.tiny_quality_models import make_tiny_clip, make_tiny_dinov2, tiny_detector_dir
from tests.tiny_models import torch_threads


@pytest.fixture(scope="module")
def demo():
    """(builder, records, samples by op) from the first demo scenes with annotation masks."""
    builder = build_understanding(masker="annotation", ops=["remove", "add"])
    records, samples = {}, {"remove": [], "add": []}
    for record in DemoScenes(4, 0):
        records[record.id] = record
        for s in builder(record):
            if isinstance(s, EditSample):
                samples[s.op].append(s)
    assert samples["remove"] and samples["add"]
    return builder, records, samples


def _peer(record, sample):
    """Another instance of the sample's category in the same record (the wrong one), or None."""
    t = sample.target
    return next((i for i in record.instances if i.category == t["category"] and i.id != t["instance"]), None)


def test_correct_edits_pass_every_check(demo):
    _builder, _records, samples = demo
    for s in samples["remove"] + samples["add"]:
        post = s.quality["post_edit"]
        assert post["version"] == FILTER_VERSION
        assert post["failed"] == {}, (s.instruction, post["failed"], s.quality["scores"])
        assert {"ssim", "changed", "location"} <= set(post["passed"])
        assert s.quality["scores"]["location_iou"] > 0.5
    assert all("add_side" in s.quality["post_edit"]["passed"] for s in samples["add"])


def test_wrong_instance_edit_is_caught(demo):
    """"Remove the left cat" but the right cat was removed (mask and pixels of the wrong one)."""
    builder, records, samples = demo
    checker = PostEditChecker()
    caught = 0
    for s in samples["remove"]:
        record = records[s.provenance["record"]]
        peer = _peer(record, s)
        if peer is None:
            continue
        hole = dilate(peer.mask, 6)
        wrong_tgt = builder.inpainter.inpaint(record.image, hole, seed=0)
        # The builder's bug took the wrong instance for the mask too, or only for the pixels.
        for mask in (hole, s.mask):
            report = checker.check(dataclasses.replace(s, tgt=wrong_tgt, mask=mask, quality={}))
            assert "location" in report.failed, (s.instruction, report.scores)
            # Caught by the threshold, which the right instance's edit clears.
            assert report.scores["location_iou"] < checker.config.min_location_iou < s.quality["scores"]["location_iou"]
        caught += 1
    assert caught >= 2


def test_no_op_edit_is_caught(demo):
    _builder, _records, samples = demo
    checker = PostEditChecker()
    for s in samples["remove"][:5] + samples["add"][:5]:
        report = checker.check(dataclasses.replace(s, tgt=s.src.copy(), quality={}))
        assert "changed" in report.failed and report.scores["inside_change"] == 0.0
        assert s.quality["scores"]["inside_change"] > FilterConfig().min_changed


def test_add_on_the_wrong_side_is_caught(demo):
    _builder, _records, samples = demo
    flip = {"to the right of": "to the left of", "to the left of": "to the right of", "above": "below", "below": "above"}
    for s in samples["add"]:
        target = {**s.target, "value": flip[s.target["value"]]}
        report = PostEditChecker().check(dataclasses.replace(s, target=target, quality={}))
        assert "add_side" in report.failed
        assert report.scores["add_side_offset"] == pytest.approx(-s.quality["scores"]["add_side_offset"], abs=1e-4)


def test_background_damage_lowers_ssim(demo):
    _builder, _records, samples = demo
    s = samples["remove"][0]
    blurred = s.tgt.copy()
    import cv2

    soft = cv2.GaussianBlur(s.tgt, (0, 0), 2.0)
    blurred[~s.mask] = soft[~s.mask]
    assert outside_ssim(s.src, s.tgt, s.mask) == pytest.approx(1.0)
    assert outside_ssim(s.src, blurred, s.mask) < FilterConfig().min_ssim


def test_recolor_check_reads_the_named_colour(demo):
    _builder, records, _samples = demo
    record = next(iter(records.values()))
    inst = record.instances[0]
    tgt = recolor(record.image, inst.mask, "blue")
    base = EditSample(key="k", src=record.image, tgt=tgt, mask=dilate(inst.mask, 2), instruction="Make it blue",
                      scenario="reasoning", op="recolor",
                      target={"category": inst.category, "box": list(inst.box), "new_color": "blue"})
    good = PostEditChecker().check(base)
    wrong = PostEditChecker().check(dataclasses.replace(base, target={**base.target, "new_color": "red"}))
    assert "recolor" in good.passed and good.scores["recolor_share"] > 0.5
    assert "recolor" in wrong.failed and wrong.scores["recolor_share"] < 0.1


def test_enforce_quarantines_and_settings_carry_the_version(demo):
    _builder, _records, samples = demo
    s = dataclasses.replace(samples["remove"][0], tgt=samples["remove"][0].src.copy())
    checker = QualityChecker(enforce_post_edit=True)
    out = checker.attach_post_edit(s, skip_id="r/1/remove", source="demo")
    assert isinstance(out, Quarantined) and out.reason == "quality:post_changed" and out.id == "r/1/remove"
    settings = QualityChecker(post_filter={"min_ssim": 0.5}).settings()["post_edit"]
    assert settings["filter"]["version"] == FILTER_VERSION and settings["filter"]["min_ssim"] == 0.5


def test_quality_options_fail_in_one_sentence():
    from datagen.backends import BackendUnavailable

    with pytest.raises(ValueError, match=r"unknown thresholds \['min_sim'\]"):
        QualityChecker(post_filter={"min_sim": 0.5})
    with pytest.raises(BackendUnavailable, match=r"pass quality\.detector_model=PATH"):
        QualityChecker(detector="owlv2")
    with pytest.raises(ValueError, match="needs quality.detector=NAME"):
        QualityChecker(detector_model="/w/owl")


def test_manifest_records_the_filter_config(tmp_path):
    import json

    from datagen.jobs import JobConfig, run_job

    config = JobConfig("understanding", source="demo:2", out=str(tmp_path / "d"), name="pe",
                       manifest_dir=str(tmp_path / "m"), builder_options={"quality": {"post_filter": {"min_ssim": 0.8}}})
    result = run_job(config)
    manifest = json.loads(result.manifest.read_text())
    filt = manifest["settings"]["quality"]["post_edit"]["filter"]
    assert filt == {**FilterConfig().to_dict(), "min_ssim": 0.8}


class BlobDetector:
    """A classical colour detector implementing the ``Detector`` protocol: each category is a
    colour, each connected blob of that colour a detection scored by its purity. Deterministic, so
    the detector-backed checks can be judged against a known answer."""

    name = "blob"

    def __init__(self, colours: dict):
        self.colours = colours

    def settings(self) -> dict:
        return {"name": self.name}

    def detect(self, images, prompts):
        import cv2

        from datagen.detection import Detections

        out = []
        for image in images:
            boxes, scores, cats = [], [], []
            for p in prompts:
                near = np.abs(image.astype(int) - self.colours[p]).max(axis=2) < 30
                n, _labels, stats, _ = cv2.connectedComponentsWithStats(near.astype(np.uint8))
                for x, y, w, h, area in stats[1:]:
                    if area >= 20:
                        boxes.append([x, y, x + w, y + h])
                        scores.append(area / (w * h))
                        cats.append(p)
            order = np.argsort(scores)[::-1]
            out.append(Detections(np.asarray(boxes, float).reshape(-1, 4)[order], np.asarray(scores, float)[order],
                                  [cats[i] for i in order]))
        return out


def _blob_scene():
    src = np.full((80, 120, 3), 200, np.uint8)
    src[20:50, 10:40] = (220, 30, 30)  # the "apple" on the left
    return src


def test_detector_checks_on_known_answers():
    detector = BlobDetector({"apple": (220, 30, 30), "ball": (30, 30, 220)})
    checker = PostEditChecker(detector=detector)
    src = _blob_scene()
    mask = np.zeros(src.shape[:2], bool)
    mask[16:54, 6:44] = True
    box = [10.0, 20.0, 40.0, 50.0]
    removed = src.copy()
    removed[mask] = 200
    remove = EditSample(key="k", src=src, tgt=removed, mask=mask, instruction="Remove the apple", scenario="understanding",
                        op="remove", target={"category": "apple", "box": box})
    assert "det_removed" in checker.check(remove).passed
    assert "det_removed" in checker.check(dataclasses.replace(remove, tgt=src.copy())).failed
    replaced = removed.copy()
    replaced[22:48, 12:38] = (30, 30, 220)
    replace = dataclasses.replace(remove, tgt=replaced, op="replace", target={**remove.target, "new_category": "ball"})
    ok = checker.check(replace)
    assert "det_replaced" in ok.passed and ok.scores["det_new"] > 0.9 and ok.scores["det_old"] == 0.0
    assert "det_replaced" in checker.check(dataclasses.replace(replace, tgt=removed)).failed
    added = src.copy()
    added[20:50, 70:100] = (220, 30, 30)
    add = EditSample(key="k", src=src, tgt=added, mask=dilate(np.pad(np.ones((30, 30), bool), ((20, 30), (70, 20))), 3),
                     instruction="Add an apple to the right of the apple", scenario="understanding", op="add",
                     target={"category": "apple", "box": [70.0, 20.0, 100.0, 50.0], "value": "to the right of",
                             "anchor": {"box": box}})
    good = checker.check(add)
    assert "det_added" in good.passed and good.scores["det_count_added"] == 1
    wrong_side = checker.check(dataclasses.replace(add, target={**add.target, "value": "to the left of"}))
    assert "det_added" in wrong_side.failed and "add_side" in wrong_side.failed


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("qmodels")
    return {"clip": make_tiny_clip(root / "clip"), "dino": make_tiny_dinov2(root / "dino"),
            "owlv2": tiny_detector_dir("owlv2")}


def test_learned_scores_through_local_weights(demo, tiny_weights):
    """CLIP, DINOv2 and OWLv2 from local folders, built from the options a user passes; the verdicts
    follow the recorded scores."""
    _builder, _records, samples = demo
    s = samples["remove"][0]
    with torch_threads(1):
        checker = QualityChecker(clip=str(tiny_weights["clip"]), dino=str(tiny_weights["dino"]), detector="owlv2",
                                 detector_model=str(tiny_weights["owlv2"]))
        report = checker.post_edit.check(dataclasses.replace(s, quality={}))
        scores = report.scores
        assert {"clip_direction", "clip_image", "dino_outside", "det_before", "det_after"} <= set(scores)
        assert -1 <= scores["clip_direction"] <= 1
        strict = dataclasses.replace(checker.post_edit.config, min_clip_image=scores["clip_image"] + 1e-3,
                                     min_dino_outside=scores["dino_outside"] - 1e-3)
        again = PostEditChecker(strict, clip=checker.clip, dino=checker.post_edit.dino).check(dataclasses.replace(s, quality={}))
        assert "clip_image" in again.failed and "dino" in again.passed
        dino = DinoScorer(str(tiny_weights["dino"]), device="cpu")
        assert dino.outside_similarity(s.src, s.tgt, dilate(s.mask, 4)) == pytest.approx(1.0, abs=1e-5)
        shifted = np.roll(s.tgt, 7, axis=1)
        assert dino.outside_similarity(s.src, shifted, dilate(s.mask, 4)) < 0.9999
    assert checker.settings()["post_edit"]["detector"] == "owlv2"


def test_ssim_map_matches_skimage():
    from skimage.metrics import structural_similarity

    from datagen.postedit import ssim_map

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    _, expected = structural_similarity(a, b, win_size=7, data_range=255, full=True)
    np.testing.assert_allclose(ssim_map(a, b)[3:-3, 3:-3], expected[3:-3, 3:-3], atol=2e-4)
