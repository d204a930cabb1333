"""Reasoning builder: classical edits on demo scenes with ground truth, the ``sd`` editor through a
tiny random-init SD inpainting pipeline loaded from disk, the review queue and the CLI.

Ground truth comes from ``make_scene`` regenerated independently of the builder. Checks: every
description fits no other category in the image; pixels outside a sample's mask and every other
instance are untouched; recolour changes only the object and keeps its shading; remove / replace
stay inside the dilated object (and box); bad input becomes counted skips with reasons.
"""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from datagen.instructions.colors import color_name
from datagen.instructions.knowledge import default_knowledge
from datagen.masking import build_masker
from datagen.reasoning import ReasoningBuilder, SdEditor, enqueue, open_queue
from datagen.recolor import HUES, recolor, recolor_named
from datagen.schema import EditSample, ImageRecord, Instance, Quarantined

sys.path.insert(0, str(Path(__file__).parent))

DILATE = 6
BAND = 4  # the classical editor's harmonize band around a pasted donor
N_SCENES = 8


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _value(image: np.ndarray) -> np.ndarray:
    """HSV value (max of R, G, B) in [0, 1], float64, same HxW."""
    return image.max(axis=-1).astype(np.float64) / 255.0


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _samples(items) -> list[EditSample]:
    return [s for s in items if isinstance(s, EditSample)]


def _head(category: str) -> str:
    return category.split()[-1]


# ---------------------------------------------------------------------- recolour


