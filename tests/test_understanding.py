"""Understanding builder on demo scenes with ground truth (classical CPU backends).

Ground truth comes from ``make_scene`` (exact instance masks, boxes, attributes), regenerated
independently of the builder. Checks: edits stay inside the named instance's dilated mask; the
other instances are untouched; the referring phrase names the instance the edit changed; "add"
relations hold by box geometry; every bad-input case is a counted skip with its reason.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

import cv2
import numpy as np
import pytest

from datagen.harmonization import build_harmonizer
from datagen.inpainting import build_inpainter
from datagen.masking import build_masker
from datagen.schema import EditSample, ImageRecord, Instance, Quarantined
from datagen.understanding import UnderstandingBuilder
from datagen.understanding.donors import Donor

DILATE = 6
BAND = 4
N_SCENES = 10


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _builder(donors=None, **kw) -> UnderstandingBuilder:
    from datagen.sources.demo import donor_objects

    return UnderstandingBuilder(
        build_masker("annotation"), build_inpainter("opencv"), build_harmonizer("classical"),
        donor_objects() if donors is None else donors, dilate_px=DILATE, harmonize_band_px=BAND, **kw,
    )


@pytest.fixture(scope="module")
def built():
    """(ground-truth records by id, everything the builder yielded) for N demo scenes."""
    from datagen.sources.demo import make_scene

    builder = _builder()
    truth, items = {}, []
    for i in range(N_SCENES):
        record = make_scene(i, 7)
        truth[record.id] = make_scene(i, 7)  # a second, independent copy: the builder cannot touch it
        items.extend(builder(record))
    return truth, items


def _samples(items) -> list[EditSample]:
    return [s for s in items if isinstance(s, EditSample)]


def _instance(record: ImageRecord, iid: str) -> Instance:
    return next(i for i in record.instances if i.id == iid)


def test_demo_scenes_give_all_three_ops(built):
    _truth, items = built
    ops = Counter(s.op for s in _samples(items))
    assert ops["remove"] >= 5 and ops["add"] >= 3 and ops["replace"] >= 3, ops
    for s in _samples(items):
        s.validate()
        assert s.scenario == "understanding" and s.paraphrases
        assert s.quality["passed"] and not s.quality["failed"]


def _removed(record: ImageRecord, inst: Instance) -> np.ndarray:
    """What removing ``inst`` takes away by ground truth: its mask and its reflection's."""
    mask = inst.mask.copy()
    for other in record.instances:
        if other.attributes.get("reflection_of") == inst.id:
            mask |= other.mask
    return mask


def test_edits_lie_inside_the_named_instance_dilated_mask(built):
    truth, items = built
    for s in _samples(items):
        gt = truth[s.provenance["record"]]
        inst = _instance(gt, s.target["instance"])
        allowed = _dilate(_removed(gt, inst), DILATE)
        if s.op == "replace":
            x0, y0, x1, y1 = (int(round(v)) for v in inst.box)
            box = np.zeros_like(inst.mask)
            box[y0:y1, x0:x1] = True
            allowed |= _dilate(box, BAND)
        changed = (s.src != s.tgt).any(axis=2)
        assert changed.any(), f"{s.op} changed nothing"
        assert not (changed & ~allowed).any(), f"{s.op} {s.instruction}: {int((changed & ~allowed).sum())} px outside"
        assert not (changed & ~s.mask).any()  # and inside the sample's own mask


def test_the_hole_covers_the_whole_dilation(built):
    """Lower bound as well as upper: a remove sample's mask is exactly the removed object (and
    its reflection) dilated by ``DILATE`` px, minus the instances that stay."""
    truth, items = built
    removes = [s for s in _samples(items) if s.op == "remove"]
    assert removes
    for s in removes:
        gt = truth[s.provenance["record"]]
        removed = _removed(gt, _instance(gt, s.target["instance"]))
        staying = np.zeros_like(removed)
        for other in gt.instances:
            staying |= other.mask & ~removed
        expect = _dilate(removed, DILATE) & ~staying
        assert np.array_equal(s.mask, expect), (s.instruction, int((s.mask ^ expect).sum()))


