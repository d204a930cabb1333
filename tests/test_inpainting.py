"""Inpainting backends: OpenCV, LaMa (TorchScript file), SD (diffusers folder), MAT (stand-in
checkout). What is checked is our side: windows, padding, value ranges, mask conventions, seeds and
pasting only the hole back."""
import pickle

import numpy as np
import pytest
import torch
from tiny_models import make_fake_mat_checkout, make_tiny_sd_inpaint, tiny_models, torch_threads

from datagen.backends import BackendUnavailable, import_from_checkout
from datagen.inpainting import INPAINTERS, build_inpainter
from datagen.inpainting.lama import model_inputs
from datagen.inpainting.window import context_window, tile_window


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with torch_threads(1):
        yield


def gradient(h, w):
    yy, xx = np.mgrid[:h, :w]
    return np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), np.full_like(xx, 128)], -1).astype(np.uint8)


def noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def rect(h, w, top, left, bottom, right):
    m = np.zeros((h, w), bool)
    m[top:bottom, left:right] = True
    return m


def test_registry_names():
    assert INPAINTERS.names() == ["lama", "mat", "opencv", "sd"]


# ------------------------------------------------------------------------------------- windows

def test_context_window_keeps_native_scale_and_clips_to_image():
    hole = rect(1000, 800, 500, 300, 540, 340)
    win = context_window(hole, context=0.5, min_side=512)
    assert (win.height, win.width) == (512, 512)
    assert win.top <= 500 and win.top + 512 >= 540 and win.left <= 300 and win.left + 512 >= 340
    small = context_window(rect(60, 90, 0, 70, 10, 90), context=0.5, min_side=64)
    assert (small.top, small.left, small.height, small.width) == (0, 26, 60, 64)


def test_tile_window_crops_pads_or_grows_to_whole_tiles():
    crop = tile_window(rect(600, 700, 550, 10, 590, 60), tile=512, context=64)
    assert (crop.height, crop.width, crop.pad_bottom, crop.pad_right) == (512, 512, 0, 0)
    assert crop.top == 600 - 512 and crop.left == 0
    padded = tile_window(rect(96, 128, 10, 10, 30, 40), tile=512, context=64)
    assert (padded.top, padded.left, padded.height, padded.width) == (0, 0, 96, 128)
    assert (padded.pad_bottom, padded.pad_right) == (512 - 96, 512 - 128)
    wide = tile_window(rect(560, 1100, 100, 200, 300, 800), tile=512, context=64)
    assert (wide.height, wide.width, wide.pad_bottom, wide.pad_right) == (512, 1024, 0, 0)


# -------------------------------------------------------------------------------------- OpenCV

@pytest.mark.parametrize("method", ["telea", "ns"])
def test_opencv_fills_smooth_background(method):
    img = gradient(64, 80)
    hole = rect(64, 80, 20, 25, 40, 50)
    damaged = img.copy()
    damaged[hole] = (255, 0, 255)
    out = build_inpainter("opencv", method=method).inpaint(damaged, hole)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[~hole] == damaged[~hole]).all()
    assert np.abs(out[hole].astype(int) - img[hole]).mean() < 12


def test_opencv_rejects_bad_inputs_and_passes_empty_hole():
    inp = build_inpainter("opencv")
    img = gradient(32, 32)
    with pytest.raises(ValueError, match="hole"):
        inp.inpaint(img, np.zeros((32, 31), bool))
    with pytest.raises(ValueError, match="uint8"):
        inp.inpaint(img.astype(np.float32), np.zeros((32, 32), bool))
    with pytest.raises(ValueError, match="method"):
        build_inpainter("opencv", method="fast")
    assert (inp.inpaint(img, np.zeros((32, 32), bool)) == img).all()


# ---------------------------------------------------------------------------------------- LaMa

