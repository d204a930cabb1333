"""Compositing geometry: aspect ratio kept, same ground line, feathering inside the object,
clipping at the frame, donors of any size, and the error codes for pastes that cannot be made."""
import numpy as np
import pytest

from datagen.compositing import CompositingError, cutout, feather_alpha, fit_placement, paste


def _ellipse_donor(h: int, w: int, pad: int = 7, colour=(200, 40, 40)) -> tuple[np.ndarray, np.ndarray]:
    """A donor image with background padding around an elliptical object of size h x w."""
    yy, xx = np.mgrid[0 : h + 2 * pad, 0 : w + 2 * pad]
    mask = ((yy - pad - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - pad - (w - 1) / 2) / (w / 2)) ** 2 <= 1.0
    rgb = np.full((h + 2 * pad, w + 2 * pad, 3), 30, np.uint8)  # the donor's own background
    rgb[mask] = colour
    return rgb, mask


def _base(h=120, w=160) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(60, 120, size=(h, w, 3), dtype=np.uint8)


def _tight(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_cutout_crops_to_the_mask():
    rgb, mask = _ellipse_donor(20, 30)
    crgb, cmask = cutout(rgb, mask)
    assert cmask.shape == (20, 30) and crgb.shape == (20, 30, 3)
    assert cmask[0].any() and cmask[-1].any() and cmask[:, 0].any() and cmask[:, -1].any()


def test_fit_inside_keeps_aspect_and_ground_line():
    # A tall 40x20 object into a wide 60x30 box: height bounds it.
    place = fit_placement((40, 20), (50, 40, 110, 70), (120, 160))
    assert (place.height, place.width) == (30, 15)
    assert place.y + place.height == 70  # bottom edge on the box's bottom: same ground line
    assert place.x == round(80 - 7.5)  # centred horizontally


def test_short_object_stands_on_the_ground_line_not_the_box_top():
    """A wide object in a tall box fills its width only: top- and bottom-alignment differ here,
    and only bottom-alignment keeps the ground line."""
    base = _base()
    rgb, mask = _ellipse_donor(20, 60)  # aspect 1:3 (h:w)
    box = (40.0, 20.0, 120.0, 100.0)  # 80 x 80: width bounds the scale (4/3), height 27 of 80
    res = paste(base, rgb, mask, box, feather_px=0)
    x0, y0, x1, y1 = _tight(res.mask)
    assert y1 == 100 and y0 >= 70  # on the box's bottom edge, far below its top
    assert abs((x1 - x0) - 80) <= 1 and abs((y1 - y0) - 27) <= 1


def test_paste_geometry_aspect_ground_line_and_box_containment():
    base = _base()
    rgb, mask = _ellipse_donor(60, 30)  # aspect 2:1 (h:w)
    box = (40.0, 20.0, 120.0, 100.0)  # 80 wide x 80 tall
    res = paste(base, rgb, mask, box, feather_px=0)
    x0, y0, x1, y1 = _tight(res.mask)
    assert y1 == 100  # same ground line
    assert abs((y1 - y0) - 80) <= 1 and abs((x1 - x0) - 40) <= 1  # scaled 4/3, aspect 2:1 kept
    assert x0 >= 40 and x1 <= 120 and y0 >= 20  # inside the box
    assert abs((x0 + x1) / 2 - 80) <= 1
    # Outside the new mask nothing changed; inside the object colour arrived.
    assert np.array_equal(res.image[~res.mask], base[~res.mask])
    assert np.all(res.image[res.mask] == (200, 40, 40))
    assert res.box == (float(x0), float(y0), float(x1), float(y1))


def test_feathering_stays_inside_the_object_and_softens_its_edge():
    base = np.zeros((80, 80, 3), np.uint8)
    rgb, mask = _ellipse_donor(40, 40, colour=(255, 255, 255))
    hard = paste(base, rgb, mask, (20, 20, 60, 60), feather_px=0)
    soft = paste(base, rgb, mask, (20, 20, 60, 60), feather_px=3)
    assert np.array_equal(soft.mask, hard.mask)  # the ramp lies inside the silhouette
    edge = soft.mask & ~np.pad(soft.mask[1:-1, 1:-1] & soft.mask[:-2, 1:-1] & soft.mask[2:, 1:-1]
                                & soft.mask[1:-1, :-2] & soft.mask[1:-1, 2:], 1)
    assert soft.alpha[edge].max() < 1.0 and hard.alpha[edge].min() == 1.0
    assert soft.alpha.max() == 1.0
    assert np.array_equal(soft.image[~soft.mask], base[~soft.mask])


def test_feather_alpha_ramp():
    m = np.zeros((21, 21), bool)
    m[2:19, 2:19] = True
    a = feather_alpha(m, 4)
    assert a[~m].max() == 0.0 and a[10, 10] == 1.0
    assert 0 < a[2, 10] < a[4, 10] < 1.0


def test_donor_larger_than_the_image_is_scaled_down():
    base = _base(60, 80)
    rgb, mask = _ellipse_donor(900, 600)  # far larger than the 80x60 scene
    res = paste(base, rgb, mask, (10, 10, 50, 50))
    x0, y0, x1, y1 = _tight(res.mask)
    assert res.placement.scale < 0.1
    assert y1 == 50 and x0 >= 10 and x1 <= 50 and y0 >= 10


def test_box_cut_by_the_right_border_scales_by_height_and_clips():
    base = _base(100, 100)
    rgb, mask = _ellipse_donor(40, 80)  # wide object, 1:2
    box = (70.0, 40.0, 100.0, 80.0)  # cut by the right border: only 30 of its width visible
    res = paste(base, rgb, mask, box, feather_px=0)
    place = res.placement
    assert place.height == 40 and place.width == 80  # scaled by the uncut axis (height)
    assert place.x == 70 and place.x + place.width > 100  # anchored left, runs past the frame
    x0, y0, x1, y1 = _tight(res.mask)
    assert place.y + place.height == 80  # same ground line (the ellipse's lowest point is clipped)
    assert x0 >= 70 and x1 == 100 and y1 <= 80 and not res.mask[:, :70].any()


def test_box_cut_by_the_left_and_bottom_borders_covers_and_clips():
    base = _base(100, 100)
    rgb, mask = _ellipse_donor(50, 50)
    box = (0.0, 70.0, 20.0, 100.0)  # corner object: both axes truncated
    res = paste(base, rgb, mask, box, feather_px=0)
    place = res.placement
    assert place.width == place.height == 30  # cover: max(20/50, 30/50) * 50
    assert place.x + place.width == 20 and place.y == 70  # anchored to the inside corner
    assert res.mask.any() and not res.mask[:70].any() and not res.mask[:, 20:].any()


def test_keep_out_protects_other_instances():
    base = _base()
    rgb, mask = _ellipse_donor(60, 60)
    keep = np.zeros(base.shape[:2], bool)
    keep[:, 70:] = True
    res = paste(base, rgb, mask, (40, 20, 100, 80), keep_out=keep)
    assert not res.mask[keep].any()
    assert np.array_equal(res.image[keep], base[keep])


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: (np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), bool)), "empty_donor"),
        (lambda: (np.zeros((10, 10, 3), np.uint8), np.ones((9, 10), bool)), "bad_donor"),
        (lambda: (np.zeros((10, 10), np.uint8), np.ones((10, 10), bool)), "bad_donor"),
    ],
)
def test_bad_donors_raise_with_a_reason(make, reason):
    rgb, mask = make()
    with pytest.raises(CompositingError) as err:
        paste(_base(), rgb, mask, (10, 10, 50, 50))
    assert err.value.reason == reason


def test_everything_kept_out_is_an_empty_paste():
    base = _base()
    rgb, mask = _ellipse_donor(20, 20)
    with pytest.raises(CompositingError) as err:
        paste(base, rgb, mask, (10, 10, 50, 50), keep_out=np.ones(base.shape[:2], bool))
    assert err.value.reason == "empty_paste"