def test_replacements_stand_on_the_removed_objects_ground_line(built):
    """The pasted object's lowest row is the removed instance's lowest row (donor shapes differ
    from the instances', so aligning the box tops instead would fail here)."""
    truth, items = built
    replaces = [s for s in _samples(items) if s.op == "replace"]
    misfits = 0
    for s in replaces:
        inst = _instance(truth[s.provenance["record"]], s.target["instance"])
        h = s.src.shape[0]
        if inst.box[3] >= h - 1:
            continue  # cut by the bottom border: the ground line is below the frame
        assert abs(s.target["paste_box"][3] - inst.box[3]) <= 1, s.instruction
        misfits += abs(s.target["paste_box"][1] - inst.box[1]) > 2
    assert misfits >= 1  # at least one donor's height does not fill the box


def test_an_object_and_its_reflection_stay_consistent(built):
    """Reflections: removing an object removes its reflection; nothing reflected is replaced;
    location and size never count a reflection."""
    truth, items = built
    reflected = 0
    for s in _samples(items):
        gt = truth[s.provenance["record"]]
        inst = _instance(gt, s.target["instance"])
        mirror = [o for o in gt.instances if o.attributes.get("reflection_of") == inst.id]
        if s.op == "replace":
            assert not mirror and not inst.attributes.get("in_mirror"), s.instruction
        if mirror and s.op == "remove":
            reflected += 1
            assert (s.src[mirror[0].mask] != s.tgt[mirror[0].mask]).any(axis=1).mean() > 0.5, s.instruction
        if s.target.get("attribute") in ("location", "size"):
            assert not inst.attributes.get("in_mirror")
    assert reflected >= 1
    assert any(isinstance(q, Quarantined) and q.reason == "reflected" for q in items)


def test_other_instances_are_unchanged(built):
    truth, items = built
    for s in _samples(items):
        gt = truth[s.provenance["record"]]
        removed = _removed(gt, _instance(gt, s.target["instance"]))
        for other in gt.instances:
            if other.id != s.target["instance"] and not (other.mask & removed).any():
                assert np.array_equal(s.src[other.mask], s.tgt[other.mask]), (s.instruction, other.id)


def _peers(record: ImageRecord, inst: Instance) -> list[Instance]:
    return [i for i in record.instances if i.category == inst.category]


def _centre(inst: Instance) -> tuple[float, float]:
    x0, y0, x1, y1 = inst.box
    return (x0 + x1) / 2, (y0 + y1) / 2