def upstream_lama(model, image, hole):
    """LaMa's own prediction path as an oracle (advimman/lama): ``load_image`` (CHW float32 / 255),
    ``pad_img_to_modulo(img, 8)`` = ``np.pad(..., mode='symmetric')`` on the image *and* the mask,
    ``(mask > 0) * 1``, the model, then ``[:orig_h, :orig_w]`` and ``clip(0, 1) * 255`` to uint8."""
    def pad_img_to_modulo(img, mod):
        _, h, w = img.shape
        return np.pad(img, ((0, 0), (0, -h % mod), (0, -w % mod)), mode="symmetric")

    img = pad_img_to_modulo(np.transpose(image, (2, 0, 1)).astype("float32") / 255, 8)
    mask = pad_img_to_modulo((hole.astype(np.uint8) * 255)[None].astype("float32") / 255, 8)
    mask = (mask > 0) * 1
    with torch.no_grad():
        out = model(torch.from_numpy(img)[None], torch.from_numpy(mask).float()[None])
    h, w = hole.shape
    return (np.clip(out[0].permute(1, 2, 0).numpy()[:h, :w], 0, 1) * 255).round().astype(np.uint8)


def test_lama_pads_image_and_mask_symmetric_like_upstream():
    img, hole = noise(50, 61), rect(50, 61, 40, 45, 50, 61)  # touches the bottom and right edges
    lama = build_inpainter("lama", checkpoint=tiny_models().lama, device="cpu")
    pixels, mask = model_inputs(img, hole, lama.window(hole))
    assert pixels.shape == (3, 56, 64) and mask.shape == (1, 56, 64)
    assert pixels.dtype == np.float32 and 0 <= pixels.min() and pixels.max() <= 1
    # The padding mirrors the hole too: the object's pixels are never handed to LaMa as known context.
    assert (mask[0, 50:, 45:61] == 1).all() and (mask[0, 40:, 61:] == 1).all()
    assert (mask[0] == np.pad(hole, ((0, 6), (0, 3)), mode="symmetric")).all()
    out = lama.inpaint(img, hole)
    assert (out[hole] == upstream_lama(lama.model, img, hole)[hole]).all()
    assert (out[~hole] == img[~hole]).all()


def test_lama_runs_torchscript_file_and_pastes_only_the_hole():
    img, hole = noise(50, 61), rect(50, 61, 5, 5, 20, 30)
    inp = build_inpainter("lama", checkpoint=tiny_models().lama, device="cpu")
    assert isinstance(inp.model, torch.jit.ScriptModule)
    out = inp.inpaint(img, hole)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out[~hole] == img[~hole]).all()
    assert (out[hole] == upstream_lama(inp.model, img, hole)[hole]).all()
    assert not (out[hole] == img[hole]).all()


def test_lama_crops_a_window_around_the_hole_of_a_large_image():
    lama = build_inpainter("lama", checkpoint=tiny_models().lama, device="cpu", crop_trigger=256, crop_margin=32)
    img, hole = noise(300, 420, seed=3), rect(300, 420, 250, 380, 290, 415)
    shapes = []
    real = lama.model
    lama.model = lambda image, mask: shapes.append(tuple(image.shape)) or real(image, mask)
    out = lama.inpaint(img, hole)
    win = lama.last_run["window"]
    assert shapes == [(1, 3, 128, 128)]  # 40x35 hole + 2 x 32 margin, in whole 64 px tiles
    assert (win["height"], win["width"]) == (128, 128)
    assert win["top"] <= 250 and win["top"] + 128 >= 290 and win["left"] <= 380 and win["left"] + 128 >= 415
    crop = (slice(win["top"], win["top"] + 128), slice(win["left"], win["left"] + 128))
    assert (out[crop][hole[crop]] == upstream_lama(real, img[crop], hole[crop])[hole[crop]]).all()
    assert (out[~hole] == img[~hole]).all()
    full = build_inpainter("lama", checkpoint=tiny_models().lama, device="cpu")  # 420 px < default trigger
    assert full.window(hole).as_dict() == {"top": 0, "left": 0, "height": 300, "width": 420,
                                           "pad_bottom": 4, "pad_right": 4}


