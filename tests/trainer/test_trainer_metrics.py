"""Metric values against independent implementations (torchmetrics, scikit-image) on a real photo
whose edit also disturbs the background, the official protocol, official-style prediction folders,
and the category mapping."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

torchmetrics = pytest.importorskip("torchmetrics")


@pytest.fixture(scope="module")
def pair():
    """(source 256x256 astronaut, edited: noise everywhere + a blurred, recoloured box, soft JPEG-like mask)."""
    from skimage import data

    src = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256), Image.Resampling.BICUBIC))
    rng = np.random.default_rng(0)
    edited = np.clip(src.astype(np.float64) + rng.normal(0, 12, src.shape), 0, 255)
    edited[80:180, 60:200] = edited[80:180, 60:200][..., ::-1] * 0.6
    mask = np.zeros((256, 256), np.uint8)
    mask[80:180, 60:200] = 255
    mask[78:80, 60:200] = 128  # a soft edge, as a JPEG mask has
    return src, edited.astype(np.uint8), mask


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]


def test_official_psnr_and_ssim_match_torchmetrics(pair):
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    from trainer import paper_protocol

    a, b, _ = paper_protocol.prepare(*pair)
    ours_psnr, ours_ssim = paper_protocol.psnr(a, b), paper_protocol.ssim(a, b)
    ref_psnr = PeakSignalNoiseRatio(data_range=1.0)(_tensor(a), _tensor(b)).item()
    ref_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)(_tensor(a), _tensor(b)).item()
    assert 15 < ref_psnr < 40 and 0.2 < ref_ssim < 0.95  # non-trivial: neither metric at its maximum
    assert ours_psnr == pytest.approx(ref_psnr, abs=1e-3)
    assert ours_ssim == pytest.approx(ref_ssim, abs=5e-3)


def test_official_lpips_squeeze_matches_torchmetrics(pair, tmp_path):
    """torchmetrics' LPIPS (SqueezeNet, random backbone: nothing downloaded, its bundled linear layers)
    exported to the two files our loader reads; both give the same distance."""
    from torchmetrics.functional.image.lpips import _LPIPS

    from trainer import paper_protocol
    from trainer.lpips import load_lpips

    torch.manual_seed(0)
    ref = _LPIPS(pretrained=True, net="squeeze", pnet_rand=True).eval()
    state = ref.state_dict()
    backbone = {}
    for key, value in state.items():
        if key.startswith("net.slices."):  # net.slices.K.INDEX.rest: INDEX is torchvision's features index
            rest = key.split(".", 3)[3]
            backbone[f"features.{rest}"] = value
    import torchvision

    full = torchvision.models.squeezenet1_1(weights=None).state_dict()
    full.update(backbone)
    torch.save(full, tmp_path / "squeezenet.pth")
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / "squeeze.pth")
    ours = load_lpips("squeeze", str(tmp_path / "squeezenet.pth"), str(tmp_path / "squeeze.pth"))
    a, b, _ = paper_protocol.prepare(*pair)
    with torch.no_grad():
        expected = ref(_tensor(a) * 2 - 1, _tensor(b) * 2 - 1).item()
    got = paper_protocol.lpips(ours, a, b)
    assert expected > 1e-3 and got == pytest.approx(expected, rel=1e-4)


def test_masked_psnr_matches_scikit_image_on_background_pixels(pair):
    from skimage.metrics import peak_signal_noise_ratio

    from trainer import metrics

    src, edited, mask_l = pair
    mask = mask_l > 127
    bg = ~mask
    expected = peak_signal_noise_ratio(src[bg], edited[bg], data_range=255)
    assert metrics.background_psnr(src, edited, mask) == pytest.approx(expected, abs=1e-6)
    # The public script's whole-frame variant is inflated by the masked pixels that match trivially.
    assert metrics.masked_frame_psnr(src, edited, mask) > expected + 1.0


def test_clip_crop_excludes_the_right_and_bottom_edges(pair):
    from trainer import paper_protocol

    _, edited, mask_l = pair
    crop = paper_protocol.clip_crop(edited, mask_l)
    assert crop.shape[:2] == (179 - 78, 199 - 60)  # PIL crop((left, top, right, bottom)) of the extremes


def test_category_mapping_of_shard_samples():
    from trainer.evaluate import category_of

    def meta(attribute, scenario="understanding"):
        return {"scenario": scenario, "op": "replace", "target": {"attribute": attribute}}

    assert category_of(meta("location")) == "Left-Right"
    assert category_of(meta("size")) == "Relative-Size"
    assert category_of(meta("mirror")) == "Mirror"
    assert category_of(meta("color")) == "Color"
    assert category_of(meta("count")) == "Multiple-Objects"
    assert category_of(meta(None, "reasoning")) == "Reasoning"
    assert category_of(meta("texture")) == "understanding:texture"


def test_official_style_prediction_folders_and_protocol(pair, tmp_path):
    """The official script's edited-image folders (``LeftRight_metrics_1/``, ``Reasoning_metrics_1/``)
    are matched to the benchmark's cases by position, and ``--protocol official`` scores them as it does."""
    from trainer import paper_protocol
    from trainer.evaluate import main

    src, edited, mask_l = pair
    bench, preds = tmp_path / "bench", tmp_path / "preds"
    for folder, out, text in (("1-Left-Right", "LeftRight_metrics_1", "Left_Right_text.txt"),
                              ("6-Reasoning", "Reasoning_metrics_1", "Reason_test.txt")):
        (bench / folder).mkdir(parents=True)
        (preds / out).mkdir(parents=True)
        for i, img in enumerate((src, src[::-1].copy())):
            Image.fromarray(img).save(bench / folder / f"{i:03d}.png")
            Image.fromarray(mask_l).save(bench / folder / f"{i:03d}_mask.png")
            Image.fromarray(edited if i == 0 else img).save(preds / out / f"edit_{i}.png")
        (bench / folder / text).write_text("Remove it CLIP: a photo\nRemove it CLIP: a photo\n")
    report = main(["--reason-edit", str(bench), "--predictions", str(preds), "--protocol", "official",
                   "-o", str(tmp_path / "out")])
    rows = {r["key"]: r for r in report["cases"]}
    a, b, _ = paper_protocol.prepare(src, edited, mask_l)
    assert rows["1-Left-Right/000"]["psnr"] == pytest.approx(paper_protocol.psnr(a, b))
    assert rows["6-Reasoning/001"]["psnr"] == float("inf")  # prediction 1 is the unedited source
    assert report["protocol"] == "official" and set(report["table"]) == {"Left-Right", "Reasoning", "overall"}