def _shaded_disc(base: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A 96x96 noisy background with a disc lit from the left (brightness 0.45..1 x ``base``)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:96, 0:96]
    mask = (xx - 48) ** 2 + (yy - 48) ** 2 <= 30 ** 2
    shade = 1.0 - 0.55 * (xx - 18) / 60.0
    disc = np.clip(np.array(base, np.float64)[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)
    image[mask] = disc[mask]
    return image, mask


@pytest.mark.parametrize("base", [(235, 235, 230), (200, 120, 40), (40, 30, 28)])
def test_recolor_changes_only_masked_pixels_and_keeps_shading(base):
    image, mask = _shaded_disc(base)
    for colour in HUES:
        out = recolor(image, mask, colour)
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert np.array_equal(out[~mask], image[~mask])
        assert _corr(_value(image)[mask], _value(out)[mask]) > 0.99  # shading kept (a uniform gain at most)
        luma = lambda im: im.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
        assert _corr(luma(image)[mask], luma(out)[mask]) > 0.9
    found = recolor_named(image, mask, ["blue", "green"])
    assert found is not None and color_name(found[0][mask]) == found[1] == "blue"
    with pytest.raises(ValueError):
        recolor(image, mask, "black")  # not reachable by a hue change


def test_recolor_named_reports_a_colour_that_does_not_read():
    image, mask = _shaded_disc((40, 30, 28))  # dark: yellow becomes brown even after the lift
    assert recolor_named(image, mask, ["yellow"]) is None


# ---------------------------------------------------------------------- classical builder


def _classical(**kw) -> ReasoningBuilder:
    return ReasoningBuilder(build_masker("annotation"), "classical", dilate_px=DILATE, **kw)


@pytest.fixture(scope="module")
def built():
    """(ground-truth records by id, everything the classical builder yielded) for demo scenes."""
    from datagen.sources.demo import make_scene

    builder = _classical()
    truth, items = {}, []
    for i in range(N_SCENES):
        truth[f"demo:s3:{i:05d}"] = make_scene(i, 3)  # an independent copy the builder cannot touch
        items.extend(builder(make_scene(i, 3)))
    return truth, items


def _instance(truth, sample: EditSample) -> tuple[ImageRecord, Instance]:
    record = truth[sample.provenance["record"]]
    return record, next(i for i in record.instances if i.id == sample.target["instance"])


def test_classical_candidates_are_valid_pending_and_described_uniquely(built):
    truth, items = built
    samples = _samples(items)
    assert len(samples) >= 3 * N_SCENES
    assert set(Counter(s.op for s in samples)) == {"remove", "recolor", "replace"}
    table = default_knowledge()
    for s in samples:
        s.validate()
        assert s.scenario == "reasoning" and s.review == {"status": "pending"}
        assert s.provenance["candidates"] == 1 and s.provenance["case_id"]
        record, inst = _instance(truth, s)
        present = {i.category for i in record.instances}
        fits = set(s.target["description"]["fits"])
        assert fits & present == {inst.category}, (s.instruction, present)  # no other category fits
        assert s.target["description"]["id"] in {d.id for d in table.usable(inst.category, present)}
        peers = [i for i in record.instances if i.category == inst.category]
        assert (s.target["referring"] is not None) == (len(peers) > 1)
        words = s.instruction.lower().replace("?", " ").replace(".", " ").split()
        assert _head(inst.category) not in words or _head(inst.category) == "person"
    assert not [q for q in items if isinstance(q, Quarantined) and q.reason == "builder_error"]


def test_classical_edits_stay_inside_the_mask_and_spare_other_instances(built):
    truth, items = built
    for s in _samples(items):
        record, inst = _instance(truth, s)
        src = record.image
        assert np.array_equal(s.src, src)
        assert np.array_equal(s.tgt[~s.mask], src[~s.mask])
        for other in record.instances:
            if other.id != inst.id:
                assert not (s.mask & other.mask).any()
                assert np.array_equal(s.tgt[other.mask], src[other.mask])
        others = np.any([o.mask for o in record.instances if o.id != inst.id] or [np.zeros_like(inst.mask)], axis=0)
        if s.op in ("remove", "recolor"):
            assert np.array_equal(s.mask, _dilate(inst.mask, DILATE) & ~others)
        if s.op == "replace":
            box = np.zeros_like(inst.mask)
            x0, y0, x1, y1 = (int(round(v)) for v in inst.box)
            box[y0:y1, x0:x1] = True
            assert not (s.mask & ~_dilate(inst.mask | box, DILATE + BAND)).any()
            assert s.target["new_object"] != inst.category
            assert s.provenance["edit"]["donor"]["category"] == s.target["new_object"]


def test_objects_with_reflections_are_not_edited_and_reflections_only_removed(built):
    """Mirror semantics: editing an object that has a reflection would leave the mirror showing the
    old object (counted ``reflected``); a reflection is only ever removed."""
    truth, items = built
    for s in _samples(items):
        record, inst = _instance(truth, s)
        assert not any(o.attributes.get("reflection_of") == inst.id for o in record.instances), s.instruction
        if inst.attributes.get("in_mirror"):
            assert s.op == "remove", s.instruction
    mirrored = [r for r in truth.values() if any(i.attributes.get("reflection_of") for i in r.instances)]
    assert mirrored and any(isinstance(q, Quarantined) and q.reason == "reflected" for q in items)


def test_classical_recolor_changes_only_the_object_and_keeps_its_shading(built):
    truth, items = built
    recolors = [s for s in _samples(items) if s.op == "recolor"]
    assert len(recolors) >= N_SCENES // 2
    for s in recolors:
        record, inst = _instance(truth, s)
        changed = np.any(s.tgt != record.image, axis=-1)
        assert changed.any() and not (changed & ~inst.mask).any()
        assert _corr(_value(record.image)[inst.mask], _value(s.tgt)[inst.mask]) > 0.95
        new = s.target["new_color"]
        assert color_name(s.tgt[inst.mask]) == new == s.quality["scores"]["colour_after"]
        assert new != (inst.attributes.get("color") or color_name(record.image[inst.mask]))
        assert new in s.instruction


def test_keys_and_cases_are_stable_across_runs():
    from datagen.sources.demo import make_scene

    first = _samples(_classical(seed=5)(make_scene(1, 3)))
    again = _samples(_classical(seed=5)(make_scene(1, 3)))
    assert first and [s.key for s in first] == [s.key for s in again]
    assert [s.provenance["case_id"] for s in first] == [s.provenance["case_id"] for s in again]
    other_seed = _samples(_classical(seed=6)(make_scene(1, 3)))
    assert {s.key for s in first}.isdisjoint(s.key for s in other_seed)


# ---------------------------------------------------------------------- synthetic records


def _record(*objects, size=(160, 240), rid="synthetic") -> ImageRecord:
    """Objects are ``(category, (x0, y0, x1, y1), rgb)`` ellipses on a textured background."""
    rng = np.random.default_rng(1)
    h, w = size
    image = (rng.normal(120, 12, (h, w, 3)).clip(0, 255)).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    instances = []
    for k, (category, (x0, y0, x1, y1), rgb) in enumerate(objects):
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        mask = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0
        image[mask] = (np.array(rgb)[None, :] * (0.6 + 0.4 * (yy[mask, None] - y0) / (y1 - y0 + 1))).astype(np.uint8)
        instances.append(Instance(str(k), category, (float(x0), float(y0), float(x1), float(y1)), mask))
    return ImageRecord(rid, image, instances, "test")


def test_a_description_another_present_category_fits_is_never_used():
    table = default_knowledge().merged({"categories": {"horse": {"kind": "animal", "descriptions": [
        {"predicate": "can be ridden", "also_fits": ["elephant"]}]}}})
    builder = _classical(knowledge=table, ops=["remove"])
    both = list(builder(_record(("horse", (20, 40, 100, 120), (150, 90, 40)),
                                ("elephant", (140, 30, 230, 130), (120, 120, 125)))))
    horse_items = [i for i in both if (i.id if isinstance(i, Quarantined) else i.target["instance"]).startswith(
        ("synthetic/0", "0"))]
    assert [q.reason for q in horse_items] == ["ambiguous_description"]
    assert all("ridden" not in s.instruction for s in _samples(both))
    assert [s.target["category"] for s in _samples(both)] == ["elephant"]
    alone = _samples(builder(_record(("horse", (20, 40, 100, 120), (150, 90, 40)))))
    assert len(alone) == 1 and "can be ridden" in alone[0].instruction


def test_bad_input_becomes_counted_skips_with_reasons():
    builder = _classical(ops=["remove"], min_area=150)
    reasons = Counter()
    for record in [
        _record(rid="empty"),
        _record(("cat", (20, 40, 100, 120), (200, 120, 40)), ("unicorn", (140, 30, 230, 130), (250, 250, 250))),
        _record(("cat", (20, 40, 30, 50), (200, 120, 40))),                                   # 10x10 px: tiny
        _record(("cat", (20, 40, 100, 120), (200, 120, 40)), ("cat", (24, 40, 104, 120), (200, 120, 40))),
    ]:
        reasons.update(q.reason for q in builder(record) if isinstance(q, Quarantined))
    broken = _record(("cat", (20, 40, 100, 120), (200, 120, 40)))
    broken.instances[0].box = (50.0, 50.0, 40.0, 60.0)
    reasons.update(q.reason for q in builder(broken))
    hollow = _record(("cup", (20, 40, 100, 120), (200, 120, 40)))
    hollow.instances[0].mask = np.zeros_like(hollow.instances[0].mask)
    reasons.update(q.reason for q in builder(hollow))
    assert reasons == Counter({"no_instances": 1, "no_description": 1, "unknown_neighbour": 1, "tiny_instance": 1,
                               "ambiguous": 2, "bad_box": 1, "empty_mask": 1})


def test_ops_the_editor_cannot_make_are_refused_at_construction():
    with pytest.raises(ValueError, match="classical"):
        _classical(ops=["addon"])
    with pytest.raises(ValueError, match="candidates"):
        _classical(candidates=0)


# ---------------------------------------------------------------------- sd editor + queue


@pytest.fixture(scope="module")
def sd_run(tmp_path_factory):
    """A tiny random-init SD inpainting pipeline saved to disk, loaded by the real ``sd`` backend
    builder, run on one cat of a demo scene: recolour and add-on cases, three candidates each."""
    from tiny_models import make_tiny_sd_inpaint, torch_threads

    from datagen.sources.demo import make_scene

    model_dir = make_tiny_sd_inpaint(tmp_path_factory.mktemp("sd") / "pipe")
    with torch_threads(1):
        builder = ReasoningBuilder(build_masker("annotation"), "sd", candidates=3, ops=["recolor", "addon"],
                                   editor_options={"model_dir": model_dir, "device": "cpu", "steps": 2})
        scene = make_scene(2, 0)
        cat = next(i for i in scene.instances if i.category == "cat")
        record = ImageRecord(scene.id, scene.image, [cat], scene.source)
        items = list(builder(record))
        rerun = [s.tgt for s in _samples(builder(record))]
    return builder, record, items, rerun, model_dir


def test_sd_editor_makes_seeded_candidates_per_case(sd_run):
    from datagen.inpainting.sd import SdInpainter

    builder, record, items, rerun, _ = sd_run
    assert isinstance(builder.editor, SdEditor) and isinstance(builder.editor.inpainter, SdInpainter)
    assert builder.settings()["editor"]["settings"]["inpainter"]["settings"]["model_dir"]["sha256"]
    samples = _samples(items)
    assert len(samples) == 6 and not [q for q in items if isinstance(q, Quarantined)]
    by_case: dict[str, list[EditSample]] = {}
    for s in samples:
        by_case.setdefault(s.provenance["case_id"], []).append(s)
    assert sorted(s.op for s in samples) == ["addon"] * 3 + ["recolor"] * 3 and len(by_case) == 2
    for case in by_case.values():
        seeds = [s.provenance["seeds"]["edit"] for s in case]
        assert len(set(seeds)) == 3 and [s.provenance["candidate"] for s in case] == [0, 1, 2]
        assert [s.provenance["edit"]["seed"] for s in case] == seeds
        assert len({s.instruction for s in case}) == 1 and len({s.key for s in case}) == 3
        assert not np.array_equal(case[0].tgt, case[1].tgt)  # different seeds, different pixels
    for s in samples:
        s.validate()
        assert np.array_equal(s.tgt[~s.mask], record.image[~s.mask]) and s.review == {"status": "pending"}
        prompt = s.provenance["edit"]["prompt"]
        if s.op == "recolor":
            assert prompt.split(",")[0] in (f"a {s.target['new_color']} cat", f"an {s.target['new_color']} cat")
        else:
            assert f"cat wearing a {s.target['addon']}" in prompt and s.target["addon"] in s.instruction
            assert s.mask[: int(record.instances[0].box[1])].any()  # room above the head
    assert all(np.array_equal(a.tgt, b) for a, b in zip(samples, rerun))  # same seed, same pixels


def test_enqueue_puts_each_case_in_the_real_review_queue_once(sd_run, tmp_path):
    _, _, items, _, _ = sd_run
    store = open_queue(tmp_path / "queue")
    try:
        stats = enqueue(items, store)
        assert stats.to_dict() == {"added": 6, "already": 0, "cases": 2, "skipped": {}}
        rows = list(store.export_rows())
        assert len(rows) == 6 and {r["scenario"] for r in rows} == {"reasoning"}
        assert Counter(r["case_id"] for r in rows) == Counter(s.provenance["case_id"] for s in _samples(items))
        back = store.sample(rows[0]["item_id"])
        original = next(s for s in _samples(items) if s.key == back.key)
        assert back.instruction == original.instruction and np.array_equal(back.tgt, original.tgt)
        assert enqueue(items, store).to_dict()["already"] == 6
    finally:
        store.close()
    assert (tmp_path / "queue" / "queue.db").is_file()


# ---------------------------------------------------------------------- CLI


def test_cli_fills_a_review_queue_and_says_how_to_open_it(tmp_path, capsys):
    from datagen.cli import main

    queue = tmp_path / "q"
    args = ["reasoning", "--source", "demo:3:3", "--queue", str(queue), "--masker", "annotation", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"review serve --db {queue / 'queue.db'}" in out and "review add-reviewer" in out
    store = open_queue(queue)
    try:
        rows = list(store.export_rows())
    finally:
        store.close()
    assert rows and all(r["status"] == "pending" and r["scenario"] == "reasoning" for r in rows)
    assert f"{len(rows)} new candidates" in out
    assert main(args) == 0
    assert "0 new candidates" in capsys.readouterr().out
    assert main([*args[:-1], "--ops", "addon"]) == 2
    assert main(["reasoning", "--queue", str(queue), "--editor", "sd", "--source", "demo:1"]) == 2
    assert "model_dir" in capsys.readouterr().err


def test_cli_sd_editor_queues_seeded_candidates(sd_run, tmp_path, capsys):
    from tiny_models import torch_threads

    from datagen.cli import main

    queue = tmp_path / "sd-queue.db"
    with torch_threads(1):
        rc = main(["reasoning", "--source", "demo:1:3", "--queue", str(queue), "--masker", "annotation", "--editor",
                   "sd", "--sd-model", str(sd_run[4]), "--device", "cpu", "--steps", "2", "--candidates", "2",
                   "--ops", "recolor", "--ops-per-instance", "1", "--no-progress"])
    assert rc == 0 and f"--db {queue}" in capsys.readouterr().out
    store = open_queue(queue)
    try:
        rows = list(store.export_rows())
        cases = Counter(r["case_id"] for r in rows)
        assert rows and set(cases.values()) == {2} and {r["op"] for r in rows} == {"recolor"}
        seeds = {store.sample(r["item_id"]).provenance["seeds"]["edit"] for r in rows}
        assert len(seeds) == len(rows)
    finally:
        store.close()
