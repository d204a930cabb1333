"""Perception ("Mark the left cat in red") samples: overlay pixels, skips, keys, determinism."""
from functools import partial

import numpy as np
import pytest
from records import rect_instance

from datagen.perception import PerceptionBuilder, overlay_mask
from datagen.schema import EditSample, ImageRecord, Quarantined, sample_key

H, W = 80, 160


rect = partial(rect_instance, (H, W))  # Instance with an exact rectangular mask (or box only)


def noisy_image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def scene():
    """Two cats (left small, right big), one cup, two identical-size plates stacked vertically
    (ambiguous), and a box-only dog."""
    return ImageRecord("test:p", noisy_image(), [
        rect("c1", "cat", 5, 30, 25, 50),
        rect("c2", "cat", 100, 20, 140, 60),
        rect("cup", "cup", 60, 5, 80, 25),
        rect("p1", "plate", 60, 40, 80, 50),
        rect("p2", "plate", 60, 60, 80, 70),
        rect("d", "dog", 140, 0, 160, 15, mask=False),
    ]).validate()


def test_overlay_blends_inside_and_keeps_outside():
    img = noisy_image(1)
    mask = np.zeros((H, W), bool)
    mask[10:40, 20:90] = True
    mask[50, 5] = True
    out = overlay_mask(img, mask, (255, 0, 0), 0.5)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out[~mask], img[~mask])
    expected = (img[mask].astype(np.float64) + np.array([255.0, 0.0, 0.0])) / 2
    assert np.abs(out[mask].astype(np.float64) - expected).max() <= 0.5
    assert not np.shares_memory(out, img)
    # Full opacity paints the colour; zero opacity changes nothing.
    assert (overlay_mask(img, mask, (0, 255, 0), 1.0)[mask] == (0, 255, 0)).all()
    assert np.array_equal(overlay_mask(img, mask, (0, 255, 0), 0.0), img)
    with pytest.raises(ValueError):
        overlay_mask(img, mask, (0, 0, 0), 1.5)


def test_overlay_equals_per_pixel_formula_for_every_value():
    """The table lookup gives the docstring's formula, computed per pixel in float64, for every
    uint8 value of every channel, on a strided (non-contiguous) view as well."""
    values = np.arange(256, dtype=np.uint8)
    img = np.stack(np.meshgrid(values, values, indexing="ij"), -1)[..., [0, 1, 0]].copy()
    img[..., 2] = values[::-1][None, :]
    mask = np.random.default_rng(3).random(img.shape[:2]) < 0.7
    corner = np.zeros_like(mask)  # a small region away from the edges, with a hole
    corner[200:230, 17:90] = True
    corner[210, 40] = False
    cases = ((img, mask), (img[::3, 1::2], mask[::3, 1::2]), (img, corner), (img, np.zeros_like(mask)))
    for opacity in (0.0, 0.25, 1 / 3, 0.5, 0.7, 1.0):
        for rgb in ((0, 0, 0), (255, 255, 255), (13, 200, 77)):
            for im, m in cases:
                want = im.copy()
                blended = (1.0 - opacity) * im[m].astype(np.float64) + opacity * np.array(rgb, np.float64)
                want[m] = np.floor(blended + 0.5).astype(np.uint8)
                assert np.array_equal(overlay_mask(im, m, rgb, opacity), want), (opacity, rgb)


