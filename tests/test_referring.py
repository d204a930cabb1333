"""Referring expressions and colour names on hand-built records with known geometry."""
from functools import partial

import numpy as np
import pytest
from records import rect_instance

from datagen.instructions.colors import COLOR_RGB, color_name
from datagen.instructions.referring import (
    anchor_phrase,
    referring_expressions,
    referring_table,
    relation_to,
)
from datagen.schema import ImageRecord

H, W = 120, 240


rect = partial(rect_instance, (H, W))  # Instance with an exact rectangular mask (or box only)


def record(*instances, image=None):
    img = np.full((H, W, 3), 100, np.uint8) if image is None else image
    return ImageRecord("test:r", img, list(instances)).validate()


def by_attribute(rec, iid):
    return {r.attribute: r for r in referring_expressions(rec, iid)}


def test_two_cats_left_right():
    rec = record(rect("a", "cat", 10, 40, 50, 80), rect("b", "cat", 150, 40, 190, 80), rect("d", "dog", 90, 0, 110, 20))
    a, b = by_attribute(rec, "a"), by_attribute(rec, "b")
    assert a["location"].phrase == "the left cat" and a["location"].value == "left"
    assert b["location"].phrase == "the right cat"
    assert "size" not in a and "size" not in b  # equal sizes: no size attribute
    assert "count" not in a
    assert by_attribute(rec, "d")["count"].phrase == "the dog"


def test_three_in_a_row_and_crowded_row():
    row = [rect(f"c{k}", "cup", 10 + 80 * k, 40, 50 + 80 * k, 80) for k in range(3)]
    rec = record(*row)
    assert [by_attribute(rec, f"c{k}")["location"].value for k in range(3)] == ["left", "middle", "right"]
    five = [rect(f"c{k}", "cup", 5 + 48 * k, 40, 37 + 48 * k, 80) for k in range(5)]
    rec5 = record(*five)
    values = [by_attribute(rec5, f"c{k}").get("location") for k in range(5)]
    assert values[0].value == "leftmost" and values[4].phrase == "the rightmost cup"
    assert values[1] is None and values[2] is None and values[3] is None


def test_overlapping_positions_are_not_called_left_or_right():
    # Centres 15 px apart with 40 px wide boxes: below the half-width margin.
    rec = record(rect("a", "cat", 100, 10, 140, 50), rect("b", "cat", 115, 60, 155, 100))
    assert "location" not in by_attribute(rec, "a")
    assert "location" not in by_attribute(rec, "b")
    # The first two are too close to tell apart (centres 15 px apart); the third is clearly right.
    rec3 = record(rect("a", "cat", 10, 10, 50, 50), rect("b", "cat", 25, 60, 65, 100), rect("c", "cat", 180, 10, 220, 50))
    assert "location" not in by_attribute(rec3, "a")
    assert "location" not in by_attribute(rec3, "b")
    assert by_attribute(rec3, "c")["location"].value == "right"


def test_sizes_two_and_three():
    rec = record(rect("s", "cup", 10, 10, 30, 30), rect("b", "cup", 100, 10, 140, 50))
    assert by_attribute(rec, "s")["size"].phrase == "the smaller cup"
    assert by_attribute(rec, "b")["size"].phrase == "the bigger cup"
    three = record(rect("s", "cat", 10, 10, 30, 30), rect("m", "cat", 80, 10, 110, 40), rect("l", "cat", 150, 10, 200, 60))
    assert by_attribute(three, "s")["size"].value == "smallest"
    assert by_attribute(three, "l")["size"].value == "biggest"
    assert "size" not in by_attribute(three, "m")


def test_similar_sizes_give_no_size():
    # Area ratio 1.21 (< 1.5): neither is clearly smaller.
    rec = record(rect("a", "cup", 10, 10, 50, 50), rect("b", "cup", 100, 10, 144, 54))
    assert "size" not in by_attribute(rec, "a") and "size" not in by_attribute(rec, "b")
    # Biggest must beat the runner-up by the ratio too.
    three = record(rect("a", "cup", 10, 10, 20, 20), rect("b", "cup", 60, 10, 100, 50), rect("c", "cup", 150, 10, 192, 52))
    assert "size" not in by_attribute(three, "c")
    assert by_attribute(three, "a")["size"].value == "smallest"


