"""Inference and Reason-Edit style evaluation."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image


def test_edit_cli_writes_an_image_of_the_input_size(trained_ckpt, tmp_path):
    from trainer.edit import main

    src = (np.random.default_rng(0).random((50, 90, 3)) * 255).astype(np.uint8)
    Image.fromarray(src).save(tmp_path / "in.png")
    info = main(["--ckpt", str(trained_ckpt), "--image", str(tmp_path / "in.png"), "--instruction",
                 "Change the red box to blue", "-o", str(tmp_path / "out.png"), "--steps", "2"])
    out = Image.open(tmp_path / "out.png")
    assert out.size == (90, 50) and out.mode == "RGB"
    assert isinstance(info["forced_image_tokens"], bool)


def test_generation_forces_the_image_tokens_when_missing():
    from trainer.generate import _finish

    image_ids = list(range(100, 132))
    ok = _finish([1, 2], [5, 6] + image_ids, image_ids, set(image_ids), eos_id=9)
    assert not ok.forced and ok.ids == [1, 2, 5, 6] + image_ids
    cut = _finish([1, 2], [5, 9, 7], image_ids, set(image_ids), eos_id=9)
    assert cut.forced and cut.ids == [1, 2, 5] + image_ids
    partial = _finish([1], [5, 100, 101, 6], image_ids, set(image_ids), eos_id=9)
    assert partial.forced and partial.ids == [1, 5] + image_ids


def test_background_psnr_differs_from_the_public_whole_frame_version():
    from trainer.metrics import background_psnr, masked_frame_psnr

    src = np.full((10, 10, 3), 100, np.uint8)
    edited = src.copy()
    edited[:, :5] += 10  # background error of 10 levels on half of the background
    mask = np.zeros((10, 10), bool)
    mask[:, 8:] = True  # 20 % of the frame is the edit region
    edited[mask] = 0  # whatever happens inside the mask must not count
    bg = background_psnr(src, edited, mask)
    expected = 10 * np.log10(1 / ((10 / 255) ** 2 * 50 / 80))
    assert abs(bg - expected) < 1e-9
    whole = masked_frame_psnr(src, edited, mask)
    assert whole > bg + 0.9  # the public version counts the 20 masked pixels as perfect


def test_evaluate_manifest_with_checkpoint(trained_ckpt, dataset, tmp_path):
    from trainer.evaluate import main

    report = main(["--manifest", str(dataset / "manifests" / "synthetic.json"), "--ckpt", str(trained_ckpt),
                   "--steps", "1", "--limit", "2", "-o", str(tmp_path)])
    assert report["table"]["Color"]["n"] == 2 and "psnr" in report["table"]["overall"]
    assert any("LPIPS skipped" in s for s in report["skipped"]) and any("CLIP score skipped" in s for s in report["skipped"])
    assert "skipped" in (tmp_path / "metrics.md").read_text()
    assert Image.open(tmp_path / "grid.png").size[0] == 4 * 160
    assert len(list((tmp_path / "edited").glob("*.png"))) == 2


def test_evaluate_reason_edit_folder_with_local_lpips_and_clip(tmp_path, tiny_base):
    """Reason-Edit layout + predictions folder; LPIPS and CLIP from tiny local weights."""
    import torch
    import torchvision
    from transformers import CLIPConfig, CLIPModel

    from trainer.evaluate import main

    rng = np.random.default_rng(0)
    bench, preds = tmp_path / "bench" / "1-Left-Right", tmp_path / "preds" / "1-Left-Right"
    bench.mkdir(parents=True)
    preds.mkdir(parents=True)
    lines = []
    for i in range(2):
        # 256 px (the metric size: no resampling) and an 8-aligned box (exact through JPEG).
        src = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
        mask = np.zeros((256, 256), np.uint8)
        mask[64:160, 96:192] = 255
        Image.fromarray(src).save(bench / f"{i:03d}.png")
        Image.fromarray(mask).save(bench / f"{i:03d}_mask.jpg")
        edited = src.copy()
        edited[mask > 0] = 0
        Image.fromarray(edited).save(preds / f"{i:03d}.png")
        lines.append(f"Remove the left cat CLIP: a sofa without a cat {i}")
    (bench / "Left_Right_text.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alexnet.pth")
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate([64, 192, 384, 256, 256])},
               tmp_path / "alex.pth")
    clip_dir = tmp_path / "clip"
    cfg = CLIPConfig(text_config={"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                  "num_attention_heads": 2, "max_position_embeddings": 77},
                     vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                    "num_attention_heads": 2, "image_size": 32, "patch_size": 8}, projection_dim=16)
    CLIPModel(cfg).save_pretrained(clip_dir)
    from trainer.tiny import build_tokenizer

    build_tokenizer().save_pretrained(clip_dir)
    report = main(["--reason-edit", str(tmp_path / "bench"), "--predictions", str(tmp_path / "preds"), "-o",
                   str(tmp_path / "out"), "--lpips-backbone", str(tmp_path / "alexnet.pth"), "--lpips-linear",
                   str(tmp_path / "alex.pth"), "--clip", str(clip_dir)])
    row = report["table"]["Left-Right"]
    assert row["n"] == 2 and row["psnr"] == 100.0 and abs(row["ssim"] - 1) < 1e-9  # background untouched
    assert row["lpips"] < 1e-6 and 0 <= row["clip"] <= 100
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["skipped"] == []