def test_lama_batch_groups_windows_by_shape_and_matches_single_calls():
    from datagen.inpainting import inpaint_batch

    lama = build_inpainter("lama", checkpoint=tiny_models().lama, device="cpu", batch_size=2)
    images = [noise(50, 61, seed=s) for s in range(3)] + [noise(40, 40, seed=9), noise(50, 61, seed=4)]
    holes = [rect(50, 61, 5, 5, 20, 30), rect(50, 61, 30, 10, 49, 40), rect(50, 61, 0, 0, 10, 10),
             rect(40, 40, 10, 10, 20, 20), np.zeros((50, 61), bool)]
    single = [lama.inpaint(i, h) for i, h in zip(images, holes)]
    batches = []
    real = lama.model
    lama.model = lambda image, mask: batches.append(tuple(image.shape)) or real(image, mask)
    out = inpaint_batch(lama, images, holes, seeds=[1, 2, 3, 4, 5])
    assert sorted(batches) == [(1, 3, 40, 40), (1, 3, 56, 64), (2, 3, 56, 64)]
    assert all((a == b).all() for a, b in zip(out, single))


def test_inpaint_batch_helper_loops_over_backends_without_batching():
    from datagen.inpainting import inpaint_batch

    inp = build_inpainter("opencv")
    assert not hasattr(inp, "inpaint_batch")
    imgs, holes = [gradient(32, 40), gradient(20, 20)], [rect(32, 40, 5, 5, 10, 10), rect(20, 20, 2, 2, 8, 8)]
    out = inpaint_batch(inp, imgs, holes)
    assert all((o == inp.inpaint(i, h)).all() for o, i, h in zip(out, imgs, holes))
    with pytest.raises(ValueError, match="one of each"):
        inpaint_batch(inp, imgs, holes, seeds=[1])


def test_lama_unavailable_names_the_option(tmp_path):
    with pytest.raises(BackendUnavailable, match="checkpoint=PATH"):
        build_inpainter("lama")
    with pytest.raises(BackendUnavailable, match="big-lama.pt"):
        build_inpainter("lama", checkpoint=tmp_path / "big-lama.pt")


# ------------------------------------------------------------------------------ SD inpainting

class RecordingPipe:
    """Wraps the real pipeline and records the keyword arguments and result of each call."""

    def __init__(self, pipe):
        self._pipe, self.calls, self.results = pipe, [], []

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        self.results.append(self._pipe(**kwargs))
        return self.results[-1]


@pytest.fixture(scope="module")
def sd():
    return build_inpainter("sd", model_dir=tiny_models().sd, device="cpu", steps=2)


def test_sd_is_seeded_and_changes_only_the_hole(sd):
    img, hole = noise(48, 56), rect(48, 56, 10, 12, 30, 40)
    a, b, c = sd.inpaint(img, hole, seed=3), sd.inpaint(img, hole, seed=3), sd.inpaint(img, hole, seed=4)
    assert a.shape == img.shape and a.dtype == np.uint8
    assert (a[~hole] == img[~hole]).all()
    assert (a == b).all() and not (a == c).all()
    assert sd.last_run["seed"] == 4 and sd.last_run["prompt"] == "background"
    assert sd.resolution == 64 and sd.multiple == 4


