"""Harmonization backends: classical colour transfer + blending, and the PIH adapter against a
stand-in checkout (inputs at 512 px, curves and gain map applied at full resolution)."""
import cv2
import numpy as np
import pytest
import torch
from tiny_models import tiny_models, torch_threads

from datagen.backends import BackendUnavailable, import_from_checkout
from datagen.harmonization import HARMONIZERS, build_harmonizer
from datagen.harmonization.pih import apply_curves_and_gain, curve_lut, curves_from_table
from datagen.inpainting import grow


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with torch_threads(1):
        yield


def pasted_scene(h=90, w=120, seed=0):
    """Warm orange textured background with a cold blue-grey object pasted on it."""
    rng = np.random.default_rng(seed)
    bg = np.clip(rng.normal([200, 130, 60], 10, (h, w, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    fg = ((yy - 45) / 22.0) ** 2 + ((xx - 60) / 30.0) ** 2 <= 1
    comp = bg.copy()
    shade = (xx[fg] - 30) / 60.0  # a gradient inside the object, so it has structure to keep
    comp[fg] = np.clip(np.stack([70 + 40 * shade, 90 + 40 * shade, 150 + 40 * shade], -1), 0, 255).astype(np.uint8)
    return comp, fg, bg


def lab_mean(img, mask):
    return cv2.cvtColor(img.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[mask].mean(axis=0)


def test_registry_names():
    assert HARMONIZERS.names() == ["classical", "pih"]


@pytest.mark.parametrize("color", ["reinhard", "curves"])
@pytest.mark.parametrize("blend", ["poisson", "feather", "none"])
def test_classical_moves_foreground_toward_surroundings_and_keeps_the_rest(color, blend):
    comp, fg, bg = pasted_scene()
    harm = build_harmonizer("classical", color=color, blend=blend, strength=0.8)
    out = harm.harmonize(comp, fg, background=bg if blend == "feather" else None)
    assert out.shape == comp.shape and out.dtype == np.uint8
    ring = grow(fg, 16) & ~fg
    before = lab_mean(comp, fg) - lab_mean(comp, ring)
    after = lab_mean(out, fg) - lab_mean(out, ring)
    assert abs(after[0]) < 0.6 * abs(before[0])  # lightness moves most of the way to the surroundings
    chroma_before, chroma_after = np.linalg.norm(before[1:]), np.linalg.norm(after[1:])
    assert chroma_after < chroma_before  # chroma moves towards them too ...
    if blend == "none":  # ... but only a little (<= 8 Lab units): a blue-grey object is not tinted orange
        assert chroma_after >= chroma_before - 8.0
    allowed = grow(fg, harm.band) if blend == "poisson" else fg
    assert (out[~allowed] == comp[~allowed]).all()


def test_classical_poisson_handles_object_touching_the_border():
    comp, fg, _ = pasted_scene()
    comp, fg = np.ascontiguousarray(comp[:, 40:]), np.ascontiguousarray(fg[:, 40:])  # object cut by the left edge
    harm = build_harmonizer("classical", blend="poisson")
    out = harm.harmonize(comp, fg)
    assert out.shape == comp.shape
    # cv2.seamlessClone writes into its mask argument; repeated calls must still agree.
    assert (harm.harmonize(comp, fg) == out).all()
    assert (out[~grow(fg, 3)] == comp[~grow(fg, 3)]).all()
    assert not (out[fg] == comp[fg]).all()


def test_classical_degenerate_masks_and_options():
    comp, fg, _ = pasted_scene()
    harm = build_harmonizer("classical")
    assert (harm.harmonize(comp, np.zeros_like(fg)) == comp).all()
    assert (harm.harmonize(comp, np.ones_like(fg)) == comp).all()
    assert (build_harmonizer("classical", color="none", blend="none").harmonize(comp, fg) == comp).all()
    for bad in ({"color": "lab"}, {"blend": "alpha"}, {"strength": 1.5}):
        with pytest.raises(ValueError):
            build_harmonizer("classical", **bad)
    with pytest.raises(ValueError, match="background"):
        harm.harmonize(comp, fg, background=comp[:10])


# ----------------------------------------------------------------------------------------- PIH

def test_curve_lut_matches_pih_grid_sample_exactly():
    # The stand-in checkout's LUT3D: the same grid_sample call as PIH's model.py.
    LUT3D = import_from_checkout(tiny_models().pih.checkout, "model", backend="pih", option="checkout").LUT3D
    curves = np.sort(np.random.default_rng(0).random((3, 32)), axis=1)
    d = 32
    table = np.stack([
        np.broadcast_to(curves[0][None, None, :], (d, d, d)),
        np.broadcast_to(curves[1][None, :, None], (d, d, d)),
        np.broadcast_to(curves[2][:, None, None], (d, d, d))])
    assert np.allclose(curves_from_table(table), curves)
    values = np.arange(256, dtype=np.uint8)
    img = np.ascontiguousarray(np.stack([values, values[::-1], np.roll(values, 7)], -1)[None])  # 1x256x3
    ref = LUT3D()(torch.from_numpy(table)[None].float(), torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    ours = np.stack([curve_lut(curves[c])[img[0, :, c]] for c in range(3)], -1)
    assert np.allclose(ours, ref[0].permute(1, 2, 0).numpy()[0], atol=1e-5)
    with pytest.raises(ValueError, match="3D LUT"):
        curves_from_table(np.random.default_rng(1).random((3, d, d, d)))


@pytest.fixture(scope="module")
def pih():
    return build_harmonizer("pih", **tiny_models().pih.options(), device="cpu")


def soft_paste(h=90, w=120, seed=0):
    """``pasted_scene`` with a feathered alpha: 1 inside, ramping to 0 over the object's outer
    4 px (what ``compositing.paste`` produces), composited as ``fg * a + bg * (1 - a)``."""
    comp, fg, bg = pasted_scene(h, w, seed)
    dist = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 3)
    alpha = np.clip(dist / 4.0, 0, 1).astype(np.float32) * fg
    blended = comp.astype(np.float32) * alpha[..., None] + bg.astype(np.float32) * (1 - alpha[..., None])
    return blended.round().astype(np.uint8), alpha > 0, bg, alpha


def upstream_pih_inputs(comp, alpha, bg):
    """PIH's ``inference.py`` ``preprocess`` as the oracle: PIL images, the alpha as an "L"
    channel, ``T.Resize((512, 512))`` then ``T.ToTensor()`` (the mask through ``T.Grayscale``)."""
    import torchvision.transforms as T
    from PIL import Image

    resize, to_tensor = T.Resize((512, 512)), T.ToTensor()
    mask_l = Image.fromarray((alpha * 255).round().astype(np.uint8), "L")
    return (to_tensor(resize(Image.fromarray(bg))), to_tensor(resize(Image.fromarray(comp))),
            T.Compose([T.Grayscale(), T.ToTensor()])(resize(mask_l)), mask_l)


def test_pih_inputs_follow_inference_py_with_the_soft_alpha(pih):
    comp, fg, bg, alpha = soft_paste()
    pih.harmonize(comp, fg, background=bg, alpha=alpha)
    call = pih.model.calls[-1]
    bg_low, comp_low, mask_low, _ = upstream_pih_inputs(comp, alpha, bg)
    assert torch.allclose(call["background"][0], bg_low, atol=1e-6)
    assert torch.allclose(call["image"][0], comp_low, atol=1e-6)
    assert torch.allclose(call["mask"][0], mask_low, atol=1e-6)
    assert 0 < float(((mask_low > 0) & (mask_low < 1)).float().mean())  # feathered values reach the model


def test_pih_full_resolution_output_follows_inference_py(pih):
    comp, fg, bg, alpha = soft_paste()
    out = pih.harmonize(comp, fg, background=bg, alpha=alpha)
    assert out.shape == comp.shape and out.dtype == np.uint8
    assert (out[~fg] == comp[~fg]).all()
    # Inferencer.forward at full resolution, with the model's own LUT3D and the soft mask.
    import torchvision.transforms.functional as F

    model, (_, _, _, mask_l) = pih.model, upstream_pih_inputs(comp, alpha, bg)
    torch_bg, torch_comp = (torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255 for a in (bg, comp))
    torch_mask = F.to_tensor(mask_l)
    hr = model.PL3D(model.pl_table, torch_comp) * torch_mask + (1 - torch_mask) * torch_bg
    gain = F.resize(model.gainmap, list(torch_bg.shape[-2:]))
    expected = (hr * gain * torch_mask + (1 - torch_mask) * torch_bg)[0].permute(1, 2, 0).clamp(0, 1) * 255
    diff = np.abs(out[fg].astype(float) - expected.round().numpy()[fg])
    assert diff.max() <= 2 and diff.mean() < 0.5
    edge = fg & (alpha < 0.5)  # feathered rim: mostly background, so it keeps mostly background colour
    hard = pih.harmonize(comp, fg, background=bg)
    assert np.abs(out[edge].astype(int) - bg[edge]).mean() < np.abs(hard[edge].astype(int) - bg[edge]).mean()
    assert len(pih.last_run["curves"]) == 3 and len(pih.last_run["curves"][0]) == 32


def test_pih_batch_is_one_forward_pass_and_matches_single_calls(pih):
    from datagen.harmonization import harmonize_batch

    scenes = [soft_paste(seed=s) for s in range(3)] + [soft_paste(h=70, w=150, seed=3)]
    single = [pih.harmonize(c, m, background=b, alpha=a) for c, m, b, a in scenes]
    before = len(pih.model.calls)
    out = harmonize_batch(pih, [s[0] for s in scenes], [s[1] for s in scenes], backgrounds=[s[2] for s in scenes],
                          alphas=[s[3] for s in scenes])
    assert len(pih.model.calls) == before + 1 and pih.model.calls[-1]["image"].shape[0] == 4
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(out, single))


def test_harmonize_batch_helper_loops_over_backends_without_batching():
    from datagen.harmonization import harmonize_batch

    harm = build_harmonizer("classical")
    assert not hasattr(harm, "harmonize_batch")
    comp, fg, bg, alpha = soft_paste()
    out = harmonize_batch(harm, [comp, comp], [fg, fg], alphas=[alpha, None])
    assert (out[0] == harm.harmonize(comp, fg)).all() and (out[1] == out[0]).all()
    with pytest.raises(ValueError, match="one of each"):
        harmonize_batch(harm, [comp], [fg, fg])


def test_pih_checkpoint_from_the_trainer_loads_with_weights_only(tmp_path):
    """``ckpt_g39.pth`` holds {"epoch", "state_dict", "args": optparse.Values}: it loads through
    ``weights_only=True``; a checkpoint holding any other object is refused, not executed."""
    from tiny_models import pih_training_options

    from datagen.harmonization.pih import load_checkpoint

    state = load_checkpoint(tiny_models().pih.checkpoint)
    assert state["epoch"] == 39 and isinstance(state["args"], type(pih_training_options()))
    assert state["args"].maskoffset == 0.6 and state["args"].gpu_id is None and state["args"].onlysaveg is True
    torch.save({"epoch": 1, "state_dict": state["state_dict"], "args": pih_training_options(),
                "hook": cv2.KeyPoint}, tmp_path / "ckpt.pth")
    with pytest.raises(BackendUnavailable, match="objects other than tensors"):
        build_harmonizer("pih", checkout=tiny_models().pih.checkout, checkpoint=tmp_path / "ckpt.pth", device="cpu")


def test_pih_estimates_background_when_not_given(pih):
    comp, fg, _ = pasted_scene()
    out = pih.harmonize(comp, fg)
    bg_seen = pih.model.calls[-1]["background"][0].permute(1, 2, 0).numpy()
    assert (out[~fg] == comp[~fg]).all()
    # The object's blue is gone from the background PIH sees: the hole was filled from the orange around it.
    inside = cv2.resize(fg.astype(np.uint8), (512, 512), interpolation=cv2.INTER_NEAREST).astype(bool)
    assert bg_seen[inside][:, 0].mean() > bg_seen[inside][:, 2].mean()


def test_apply_curves_identity_gain_and_soft_alpha():
    comp, fg, _ = pasted_scene()
    identity = np.tile((np.arange(32) + 0.5) / 32, (3, 1))
    same = apply_curves_and_gain(comp, fg, identity, np.ones(fg.shape, np.float32))
    assert np.abs(same.astype(int) - comp).max() <= 1
    darker = apply_curves_and_gain(comp, fg, identity, np.full(fg.shape, 0.5, np.float32))
    assert np.abs(darker[fg].astype(int) - comp[fg] // 2).max() <= 1
    # alpha 0.5, gain 0.5, background 200: (c*0.5 + 0.5*200) * 0.5 * 0.5 + 0.5 * 200
    half = apply_curves_and_gain(comp, fg, identity, np.full(fg.shape, 0.5, np.float32),
                                 alpha=np.full(fg.shape, 0.5, np.float32), background=np.full_like(comp, 200))
    assert np.abs(half[fg].astype(float) - ((comp[fg] * 0.5 + 100) * 0.25 + 100)).max() <= 1


def test_pih_unavailable_names_the_option(tmp_path):
    with pytest.raises(BackendUnavailable, match="checkout=PATH"):
        build_harmonizer("pih", checkpoint=tiny_models().pih.checkpoint)
    with pytest.raises(BackendUnavailable, match="checkpoint=PATH"):
        build_harmonizer("pih", checkout=tiny_models().pih.checkout)
    torch.save({"epoch": 1, "state_dict": {"PL.0.weight": torch.zeros(1)}}, tmp_path / "ckpt.pth")
    with pytest.raises(BackendUnavailable, match="matching checkpoint"):
        build_harmonizer("pih", checkout=tiny_models().pih.checkout, checkpoint=tmp_path / "ckpt.pth", device="cpu")


def test_checkout_imports_win_over_foreign_modules_of_the_same_name(tmp_path, monkeypatch):
    """PIH's ``model.py`` imports ``utils`` (a folder without ``__init__.py``); an unrelated
    ``utils`` imported earlier must not hijack it."""
    import sys

    foreign = tmp_path / "elsewhere" / "utils"
    foreign.mkdir(parents=True)
    (foreign / "__init__.py").write_text("WHO = 'foreign'\n")
    checkout = tmp_path / "PIH"
    (checkout / "utils").mkdir(parents=True)
    (checkout / "utils" / "helpers.py").write_text("WHO = 'checkout'\n")
    (checkout / "model.py").write_text("from utils.helpers import WHO\n")
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("utils", "model")}
    monkeypatch.setattr(sys, "path", [str(tmp_path / "elsewhere"), *sys.path])
    try:
        import utils  # noqa: F401  (the foreign one, now cached)

        model = import_from_checkout(checkout, "model", backend="pih", option="checkout", owns=("utils",))
        assert model.WHO == "checkout"
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in ("utils", "model")]:
            del sys.modules[k]
        sys.modules.update(saved)