def test_builder_emits_marks_and_skips_with_reasons():
    rec = scene()
    out = list(PerceptionBuilder(seed=0)(rec))
    samples = {o.target["instance"]: o for o in out if isinstance(o, EditSample)}
    skipped = {o.id: o.reason for o in out if isinstance(o, Quarantined)}
    assert set(samples) == {"c1", "c2", "cup"}
    assert skipped == {"test:p/p1": "ambiguous", "test:p/p2": "ambiguous", "test:p/d": "no_mask"}
    for iid, s in samples.items():
        s.validate()
        inst = next(i for i in rec.instances if i.id == iid)
        assert s.op == "mark" and s.scenario == "perception"
        assert np.array_equal(s.mask, inst.mask) and np.array_equal(s.src, rec.image)
        assert np.array_equal(s.tgt[~inst.mask], rec.image[~inst.mask])
        rgb = np.array(s.target["colour_rgb"], np.float64)
        assert np.abs(s.tgt[inst.mask] - (rec.image[inst.mask] + rgb) / 2).max() <= 0.5
        assert s.target["phrase"] in s.instruction and s.target["colour"] in s.instruction
        assert s.target["box"] == list(inst.box) and s.target["category"] == inst.category
        assert s.key == sample_key(rec.id, iid, "mark", PerceptionBuilder(seed=0).settings())
        assert s.provenance["record"] == rec.id and s.provenance["settings"]["seed"] == 0
        assert "numpy" in s.provenance["versions"]
    cat_phrases = {samples["c1"].target["phrase"], samples["c2"].target["phrase"]}
    assert cat_phrases <= {"the left cat", "the smaller cat", "the right cat", "the bigger cat"}
    assert samples["cup"].target["phrase"] == "the cup"
    # The other unique attribute of each cat is offered as a paraphrase.
    other = {"the left cat": "the smaller cat", "the smaller cat": "the left cat",
             "the right cat": "the bigger cat", "the bigger cat": "the right cat"}
    for iid in ("c1", "c2"):
        assert any(other[samples[iid].target["phrase"]] in p for p in samples[iid].paraphrases)


def test_same_seed_same_samples_other_seed_other_choices():
    rec = scene()
    a = [o for o in PerceptionBuilder(seed=0)(rec) if isinstance(o, EditSample)]
    b = [o for o in PerceptionBuilder(seed=0)(rec) if isinstance(o, EditSample)]
    assert [s.key for s in a] == [s.key for s in b]
    assert [s.instruction for s in a] == [s.instruction for s in b]
    assert all(np.array_equal(x.tgt, y.tgt) for x, y in zip(a, b))
    seen_attrs, seen_colours = set(), set()
    for seed in range(12):
        for s in PerceptionBuilder(seed=seed)(rec):
            if isinstance(s, EditSample) and s.target["instance"] == "c1":
                seen_attrs.add(s.target["attribute"])
                seen_colours.add(s.target["colour"])
    assert seen_attrs == {"location", "size"}
    assert len(seen_colours) >= 3
    keys0 = {s.key for s in a}
    keys1 = {s.key for s in PerceptionBuilder(seed=1)(rec) if isinstance(s, EditSample)}
    assert not keys0 & keys1


def test_mark_colour_avoids_the_objects_own_colour():
    img = np.full((H, W, 3), 90, np.uint8)
    img[30:50, 5:25] = (255, 0, 0)
    img[20:60, 100:140] = (0, 0, 255)
    rec = ImageRecord("test:c", img, [rect("r", "cup", 5, 30, 25, 50), rect("b", "cup", 100, 20, 140, 60)])
    for seed in range(10):
        builder = PerceptionBuilder(colors=(("red", (255, 0, 0)), ("blue", (0, 0, 255))), seed=seed)
        colours = {s.target["instance"]: s.target["colour"] for s in builder(rec)}
        assert colours == {"r": "blue", "b": "red"}


def test_mark_colour_shows_on_the_object_or_the_instance_is_skipped():
    """An orange mark on a yellow coin barely shows (its names differ, its colours do not): such a
    colour is never chosen, and an instance no palette colour shows on is a counted skip."""
    img = np.full((H, W, 3), 90, np.uint8)
    img[30:50, 5:25] = (235, 200, 40)  # yellow
    img[20:60, 100:140] = (250, 160, 10)  # orange
    rec = ImageRecord("test:y", img, [rect("y", "coin", 5, 30, 25, 50), rect("o", "coin", 100, 20, 140, 60)])
    palette = (("orange", (255, 165, 0)), ("yellow", (255, 255, 0)), ("blue", (0, 0, 255)))
    for seed in range(10):
        colours = {s.target["instance"]: s.target["colour"] for s in PerceptionBuilder(colors=palette, seed=seed)(rec)}
        assert colours == {"y": "blue", "o": "blue"}, seed
        for s in PerceptionBuilder(colors=palette, seed=seed)(rec):  # the chosen mark changes the object plainly
            assert np.abs(s.tgt[s.mask].astype(int) - s.src[s.mask]).sum(axis=1).mean() > 100
    out = list(PerceptionBuilder(colors=palette[:2])(rec))
    assert {o.id: o.reason for o in out if isinstance(o, Quarantined)} == {"test:y/y": "mark_invisible",
                                                                          "test:y/o": "mark_invisible"}