def test_size_needs_box_and_mask_to_agree():
    # Big box, but mostly occluded: the visible mask is small. Box says bigger, mask says smaller.
    big = rect("big", "cat", 10, 10, 90, 90)
    big.mask[:, :] = False
    big.mask[10:30, 10:30] = True
    small = rect("small", "cat", 150, 10, 190, 50)
    rec = record(big, small)
    assert "size" not in by_attribute(rec, "big") and "size" not in by_attribute(rec, "small")
    # Box-only instances fall back to box area.
    rec2 = record(rect("a", "cat", 10, 10, 30, 30, mask=False), rect("b", "cat", 100, 10, 160, 70, mask=False))
    assert by_attribute(rec2, "a")["size"].value == "smaller"


def test_annotated_and_estimated_colours():
    img = np.full((H, W, 3), 100, np.uint8)
    img[10:50, 10:50] = COLOR_RGB["red"]
    img[10:50, 100:140] = COLOR_RGB["blue"]
    img[60:100, 180:220] = COLOR_RGB["blue"]
    rec = record(rect("r", "cup", 10, 10, 50, 50), rect("b1", "cup", 100, 10, 140, 50),
                 rect("b2", "cup", 180, 60, 220, 100), image=img)
    assert by_attribute(rec, "r")["color"].phrase == "the red cup"
    assert "color" not in by_attribute(rec, "b1")  # two blue cups
    # The annotation wins over the pixels.
    rec2 = record(rect("r", "cup", 10, 10, 50, 50, color="green"), rect("b1", "cup", 100, 10, 140, 50), image=img)
    assert by_attribute(rec2, "r")["color"].value == "green"
    assert by_attribute(rec2, "b1")["color"].value == "blue"


def test_colour_needs_every_competitor_known():
    img = np.full((H, W, 3), 100, np.uint8)
    img[10:50, 10:50] = COLOR_RGB["red"]
    stripes = np.zeros((40, 40, 3), np.uint8)
    stripes[:, 0::2] = COLOR_RGB["blue"]
    stripes[:, 1::2] = COLOR_RGB["yellow"]
    img[10:50, 100:140] = stripes
    rec = record(rect("r", "cup", 10, 10, 50, 50), rect("s", "cup", 100, 10, 140, 50), image=img)
    assert "color" not in by_attribute(rec, "s")  # half blue, half yellow: undecidable
    assert "color" not in by_attribute(rec, "r")  # the striped one might be read as anything
    # Box-only competitor without an annotated colour: unknown, so no colour either.
    rec2 = record(rect("r", "cup", 10, 10, 50, 50), rect("x", "cup", 100, 10, 140, 50, mask=False), image=img)
    assert "color" not in by_attribute(rec2, "r")


def test_colour_names_that_overlap_do_not_tell_objects_apart():
    # Two copies of one orange-brown object, one lit a little brighter: the names differ
    # (orange vs brown) but a third of each object's pixels vote for the other's name.
    img = np.full((H, W, 3), 100, np.uint8)
    img[10:50, 10:50] = (200, 120, 40)       # orange
    img[10:24, 10:50] = (130, 78, 26)        # brown part
    img[10:50, 100:140] = (130, 78, 26)
    img[10:24, 100:140] = (200, 120, 40)
    rec = record(rect("a", "cat", 10, 10, 50, 50), rect("b", "cat", 100, 10, 140, 50), image=img)
    assert color_name(img[10:50, 10:50].reshape(-1, 3)) == "orange"
    assert color_name(img[10:50, 100:140].reshape(-1, 3)) == "brown"
    assert "color" not in by_attribute(rec, "a") and "color" not in by_attribute(rec, "b")