def test_sd_crops_a_window_around_the_hole_of_a_large_image(sd, monkeypatch):
    monkeypatch.setattr(sd, "pipe", RecordingPipe(sd.pipe))
    img, hole = noise(300, 400, seed=1), rect(300, 400, 200, 300, 220, 330)
    out = sd.inpaint(img, hole, prompt="a red ball", seed=0)
    call = sd.pipe.calls[-1]
    assert call["prompt"] == ["a red ball"] and call["negative_prompt"] is None
    assert call["image"][0].size == (64, 64) and (call["height"], call["width"]) == (64, 64)
    mask = np.asarray(call["mask_image"][0]) > 0
    win = sd.last_run["window"]
    assert (win["height"], win["width"]) == (64, 64)  # native size, no up- or down-scaling
    assert win["top"] <= 200 and win["top"] + 64 >= 220 and win["left"] <= 300 and win["left"] + 64 >= 330
    assert (mask == hole[win["top"]:win["top"] + 64, win["left"]:win["left"] + 64]).all()
    assert (out[~hole] == img[~hole]).all()


def test_sd_downscales_a_large_hole_window_to_model_size(sd, monkeypatch):
    monkeypatch.setattr(sd, "pipe", RecordingPipe(sd.pipe))
    img, hole = noise(120, 200, seed=2), rect(120, 200, 30, 40, 90, 160)
    out = sd.inpaint(img, hole)
    call = sd.pipe.calls[-1]
    assert max(call["height"], call["width"]) == 64 and call["height"] % 4 == 0 and call["width"] % 4 == 0
    assert call["negative_prompt"] == [sd.removal_negative_prompt]
    assert (out[~hole] == img[~hole]).all()


def test_sd_batch_is_one_call_with_a_generator_per_seed_and_matches_single_calls(sd, monkeypatch):
    from datagen.inpainting import inpaint_batch

    img, hole = noise(48, 56), rect(48, 56, 10, 12, 30, 40)
    other, other_hole = noise(48, 56, seed=5), rect(48, 56, 20, 20, 40, 40)
    seeds, prompts = [3, 4, 5, 6], [None, None, "a red ball", None]
    single = [sd.inpaint(i, h, prompt=p, seed=s)
              for i, h, p, s in zip([img, img, img, other], [hole, hole, hole, other_hole], prompts, seeds)]
    monkeypatch.setattr(sd, "pipe", RecordingPipe(sd.pipe))
    out = inpaint_batch(sd, [img, img, img, other], [hole, hole, hole, other_hole], prompts=prompts, seeds=seeds)
    assert len(sd.pipe.calls) == 1
    call = sd.pipe.calls[0]
    assert len(call["generator"]) == 4 and [g.initial_seed() for g in call["generator"]] == seeds
    assert call["negative_prompt"][2] == "" and call["negative_prompt"][0] == sd.removal_negative_prompt
    for a, b in zip(out, single):  # batched convolutions differ by ~1e-6 before rounding to uint8
        assert np.abs(a.astype(int) - b).max() <= 1 and (a != b).mean() < 1e-3
    assert [r["seed"] for r in sd.last_runs] == seeds and sd.last_run["seed"] == 6


def test_sd_precision_is_recorded_and_half_needs_cuda(sd):
    assert sd.settings()["precision"] == "fp32" and sd.pipe.unet.dtype == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="precision='fp32'"):
            build_inpainter("sd", model_dir=tiny_models().sd, device="cpu", precision="fp16")


@pytest.fixture(scope="module")
def flagged_sd_dir(tmp_path_factory):
    """A tiny SD inpainting folder whose real safety checker flags every image."""
    return make_tiny_sd_inpaint(tmp_path_factory.mktemp("sd") / "flagged", flag_everything_nsfw=True)


def test_sd_flagged_result_is_recorded_and_the_editor_skips_it_as_nsfw_blank(flagged_sd_dir):
    from datagen.reasoning.editors import EditFailed, EditRequest, SdEditor

    flagged = build_inpainter("sd", model_dir=flagged_sd_dir, device="cpu", steps=1)
    img, hole = noise(48, 56), rect(48, 56, 10, 12, 30, 40)
    out = flagged.inpaint(img, hole, seed=1)
    assert flagged.last_run["nsfw"] is True and (out[hole] == 0).all()  # the checker returned black
    request = EditRequest("recolor", img, hole, np.zeros_like(hole), (12.0, 10.0, 40.0, 30.0), "cup", ("red",), 0)
    with pytest.raises(EditFailed) as failed:
        SdEditor(flagged).edit(request, seed=1)
    assert failed.value.reason == "nsfw_blank"