def test_referring_phrase_names_the_edited_instance(built):
    """The attribute in the instruction is true of the edited instance by ground truth."""
    truth, items = built
    for s in _samples(items):
        if s.op == "add":
            continue
        gt = truth[s.provenance["record"]]
        inst = _instance(gt, s.target["instance"])
        peers = _peers(gt, inst)
        if s.target["attribute"] in ("location", "size"):  # a reflection is not another object
            peers = [p for p in peers if not p.attributes.get("in_mirror")]
        attribute, value = s.target["attribute"], s.target["value"]
        assert s.target["phrase"] in s.instruction
        if attribute == "location":
            xs = sorted(peers, key=lambda i: _centre(i)[0])
            expect = {"left": xs[0], "leftmost": xs[0], "right": xs[-1], "rightmost": xs[-1], "middle": xs[len(xs) // 2]}
            assert expect[value].id == inst.id
        elif attribute == "size":
            areas = sorted(peers, key=lambda i: int(i.mask.sum()))
            assert (areas[0] if value in ("smaller", "smallest") else areas[-1]).id == inst.id
        elif attribute == "mirror":
            assert inst.attributes.get("in_mirror", False) == (value == "in_mirror")
        elif attribute == "count":
            assert peers == [inst]
        elif attribute == "color" and "color" in inst.attributes:
            assert inst.attributes["color"] == value


def test_add_relation_is_geometrically_true(built):
    truth, items = built
    adds = [s for s in _samples(items) if s.op == "add"]
    assert adds
    for s in adds:
        gt = truth[s.provenance["record"]]
        me = _instance(gt, s.target["instance"])
        anchor = _instance(gt, s.target["anchor"]["instance"])
        assert s.target["value"] in s.instruction and s.target["anchor"]["phrase"] in s.instruction
        (mx, my), (ax, ay) = _centre(me), _centre(anchor)
        dx, dy = mx - ax, my - ay
        relation = s.target["value"]
        if relation in ("to the right of", "to the left of"):
            assert abs(dx) > abs(dy) and (dx > 0) == (relation == "to the right of"), (s.instruction, dx, dy)
        else:
            assert abs(dy) > abs(dx) and (dy > 0) == (relation == "below"), (s.instruction, dx, dy)
        # The anchor is still in the add sample's source (y1) and it is not the removed instance.
        assert anchor.id != me.id and np.array_equal(s.src[anchor.mask], gt.image[anchor.mask])


def test_add_is_the_reverse_of_remove_and_replace_shows_the_donor(built):
    _truth, items = built
    by = {(s.provenance["record"], s.target["instance"], s.op): s for s in _samples(items)}
    for (rec, inst, op), s in by.items():
        if op == "add" and (rec, inst, "remove") in by:
            r = by[(rec, inst, "remove")]
            assert np.array_equal(s.src, r.tgt) and np.array_equal(s.tgt, r.src)
        if op == "replace":
            assert s.target["new_category"] != s.target["category"]
            assert s.target["new_category"] in s.instruction
            assert s.provenance["harmonizer"]["name"] == "classical"


def test_keys_are_stable_and_unique(built):
    from datagen.sources.demo import make_scene

    _truth, items = built
    keys = [s.key for s in _samples(items)]
    assert len(keys) == len(set(keys))
    again = [s.key for s in _builder()(make_scene(0, 7)) if isinstance(s, EditSample)]
    assert again and set(again) <= set(keys)


class _Counting:
    """Wraps a real backend and counts its calls."""

    def __init__(self, inner, method):
        self.inner, self.method, self.calls = inner, method, 0
        self.name = inner.name

    def settings(self):
        return self.inner.settings()

    def __getattr__(self, attr):
        if attr != self.method:
            raise AttributeError(attr)

        def call(*a, **kw):
            self.calls += 1
            return getattr(self.inner, self.method)(*a, **kw)

        return call


def test_masks_once_per_image_and_inpaints_once_per_instance():
    from datagen.sources.demo import donor_objects, make_scene

    masker = _Counting(build_masker("annotation"), "masks")
    inpainter = _Counting(build_inpainter("opencv"), "inpaint")
    builder = UnderstandingBuilder(masker, inpainter, build_harmonizer("classical"), donor_objects())
    items = list(builder(make_scene(1, 7)))
    removed = {s.target["instance"] for s in _samples(items)}
    assert removed and masker.calls == 1 and inpainter.calls == len(removed)


# ---------------------------------------------------------------- bad input


def _two_balls(h=160, w=240, boxes=((30, 60, 90, 120), (140, 40, 220, 120)), colours=((200, 50, 40), (40, 60, 200))):
    """A plain scene with rectangles as instances (exact masks)."""
    rng = np.random.default_rng(0)
    img = np.clip(np.array([90, 140, 70]) + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    insts = []
    for k, ((x0, y0, x1, y1), c) in enumerate(zip(boxes, colours)):
        m = np.zeros((h, w), bool)
        m[y0:y1, x0:x1] = True
        img[m] = c
        insts.append(Instance(f"b{k}", "ball", (float(x0), float(y0), float(x1), float(y1)), m))
    return ImageRecord("bad:1", img, insts, "test")


def _reasons(items) -> Counter:
    return Counter(i.reason for i in items if isinstance(i, Quarantined))


def _cup():
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[:] = (150, 120, 60)
    m = np.zeros((40, 30), bool)
    m[4:36, 5:25] = True
    return Donor("cup", rgb, m)


def test_bad_input_gives_counted_reasons():
    b = _builder(donors=[_cup()])
    rec = _two_balls()
    assert _reasons(b(replace(rec, instances=[]))) == {"no_instances": 1}
    assert _reasons(b(replace(rec, instances=rec.instances[:1]))) == {"one_instance": 1}
    # Empty mask on one instance: that instance is skipped, the other still gives samples.
    empty = [replace(rec.instances[0], mask=np.zeros_like(rec.instances[0].mask)), rec.instances[1]]
    items = list(b(replace(rec, instances=empty)))
    assert _reasons(items)["empty_mask"] == 1 and _samples(items)
    # Tiny instance.
    tiny = rec.instances[0].mask.copy()
    tiny[:] = False
    tiny[70:75, 50:55] = True
    items = list(b(replace(rec, instances=[replace(rec.instances[0], mask=tiny, box=(50.0, 70.0, 55.0, 75.0)),
                                            rec.instances[1]])))
    assert _reasons(items)["tiny_instance"] == 1
    # Box outside the image: the whole record (referring expressions compare every instance).
    broken = [replace(rec.instances[0], box=(10.0, 10.0, 900.0, 50.0)), rec.instances[1]]
    assert _reasons(b(replace(rec, instances=broken))) == {"bad_box": 1}
    # Box-only instance with the annotation masker: the masker says why.
    boxonly = [replace(rec.instances[0], mask=None), rec.instances[1]]
    assert _reasons(b(replace(rec, instances=boxonly))) == {"mask_failed": 1}


def test_no_unique_referring_expression_is_ambiguous():
    # Same size, same colour, centres too close for left/right: nothing names either ball.
    rec = _two_balls(boxes=((100, 60, 130, 100), (112, 20, 142, 60)), colours=((200, 50, 40), (200, 50, 40)))
    items = list(_builder(donors=[_cup()])(rec))
    assert _reasons(items) == {"ambiguous": 2} and not _samples(items)


def test_instance_touching_the_border_clip_or_skip():
    rec = _two_balls(boxes=((0, 60, 50, 120), (140, 40, 220, 120)))
    clip = list(_builder(donors=[_cup()])(rec))
    touching = [s for s in _samples(clip) if s.target["instance"] == "b0"]
    assert {s.op for s in touching} == {"remove", "add", "replace"}
    assert all(s.target["attribute"] != "size" for s in touching)  # visible size is not its size
    skip = list(_builder(donors=[_cup()], border="skip")(rec))
    assert _reasons(skip)["touches_border"] == 1
    assert not [s for s in _samples(skip) if s.target["instance"] == "b0"]


def test_donor_larger_than_the_image_is_scaled_in():
    big = np.zeros((900, 700, 3), np.uint8)
    big[:] = (160, 130, 70)
    m = np.zeros((900, 700), bool)
    m[50:850, 100:600] = True
    rec = _two_balls()
    items = list(_builder(donors=[Donor("cup", big, m)])(rec))
    replaced = [s for s in _samples(items) if s.op == "replace"]
    assert len(replaced) == 2
    for s in replaced:
        x0, y0, x1, y1 = _instance(rec, s.target["instance"]).box
        px0, py0, px1, py1 = s.target["paste_box"]
        assert px0 >= x0 and px1 <= x1 and py0 >= y0 and py1 == y1


def test_broken_or_missing_donors_skip_replace_only():
    rec = _two_balls()
    broken = Donor("cup", np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), bool))
    b = _builder(donors=[broken])
    assert b.donor_problems[0]["reason"] == "empty_donor"
    items = list(b(rec))
    assert _reasons(items) == {"no_donor": 2}
    assert Counter(s.op for s in _samples(items)) == {"remove": 2, "add": 2}
    # A donor of the instance's own category cannot replace it.
    ball = Donor("ball", *(lambda d: (d.rgb, d.mask))(_cup()))
    assert _reasons(_builder(donors=[ball])(rec)) == {"no_donor": 2}


def test_tiny_donor_is_not_blown_up():
    speck = Donor("cup", np.full((6, 5, 3), 150, np.uint8), np.ones((6, 5), bool))
    items = list(_builder(donors=[speck])(_two_balls()))
    assert _reasons(items) == {"donor_too_small": 2}
    assert Counter(s.op for s in _samples(items)) == {"remove": 2, "add": 2}


def test_a_donor_that_would_be_a_sliver_is_not_chosen():
    """A tall thin rocket in a ball's square box would cover a tenth of it: never chosen while a
    donor that fills the box exists; with none, ``donor_misfit`` is counted."""
    rgb = np.full((100, 8, 3), 200, np.uint8)
    rocket = Donor("rocket", rgb, np.ones((100, 8), bool))
    rec = _two_balls()
    items = list(_builder(donors=[rocket])(rec))
    assert _reasons(items) == {"donor_misfit": 2}
    for seed in range(4):
        replaced = [s for s in _samples(_builder(donors=[rocket, _cup()], seed=seed)(rec)) if s.op == "replace"]
        assert len(replaced) == 2 and {s.target["new_category"] for s in replaced} == {"cup"}


class _IdentityInpainter:
    """A real (if useless) inpainter: returns the image as it was, i.e. removes nothing."""

    name = "identity"

    def inpaint(self, image, hole, *, prompt=None, seed=0):
        return image.copy()

    def settings(self):
        return {"backend": self.name}


def test_failed_removal_is_a_counted_quality_rejection():
    rec = _two_balls()
    b = UnderstandingBuilder(build_masker("annotation"), _IdentityInpainter(), build_harmonizer("classical"), [_cup()])
    items = list(b(rec))
    assert not _samples(items)
    assert _reasons(items) == {"quality:removal": 6}  # remove, add, replace for both balls


# ---------------------------------------------------------------- CLI


def test_cli_writes_shards_and_a_manifest(tmp_path, capsys):
    from datagen.cli import main
    from datagen.shards import load_manifest, read_samples, verify_manifest

    args = ["understanding", "--source", "demo:3:7", "--out", str(tmp_path / "data"), "--name", "und",
            "--manifests", str(tmp_path / "manifests"), "--masker", "annotation", "--inpainter", "opencv",
            "--harmonizer", "classical", "--backend-opt", "inpainter.radius=4", "--seed", "1", "--no-progress"]
    assert main(args) == 0
    manifest = tmp_path / "manifests" / "und.json"
    doc = load_manifest(manifest)
    assert verify_manifest(manifest) == []
    samples = list(read_samples(manifest))
    assert samples and {s.op for s in samples} == {"remove", "add", "replace"}
    assert all(s.provenance["inpainter"]["settings"]["radius"] == 4 for s in samples)
    assert doc["backends"]["harmonizer"]["name"] == "classical"
    # Skips are counted by reason in the manifest, exactly as the builder yielded them.
    from datagen.sources import open_catalog
    from datagen.understanding import build_understanding, parse_options

    builder = build_understanding(masker="annotation", options=parse_options(["inpainter.radius=4"]), seed=1)
    yielded = Counter(q.reason for rec in open_catalog("demo:3:7") for q in builder(rec) if isinstance(q, Quarantined))
    assert doc["skipped"] == dict(yielded) and sum(yielded.values()) > 0
    # A rerun resumes: nothing new, nothing duplicated.
    assert main(args) == 0
    assert len(list(read_samples(manifest))) == len(samples)
    assert "manifest" in capsys.readouterr().out


def test_cli_reports_an_unavailable_backend(tmp_path, capsys):
    from datagen.cli import main

    code = main(["understanding", "--source", "demo:1", "--out", str(tmp_path / "d"), "--masker", "sam"])
    assert code == 2
    err = capsys.readouterr().err
    assert "checkpoint" in err and "--backend-opt" in err


def test_a_batching_inpainter_fills_a_records_holes_in_one_call(monkeypatch):
    # On a GPU the model must see a batch, not one hole at a time: a backend with
    # ``inpaint_batch`` (LaMa here, the real backend on the tiny TorchScript model) gets every hole
    # of a record in one call, and the samples equal those of one call per hole.
    from tiny_models import tiny_backend_options

    from datagen.sources.demo import donor_objects, make_scene

    lama = build_inpainter("lama", **tiny_backend_options("inpainting", "lama"))
    builder = UnderstandingBuilder(build_masker("annotation"), lama, build_harmonizer("classical"), donor_objects(),
                                   dilate_px=DILATE, harmonize_band_px=BAND)
    record = make_scene(1, 7)
    calls = []
    batched = lama.inpaint_batch

    def counting(images, holes, **kw):
        calls.append(len(holes))
        return batched(images, holes, **kw)

    monkeypatch.setattr(lama, "inpaint_batch", counting)
    together = [s for s in builder(record) if isinstance(s, EditSample)]
    assert len(calls) == 1 and calls[0] >= 2  # every removable instance of the scene, one call
    monkeypatch.setattr(lama, "inpaint_batch", lambda images, holes, prompts, seeds: [
        batched([i], [h], prompts=[p], seeds=[s])[0] for i, h, p, s in zip(images, holes, prompts, seeds)])
    one_by_one = [s for s in builder(make_scene(1, 7)) if isinstance(s, EditSample)]
    assert [s.key for s in together] == [s.key for s in one_by_one]
    for a, b in zip(together, one_by_one):
        assert np.array_equal(a.src, b.src) and np.array_equal(a.tgt, b.tgt)