@pytest.mark.parametrize("name", ["red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "gray", "black", "brown"])
def test_colour_names_of_pure_colours(name):
    pixels = np.tile(np.array(COLOR_RGB[name], np.uint8), (200, 1))
    assert color_name(pixels) == name


@pytest.mark.parametrize("name", ["red", "green", "blue", "purple"])
def test_colour_names_survive_shading_and_noise(name):
    rng = np.random.default_rng(0)
    base = np.array(COLOR_RGB[name], np.float64)
    # A lit-to-shadow ramp down to 40 % brightness with sensor noise, plus 10 % background spill.
    shade = np.linspace(1.0, 0.4, 900)[:, None]
    pixels = base * shade + rng.normal(0, 8, (900, 3))
    spill = rng.integers(0, 256, (100, 3))
    rgb = np.clip(np.vstack([pixels, spill]), 0, 255).astype(np.uint8)
    assert color_name(rgb) == name


def test_colour_name_edge_cases():
    assert color_name(np.zeros((0, 3), np.uint8)) is None
    assert color_name(np.tile(np.array([255, 0, 0], np.uint8), (5, 1))) is None  # too few pixels
    assert color_name(np.array([[250, 250, 250]] * 50 + [[40, 40, 40]] * 50, np.uint8)) is None
    assert color_name(np.array([[200, 120, 40]] * 50, np.uint8)) == "orange"
    assert color_name(np.array([[110, 66, 20]] * 50, np.uint8)) == "brown"  # shaded orange


def test_mirror_in_and_outside():
    rec = record(rect("real", "cat", 10, 40, 60, 90), rect("refl", "cat", 150, 10, 200, 60, in_mirror=True))
    assert by_attribute(rec, "refl")["mirror"].phrase == "the cat in the mirror"
    assert by_attribute(rec, "real")["mirror"].phrase == "the cat outside the mirror"
    # A reflection is never named by location or size, and is no competitor for them: the one
    # real cat is not "the left cat" (of one), nor "the cat" (a reader sees two).
    assert "location" not in by_attribute(rec, "refl") and "size" not in by_attribute(rec, "refl")
    assert set(by_attribute(rec, "real")) == {"mirror"}
    assert anchor_phrase(rec, "real") == "the cat outside the mirror"


def test_a_reflection_does_not_count_for_location_or_size():
    # Two real cats and one reflection between them: the real ones are left and right of two
    # (not of three), "middle" never names the reflection; "outside the mirror" fits neither.
    rec = record(rect("a", "cat", 10, 40, 50, 80), rect("m", "cat", 100, 40, 140, 80, in_mirror=True),
                 rect("b", "cat", 190, 40, 230, 80))
    a = by_attribute(rec, "a")
    assert a["location"].phrase == "the left cat" and "mirror" not in a
    assert by_attribute(rec, "b")["location"].phrase == "the right cat"
    assert by_attribute(rec, "m")["mirror"].value == "in_mirror"
    # A big reflection does not make a real cat "the smaller cat".
    rec3 = record(rect("a", "cat", 10, 40, 50, 80), rect("m", "cat", 80, 0, 180, 100, in_mirror=True),
                  rect("b", "cat", 190, 40, 230, 80))
    assert "size" not in by_attribute(rec3, "a")
    # Two reflections: "the cat in the mirror" is ambiguous; the one real cat is outside.
    rec2 = record(rect("a", "cat", 10, 40, 50, 80), rect("m1", "cat", 100, 40, 140, 80, in_mirror=True),
                  rect("m2", "cat", 190, 40, 230, 80, in_mirror=True))
    assert "mirror" not in by_attribute(rec2, "m1")
    assert by_attribute(rec2, "a")["mirror"].value == "outside_mirror"


def test_identical_twins_are_ambiguous():
    rec = record(rect("a", "cat", 100, 10, 140, 50), rect("b", "cat", 100, 60, 140, 100), rect("d", "dog", 10, 10, 30, 30))
    assert referring_expressions(rec, "a") == []
    assert referring_expressions(rec, "b") == []


def test_ignore_and_table():
    rec = record(rect("a", "cat", 10, 40, 50, 80), rect("b", "cat", 150, 40, 190, 80))
    assert by_attribute(rec, "a")["location"].value == "left"
    only = referring_expressions(rec, "a", ignore=["b"])
    assert [r.attribute for r in only] == ["count"] and only[0].phrase == "the cat"
    table = referring_table(rec)
    assert table == {"a": referring_expressions(rec, "a"), "b": referring_expressions(rec, "b")}
    with pytest.raises(KeyError):
        referring_expressions(rec, "b", ignore=["b"])


def test_relation_and_anchor():
    rec = record(rect("a", "cat", 10, 40, 50, 80), rect("b", "cat", 150, 40, 190, 80), rect("t", "cup", 150, 0, 190, 20))
    assert relation_to(rec, "b", "a") == "to the right of"
    assert relation_to(rec, "a", "b") == "to the left of"
    assert relation_to(rec, "t", "b") == "above"
    assert relation_to(rec, "b", "t") == "below"
    near = record(rect("a", "cat", 100, 40, 140, 80), rect("b", "cat", 110, 45, 150, 85))
    assert relation_to(near, "b", "a") is None
    # After removing "b", the remaining cat is "the cat"; with both present it needs an attribute.
    assert anchor_phrase(rec, "a", ignore=["b"]) == "the cat"
    assert anchor_phrase(rec, "a") == "the left cat"
    twins = record(rect("a", "cat", 100, 10, 140, 50), rect("b", "cat", 100, 60, 140, 100))
    assert anchor_phrase(twins, "a") is None


def test_size_is_careful_with_objects_cut_by_the_border():
    # The small-looking cup is cut by the left edge: it may be bigger in truth.
    rec = record(rect("cut", "cup", 0, 40, 20, 60), rect("big", "cup", 100, 20, 160, 80))
    assert "size" not in by_attribute(rec, "cut")
    assert "size" not in by_attribute(rec, "big")
    # The big one is cut: it only gets bigger in truth, so both claims stand.
    rec2 = record(rect("small", "cup", 20, 40, 40, 60), rect("cut", "cup", 180, 20, 240, 80))
    assert by_attribute(rec2, "small")["size"].value == "smaller"
    assert by_attribute(rec2, "cut")["size"].value == "bigger"


# ---------------------------------------------------------------------------------------------
# Acceptance on demo scenes: every expression picks out exactly the annotated instance, judged by
# an independent listener that resolves the phrase against the scene's ground truth (exact masks,
# recolour names, mirror flags, the cutout each instance was made from), and instances that no
# phrase of the vocabulary can single out get no expression at all.

N_DEMO_SCENES = 300
GT_MARGIN_OF_WIDTH = 0.25  # a named position must be at least this clear in the true masks
GT_SIZE_RATIO = 1.5


def _gt(record):
    """Per instance: (category, centre x and width of the mask's pixel extent, mask area,
    in_mirror, colour identity). The colour identity is the recolour name, or for an object in
    its photo's own colours the cutout it was made from (same cutout = same colour)."""
    described = record.meta["scene"]["instances"]
    out = {}
    for inst in record.instances:
        cols = np.flatnonzero(inst.mask.any(axis=0))
        left, right = cols[0], cols[-1] + 1
        colour = inst.attributes.get("color") or ("natural", described[inst.id]["source"], described[inst.id]["variant"])
        out[inst.id] = dict(category=inst.category, cx=(left + right) / 2, width=right - left,
                            area=int(inst.mask.sum()), in_mirror=bool(inst.attributes["in_mirror"]), colour=colour)
    return out


def _resolve(gt, category, attribute, value, target):
    """The instances a listener who sees the ground truth would take the description to mean
    (``target`` is needed only for colours in a photo's own tones, which have no true name)."""
    peers = {k: g for k, g in gt.items() if g["category"] == category}
    if attribute in ("location", "size"):  # a reflection is not another object
        peers = {k: g for k, g in peers.items() if not g["in_mirror"]}
    n = len(peers)
    by_x = sorted(peers, key=lambda k: peers[k]["cx"])
    by_area = sorted(peers, key=lambda k: peers[k]["area"])
    if attribute == "location":
        valid = {"left": n in (2, 3), "right": n in (2, 3), "middle": n == 3,
                 "leftmost": n >= 4, "rightmost": n >= 4}[value]
        pick = {"left": by_x[0], "leftmost": by_x[0], "right": by_x[-1], "rightmost": by_x[-1],
                "middle": by_x[len(by_x) // 2]}[value]
        return {pick} if valid else set()
    if attribute == "size":
        valid = n == 2 if value in ("smaller", "bigger") else n >= 3
        return {by_area[0] if value in ("smaller", "smallest") else by_area[-1]} if valid else set()
    if attribute == "color":
        # A recoloured object is its palette name. An object in its photo's own colours has no
        # name in the truth: it matches exactly the objects cut from the same photo. (The demo
        # keeps recolours at least 60 degrees of hue from the photo's colour.)
        mine = gt[target]["colour"]
        if isinstance(mine, str):
            return {k for k, g in peers.items() if g["colour"] == value}
        return {k for k, g in peers.items() if g["colour"] == mine or g["colour"] == value}
    if attribute == "mirror":
        return {k for k, g in peers.items() if g["in_mirror"] == (value == "in_mirror")}
    if attribute == "count":
        return set(peers)
    raise AssertionError(f"unknown attribute {attribute}")


def _clear_in_truth(gt, iid, attribute, value):
    """The claim holds with a margin in the true masks (not just by a pixel)."""
    me = gt[iid]
    others = [g for k, g in gt.items() if k != iid and g["category"] == me["category"] and not g["in_mirror"]]
    if attribute == "location":
        gaps = []
        for o in others:
            need = GT_MARGIN_OF_WIDTH * (me["width"] + o["width"]) / 2
            if value in ("left", "leftmost") or (value == "middle" and o["cx"] > me["cx"]):
                gaps.append(o["cx"] - me["cx"] - need)
            else:
                gaps.append(me["cx"] - o["cx"] - need)
        return not me["in_mirror"] and min(gaps) >= 0 if value != "middle" else all(
            abs(o["cx"] - me["cx"]) >= GT_MARGIN_OF_WIDTH * (me["width"] + o["width"]) / 2 for o in others)
    if attribute == "size":
        if value in ("smaller", "smallest"):
            return all(o["area"] >= GT_SIZE_RATIO * me["area"] for o in others)
        return all(me["area"] >= GT_SIZE_RATIO * o["area"] for o in others)
    return True


def _phrase_ok(ref, category):
    words = {"in_mirror": "in the mirror", "outside_mirror": "outside the mirror", "single": ""}
    expected = f"the {category} {words[ref.value]}" if ref.attribute in ("mirror", "count") else f"the {ref.value} {category}"
    return ref.phrase == expected.strip()


VOCABULARY = ([("location", v) for v in ("left", "middle", "right", "leftmost", "rightmost")]
              + [("size", v) for v in ("smaller", "bigger", "smallest", "biggest")]
              + [("mirror", "in_mirror"), ("mirror", "outside_mirror"), ("count", "single")])


@pytest.fixture(scope="module")
def demo_records():
    from datagen.sources.demo import make_scene

    return [make_scene(i, seed=11) for i in range(N_DEMO_SCENES)]


def test_demo_expressions_pick_exactly_the_annotated_instance(demo_records):
    seen = {a: 0 for a in ("location", "size", "color", "mirror", "count")}
    ambiguous = 0
    for rec in demo_records:
        gt = _gt(rec)
        table = referring_table(rec)
        for inst in rec.instances:
            refs = table[inst.id]
            where = f"{rec.id} instance {inst.id} ({inst.category})"
            for ref in refs:
                seen[ref.attribute] += 1
                assert _resolve(gt, inst.category, ref.attribute, ref.value, inst.id) == {inst.id}, f"{where}: {ref}"
                assert _clear_in_truth(gt, inst.id, ref.attribute, ref.value), f"{where}: {ref} not clear"
                assert _phrase_ok(ref, inst.category), f"{where}: {ref.phrase!r}"
            colours = {g["colour"] for k, g in gt.items() if g["category"] == inst.category and k != inst.id}
            vocabulary = VOCABULARY + ([("color", gt[inst.id]["colour"])] if gt[inst.id]["colour"] not in colours else [])
            nameable = any(_resolve(gt, inst.category, a, v, inst.id) == {inst.id} for a, v in vocabulary)
            if not nameable:
                ambiguous += 1
                assert refs == [], f"{where}: nothing in the truth singles it out, yet {refs}"
    # The run must exercise every attribute and some truly ambiguous instances.
    assert min(seen.values()) >= 20, seen
    assert ambiguous >= 10


def test_demo_estimated_colours_match_ground_truth(demo_records):
    """With the colour annotations removed, colours estimated from pixels must still name the
    instance correctly: a recoloured one by its true palette name, and never one of two objects
    cut from the same photo in its own colours."""
    from dataclasses import replace

    checked = 0
    for rec in demo_records:
        gt = _gt(rec)
        bare = replace(rec, instances=[replace(i, attributes={k: v for k, v in i.attributes.items() if k != "color"})
                                       for i in rec.instances])
        for iid, refs in referring_table(bare).items():
            for ref in (r for r in refs if r.attribute == "color"):
                checked += 1
                mine = gt[iid]["colour"]
                peers = [g for k, g in gt.items() if k != iid and g["category"] == gt[iid]["category"]]
                if isinstance(mine, str):
                    assert ref.value == mine, f"{rec.id}/{iid}: estimated {ref.value}, truth {mine}"
                else:
                    assert all(p["colour"] != mine for p in peers), f"{rec.id}/{iid}: same photo colours, named {ref.value}"
                assert all(p["colour"] != ref.value for p in peers), f"{rec.id}/{iid}: a peer is truly {ref.value}"
    assert checked >= 50


def test_two_instances_annotated_with_the_same_colour_are_not_named_by_it():
    # Guarantee: a colour names an instance only when no competitor has that colour. Annotated
    # colours carry no pixel votes, so nothing but the uniqueness rule keeps the two red cups apart.
    rec = record(rect("r1", "cup", 10, 10, 50, 50, color="red"), rect("r2", "cup", 100, 10, 140, 50, color="red"),
                 rect("b", "cup", 180, 10, 220, 50, color="blue"))
    assert "color" not in by_attribute(rec, "r1")
    assert "color" not in by_attribute(rec, "r2")
    assert by_attribute(rec, "b")["color"].phrase == "the blue cup"


def test_an_annotated_colour_that_a_competitor_shows_in_its_pixels_is_not_unique():
    img = np.full((H, W, 3), 100, np.uint8)
    img[10:50, 100:140] = COLOR_RGB["red"]  # the unannotated cup is plainly red
    img[10:50, 180:220] = COLOR_RGB["blue"]
    rec = record(rect("r1", "cup", 10, 10, 50, 50, color="red"), rect("r2", "cup", 100, 10, 140, 50),
                 rect("b", "cup", 180, 10, 220, 50), image=img)
    assert "color" not in by_attribute(rec, "r1")
    assert "color" not in by_attribute(rec, "r2")
    assert by_attribute(rec, "b")["color"].value == "blue"


def test_two_instances_estimated_to_be_the_same_colour_are_not_named_by_it():
    img = np.full((H, W, 3), 100, np.uint8)
    img[10:50, 10:50] = (230, 20, 20)
    img[10:50, 100:140] = (200, 30, 40)  # another shade of red
    img[10:50, 180:220] = COLOR_RGB["blue"]
    rec = record(rect("r1", "cup", 10, 10, 50, 50), rect("r2", "cup", 100, 10, 140, 50),
                 rect("b", "cup", 180, 10, 220, 50), image=img)
    assert color_name(img[10:50, 10:50].reshape(-1, 3)) == color_name(img[10:50, 100:140].reshape(-1, 3)) == "red"
    assert "color" not in by_attribute(rec, "r1")
    assert "color" not in by_attribute(rec, "r2")
    assert by_attribute(rec, "b")["color"].phrase == "the blue cup"


def test_a_category_with_a_dropped_annotation_gets_no_expression():
    # The second cat's annotation was broken and dropped: it is still in the picture, so the kept
    # cat is neither "the cat" nor "the left cat". Dogs are unaffected.
    rec = ImageRecord("test:r", np.full((H, W, 3), 100, np.uint8),
                      [rect("a", "cat", 10, 40, 50, 80), rect("d", "dog", 150, 40, 190, 80)],
                      meta={"dropped_instances": [{"id": "b", "reason": "bad_box", "detail": "", "category": "cat"}]})
    assert referring_expressions(rec, "a") == []
    assert by_attribute(rec, "d")["count"].phrase == "the dog"
