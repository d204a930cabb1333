"""Each quality check passes a good edit and catches a constructed bad one, with its reason."""
import cv2
import numpy as np
import pytest

from datagen.compositing import paste
from datagen.quality import (
    PSNR_CAP,
    QualityChecker,
    background_psnr,
    color_histogram,
    hellinger,
    seam_ratio,
)
from tests.tiny_quality_models import make_tiny_clip


def _textured(h=160, w=200, seed=0, base=(90, 140, 70)) -> np.ndarray:
    """A grass-like background: a base colour with smooth noise (real texture, not flat)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 18, size=(h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(np.asarray(base, np.float32) + noise, 0, 255).astype(np.uint8)


def _disc(hw, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@pytest.fixture
def scene():
    """x1: a red disc on texture; y1: the same with the disc's hole filled by inpainting."""
    bg = _textured()
    obj = _disc(bg.shape[:2], (80, 100), 25)
    x1 = bg.copy()
    x1[obj] = (210, 40, 40)
    hole = cv2.dilate(obj.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    y1 = x1.copy()
    filled = cv2.inpaint(x1, hole.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    y1[hole] = filled[hole]
    return bg, x1, y1, obj, hole


def test_measures():
    a = np.zeros((4, 4, 3), np.uint8)
    assert background_psnr(a, a, np.zeros((4, 4), bool)) == PSNR_CAP
    b = a.copy()
    b[0, 0] = 255
    keep_changed_out = np.zeros((4, 4), bool)
    keep_changed_out[0, 0] = True
    assert background_psnr(a, b, keep_changed_out) == PSNR_CAP  # the change is inside the mask
    assert background_psnr(a, b, np.zeros((4, 4), bool)) < 25
    red = color_histogram(np.array([[255, 0, 0]] * 10, np.uint8))
    blue = color_histogram(np.array([[0, 0, 255]] * 10, np.uint8))
    assert hellinger(red, red) == pytest.approx(0.0, abs=1e-7) and hellinger(red, blue) == pytest.approx(1.0)


def test_background_psnr_counts_only_pixels_outside_the_mask():
    """Images that differ both inside and outside the mask, with a PSNR computed by hand: a PSNR
    over the whole frame, over the frame with the mask zeroed, or averaged over the wrong pixel
    count all give other numbers."""
    rng = np.random.default_rng(7)
    src = rng.integers(20, 200, (30, 40, 3), dtype=np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    tgt = src.copy()
    tgt[mask] = 255 - tgt[mask]  # a big change inside: must not count
    step = np.where(rng.random((30, 40, 1)) < 0.5, 6, 14).astype(np.uint8)
    tgt[~mask] = src[~mask] + step[~mask]  # a known change outside
    diff = step[~mask].astype(np.float64).repeat(3, axis=1)
    expected = 10 * np.log10(255.0**2 / np.mean(diff**2))
    assert background_psnr(src, tgt, mask) == pytest.approx(expected, abs=1e-6)
    whole = 10 * np.log10(255.0**2 / np.mean((tgt.astype(float) - src) ** 2))
    assert abs(expected - whole) > 5  # the inputs tell the variants apart


def test_background_psnr_of_a_uniform_shift_outside_the_mask():
    src = np.full((10, 10, 3), 100, np.uint8)
    tgt = src + np.uint8(10)
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    tgt[mask] = src[mask]  # unchanged inside; only outside shifted by 10
    assert background_psnr(src, tgt, mask) == pytest.approx(10 * np.log10(255.0**2 / 100.0), abs=1e-9)
    assert background_psnr(src, tgt, ~mask) == PSNR_CAP  # the change lies inside this mask


def test_good_removal_passes(scene):
    _bg, x1, y1, obj, hole = scene
    rep = QualityChecker().check_removal(x1, y1, obj, hole)
    assert rep.ok, rep.failed
    assert set(rep.passed) == {"mask_area", "background", "removal"}
    assert rep.scores["removal_informative"] and rep.scores["removal_resemblance"] < 0.3
    assert rep.scores["background_psnr"] == PSNR_CAP


def test_object_left_in_place_fails_removal(scene):
    _bg, x1, _y1, obj, hole = scene
    rep = QualityChecker().check_removal(x1, x1.copy(), obj, hole)
    assert rep.reason == "quality:removal"
    assert rep.scores["removal_resemblance"] > 0.9


def test_object_smeared_back_fails_removal(scene):
    """A fill that re-paints the object's colour (a bad inpainter copying it back, slightly shifted)."""
    _bg, x1, y1, obj, hole = scene
    bad = y1.copy()
    shifted = np.roll(obj, 4, axis=1) & hole
    bad[shifted] = (205, 45, 42)
    rep = QualityChecker().check_removal(x1, bad, obj, hole)
    assert rep.reason == "quality:removal"


def test_camouflaged_object_is_uninformative_not_rejected():
    bg = _textured(seed=3)
    obj = _disc(bg.shape[:2], (80, 100), 25)
    hole = cv2.dilate(obj.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    # The "object" has the background's own colours: nothing to tell apart, so no verdict.
    rep = QualityChecker().check_removal(bg, bg.copy(), obj, hole)
    assert rep.ok and rep.scores["removal_informative"] is False


def test_background_change_fails(scene):
    _bg, x1, y1, obj, hole = scene
    leaked = y1.copy()
    leaked[:40] = np.clip(leaked[:40].astype(int) + 40, 0, 255).astype(np.uint8)  # outside the hole
    rep = QualityChecker().check_removal(x1, leaked, obj, hole)
    assert "background" in rep.failed and rep.scores["background_psnr"] < 40


@pytest.mark.parametrize("frac_hole, check_ok", [((0, 2, 0, 2), False), ((0, 160, 0, 200), False), ((40, 120, 50, 150), True)])
def test_mask_area_bounds(frac_hole, check_ok):
    img = _textured()
    y0, y1, x0, x1 = frac_hole
    mask = np.zeros(img.shape[:2], bool)
    mask[y0:y1, x0:x1] = True
    rep = QualityChecker().check_common(img, img, mask)
    assert ("mask_area" not in rep.failed) == check_ok


def _donor(colour=(230, 200, 40)):
    rgb = np.zeros((60, 50, 3), np.uint8)
    m = np.zeros((60, 50), bool)
    m[5:55, 8:42] = True
    rng = np.random.default_rng(1)
    rgb[:] = np.clip(np.asarray(colour) + rng.normal(0, 12, size=(60, 50, 3)), 0, 255).astype(np.uint8)
    return rgb, m


def test_feathered_harmonized_paste_passes_seam(scene):
    _bg, x1, y1, _obj, hole = scene
    rgb, m = _donor(colour=(120, 150, 80))  # colours close to the scene, as after harmonization
    res = paste(y1, rgb, m, (70, 50, 130, 110), feather_px=3)
    rep = QualityChecker().check_paste(x1, res.image, hole | res.mask, res.mask)
    assert rep.ok, (rep.failed, rep.scores)
    assert "seam" in rep.passed


def test_hard_contrasting_patch_fails_seam(scene):
    """A rectangle of foreign content with a hard edge (a cutout that kept its own background)."""
    _bg, x1, y1, _obj, hole = scene
    rgb = np.full((60, 60, 3), 250, np.uint8)
    m = np.ones((60, 60), bool)
    res = paste(y1, rgb, m, (70, 50, 130, 110), feather_px=0)
    rep = QualityChecker().check_paste(x1, res.image, hole | res.mask, res.mask)
    assert rep.reason == "quality:seam", rep.scores
    assert seam_ratio(res.image, res.mask) > 2 * seam_ratio(
        paste(y1, *_donor((120, 150, 80)), (70, 50, 130, 110), feather_px=3).image, res.mask)


def test_report_is_json_ready(scene):
    import json

    _bg, x1, y1, obj, hole = scene
    d = QualityChecker().check_removal(x1, y1, obj, hole).to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d) == {"scores", "passed", "failed"}


def test_clip_check_with_local_weights(tmp_path, scene):
    """The verdict must follow the scores: with a margin just below the measured drop the check
    passes, just above it fails; the recorded scores are those of the crops around the hole."""
    from datagen.quality import ClipScorer, bbox_slices

    scorer = ClipScorer(str(make_tiny_clip(tmp_path)), device="cpu")
    _bg, x1, y1, obj, hole = scene
    checker = QualityChecker(clip=scorer)
    ys, xs = bbox_slices(hole, checker.context_px)
    before = scorer.similarity(x1[ys, xs], "a photo of a ball")
    after = scorer.similarity(y1[ys, xs], "a photo of a ball")
    assert before != pytest.approx(after, abs=1e-4), "the tiny CLIP must tell the crops apart"
    drop = before - after
    just_below = QualityChecker(clip=scorer, clip_margin=drop - 1e-3).check_removal(x1, y1, obj, hole, category="ball")
    just_above = QualityChecker(clip=scorer, clip_margin=drop + 1e-3).check_removal(x1, y1, obj, hole, category="ball")
    assert "clip" in just_below.passed
    assert just_above.reason == "quality:clip"
    assert just_below.scores["clip_before"] == pytest.approx(before, abs=1e-4)
    assert just_below.scores["clip_after"] == pytest.approx(after, abs=1e-4)
    assert QualityChecker(clip=scorer).settings()["clip"].startswith("clip:")