def test_tiny_instance_is_skipped():
    rec = ImageRecord("test:t", noisy_image(), [rect("a", "cat", 5, 5, 8, 8), rect("b", "dog", 50, 5, 90, 40)])
    out = list(PerceptionBuilder(min_area=16)(rec))
    reasons = {o.id: o.reason for o in out if isinstance(o, Quarantined)}
    assert reasons == {"test:t/a": "tiny_instance"}
    assert PerceptionBuilder.name == "perception"


# ------------------------------------------------------------------ demo scenes and the CLI

def test_demo_scenes_marks_are_exact_and_named_right():
    from datagen.sources.demo import DemoScenes

    catalog = DemoScenes(30, seed=5)
    builder = PerceptionBuilder(seed=2)
    samples, reasons = [], []
    for rec in catalog:
        for out in builder(rec):
            if isinstance(out, Quarantined):
                reasons.append(out.reason)
                continue
            out.validate()
            inst = next(i for i in rec.instances if i.id == out.target["instance"])
            assert np.array_equal(out.mask, inst.mask)
            assert np.array_equal(out.tgt[~inst.mask], rec.image[~inst.mask])
            assert out.target["phrase"] in out.instruction
            if out.target["attribute"] == "mirror":
                assert inst.attributes["in_mirror"] == (out.target["value"] == "in_mirror")
            if out.target["attribute"] == "color" and "color" in inst.attributes:
                assert out.target["value"] == inst.attributes["color"]
            samples.append(out)
    assert len(samples) >= 60 and set(reasons) <= {"ambiguous"}
    assert len({s.key for s in samples}) == len(samples)
    assert {s.target["attribute"] for s in samples} >= {"location", "size", "mirror", "count"}


def test_cli_writes_shards_and_manifest_and_resumes(tmp_path):
    from datagen.cli import main
    from datagen.shards import load_manifest, read_samples, verify_manifest

    data, manifests = tmp_path / "data", tmp_path / "manifests"
    argv = ["perception", "--source", "demo:8:3", "--out", str(data), "--name", "perc-test",
            "--manifests", str(manifests), "--seed", "4", "--colors", "red,blue", "--no-progress", "--maxcount", "5"]
    assert main(argv) == 0
    manifest_path = manifests / "perc-test.json"
    manifest = load_manifest(manifest_path)
    assert verify_manifest(manifest_path) == []
    samples = list(read_samples(manifest_path))
    assert len(samples) == manifest["nsamples"] >= 10 and len(manifest["shardlist"]) >= 2
    assert manifest["counts"]["op"] == {"mark": len(samples)}
    assert manifest["settings"] == PerceptionBuilder(seed=4, colors=(("red", (255, 0, 0)), ("blue", (0, 0, 255)))).settings()
    for s in samples:
        assert s.scenario == "perception" and s.target["colour"] in ("red", "blue")
        # The overlay survives the PNG round trip exactly.
        rgb = np.array(s.target["colour_rgb"], np.float64)
        assert np.array_equal(s.tgt[~s.mask], s.src[~s.mask])
        assert np.abs(s.tgt[s.mask] - (s.src[s.mask] + rgb) / 2).max() <= 0.5
    # A rerun (and a rerun with more scenes) writes every sample exactly once.
    assert main(argv) == 0
    assert main([*argv[:2], "demo:10:3", *argv[3:]]) == 0
    keys = [s.key for s in read_samples(manifest_path)]
    assert len(keys) == len(set(keys)) > len(samples)
    assert main(["perception", "--source", "nowhere.txt", "--out", str(data)]) == 2