def test_sd_tiny_pipeline_output_slice_is_pinned(sd, monkeypatch):
    """As diffusers' pipeline tests do: a library upgrade that changes what the tiny pipeline
    computes (scheduler, attention, VAE, init) shows up here."""
    monkeypatch.setattr(sd, "pipe", RecordingPipe(sd.pipe))
    img, hole = gradient(48, 56), rect(48, 56, 10, 12, 30, 40)
    out = sd.inpaint(img, hole, prompt="a red ball", seed=7)
    painted = sd.pipe.results[-1].images[0]
    assert painted.shape == (56, 64, 3)
    expected = np.array(PINNED_SD_SLICE, dtype=np.float32)
    assert np.allclose(painted[-3:, -3:, -1].ravel(), expected, atol=1e-3), painted[-3:, -3:, -1].ravel().tolist()
    assert (out[~hole] == img[~hole]).all()


# Float output of the tiny SD inpaint pipeline (torch 2.13 / diffusers 0.42.1, CPU, 2 PNDM steps).
PINNED_SD_SLICE = [0.3602, 0.4412, 0.4586, 0.4081, 0.4724, 0.5434, 0.4258, 0.5189, 0.5869]


def test_reasoning_builder_quarantines_flagged_candidates_as_nsfw_blank(flagged_sd_dir):
    from datagen.masking import build_masker
    from datagen.reasoning import ReasoningBuilder
    from datagen.schema import ImageRecord, Quarantined
    from datagen.sources.demo import make_scene

    builder = ReasoningBuilder(build_masker("annotation"), "sd", candidates=2, ops=["recolor"],
                               editor_options={"model_dir": flagged_sd_dir, "device": "cpu", "steps": 1})
    scene = make_scene(2, 0)
    cat = next(i for i in scene.instances if i.category == "cat")
    items = list(builder(ImageRecord(scene.id, scene.image, [cat], scene.source)))
    assert items and all(isinstance(i, Quarantined) for i in items)  # no black image reaches review
    assert any(i.reason == "nsfw_blank" for i in items)


def test_sd_unavailable_names_the_option(tmp_path):
    with pytest.raises(BackendUnavailable, match="model_dir=PATH"):
        build_inpainter("sd")
    with pytest.raises(BackendUnavailable, match="model_index.json"):
        build_inpainter("sd", model_dir=tmp_path)


# ----------------------------------------------------------------------------------------- MAT

@pytest.fixture(scope="module")
def mat():
    return build_inpainter("mat", **tiny_models().mat.options(), device="cpu")


def test_mat_pads_small_image_to_512_with_keep_mask(mat):
    img, hole = noise(96, 128), rect(96, 128, 30, 40, 50, 90)
    out = mat.inpaint(img, hole, seed=0)
    call = mat.G.calls[-1]
    assert tuple(call["images"].shape) == (1, 3, 512, 512) and tuple(call["masks"].shape) == (1, 1, 512, 512)
    masks = call["masks"][0, 0].numpy()
    expected_keep = np.zeros((512, 512), np.float32)
    expected_keep[:96, :128] = ~hole  # 0 at the hole and in the padding (MAT's README convention)
    assert (masks == expected_keep).all()
    images = call["images"][0].permute(1, 2, 0).numpy()
    assert np.allclose(images[:96, :128], img / 127.5 - 1, atol=1e-6)
    assert images.min() >= -1 and images.max() <= 1
    assert call["noise_mode"] == "const" and tuple(call["z"].shape) == (1, 16) and tuple(call["c"].shape) == (1, 0)
    painted = ((call["output"][0].permute(1, 2, 0) * 127.5 + 127.5).round().clamp(0, 255).byte().numpy())
    assert (out[hole] == painted[:96, :128][hole]).all()
    assert (out[~hole] == img[~hole]).all()


def test_mat_crops_512_window_from_large_image(mat):
    img, hole = noise(600, 700, seed=1), rect(600, 700, 540, 650, 570, 690)
    out = mat.inpaint(img, hole, seed=0)
    call, win = mat.G.calls[-1], mat.last_run["window"]
    assert tuple(call["images"].shape[-2:]) == (512, 512) and (win["pad_bottom"], win["pad_right"]) == (0, 0)
    assert (win["top"], win["left"]) == (600 - 512, 700 - 512)
    keep = call["masks"][0, 0].numpy() == 1
    assert (~keep == hole[88:600, 188:700]).all()
    assert (out[~hole] == img[~hole]).all()


def test_mat_wide_hole_uses_two_tiles_and_seeded_random_noise(mat):
    img, hole = noise(560, 1100, seed=2), rect(560, 1100, 100, 200, 300, 800)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = mat.inpaint(img, hole, seed=5)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is untouched
    assert tuple(mat.G.calls[-1]["images"].shape[-2:]) == (512, 1024) and mat.last_run["noise_mode"] == "random"
    b, c = mat.inpaint(img, hole, seed=5), mat.inpaint(img, hole, seed=6)
    assert (a == b).all() and not (a == c).all()
    assert (a[~hole] == img[~hole]).all()


def test_mat_loads_weights_into_checkout_generator(mat):
    with open(tiny_models().mat.checkpoint, "rb") as f:
        saved = pickle.load(f)["G_ema"]
    assert type(mat.G) is type(saved) and mat.G is not saved
    assert all(torch.equal(p, q) for p, q in zip(saved.state_dict().values(), mat.G.state_dict().values()))


def test_mat_logs_and_records_which_ops_path_runs(caplog, monkeypatch):
    import sys

    from datagen.inpainting.mat import custom_ops_path

    with caplog.at_level("INFO", logger="datagen.inpainting.mat"):
        cpu = build_inpainter("mat", **tiny_models().mat.options(), device="cpu")
    assert cpu.ops == "reference" and "reference ops" in caplog.text and "ops" not in cpu.settings()
    cpu.inpaint(noise(64, 64), rect(64, 64, 10, 10, 20, 20))
    assert cpu.last_run["ops"] == "reference"
    checkout = tiny_models().mat.checkout
    with pytest.warns(UserWarning, match="Falling back"):
        assert custom_ops_path(checkout, "cuda") == "reference"  # the kernels did not build
    for name in ("bias_act", "upfirdn2d"):
        monkeypatch.setattr(sys.modules[f"torch_utils.ops.{name}"], "_plugin", object())
    assert custom_ops_path(checkout, "cuda") == "cuda_ops"


def test_mat_unavailable_names_the_option(tmp_path):
    with pytest.raises(BackendUnavailable, match="checkout=PATH"):
        build_inpainter("mat", checkpoint=tiny_models().mat.checkpoint)
    with pytest.raises(BackendUnavailable, match="checkpoint=PATH"):
        build_inpainter("mat", checkout=tiny_models().mat.checkout)
    with pytest.raises(BackendUnavailable, match="found no 'dnnlib' module"):
        build_inpainter("mat", checkout=tmp_path, checkpoint=tiny_models().mat.checkpoint)


def test_mat_checkpoint_missing_tensors_is_unavailable(tmp_path):
    fake = make_fake_mat_checkout(tmp_path)
    mat_module = import_from_checkout(fake.checkout, "networks.mat", backend="mat", option="checkout")
    G = mat_module.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=512, img_channels=3)
    del G.style
    with open(fake.checkpoint, "wb") as f:
        pickle.dump({"G": G, "D": torch.nn.Linear(1, 1), "G_ema": G}, f)
    with pytest.raises(BackendUnavailable, match="missing from"):
        build_inpainter("mat", **fake.options(), device="cpu")
