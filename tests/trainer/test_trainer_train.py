"""Training: optimisation lowers the loss, exact resume, and the CLI end to end."""
from __future__ import annotations

import json
from pathlib import Path

import torch


def test_few_steps_lower_the_loss(tiny_cfg, dataset, make_batch, fit):
    from trainer.models.build import build_model

    torch.manual_seed(0)
    model, tok = build_model(tiny_cfg)
    batch = make_batch(model, tok, dataset, n_edit=2, vqa=True)
    before, after = fit(model, batch, steps=8, lr=1e-3)
    assert after["loss"] < before["loss"]
    assert after["lm_loss"] < before["lm_loss"] and after["diffusion_loss"] < before["diffusion_loss"]


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "loss_log.jsonl").read_text().splitlines()]


def test_resume_reproduces_the_uninterrupted_run(dataset, tmp_path, train_argv):
    """Checkpoint at step 3, resume in a fresh model/optimizer/loader: step 4 matches bit for bit."""
    from safetensors.torch import load_file

    from trainer.stage2 import main

    common = ("--max-steps", "4", "--checkpoint-every", "3", "--workers", "2", "--lr", "1e-4")
    main(train_argv(dataset, tmp_path / "a", *common))
    ckpt3 = tmp_path / "a" / "checkpoints" / "step-0000003"
    main(train_argv(dataset, tmp_path / "b", *common, "--resume", str(ckpt3)))
    a4, b4 = tmp_path / "a" / "checkpoints" / "step-0000004", tmp_path / "b" / "checkpoints" / "step-0000004"
    step4 = [row for row in _log(tmp_path / "a") if row["step"] == 4][0]
    resumed = _log(tmp_path / "b")
    assert [row["step"] for row in resumed] == [4]
    for k in ("loss", "lm_loss", "diffusion_loss"):
        assert resumed[0][k] == step4[k], k
    for part in ("qformer.safetensors", "bim.safetensors", "llava_adapter/adapter_model.safetensors",
                 "unet/diffusion_pytorch_model.safetensors"):
        x, y = load_file(str(a4 / part)), load_file(str(b4 / part))
        assert x.keys() == y.keys()
        for name in x:
            assert torch.equal(x[name], y[name]), f"{part}:{name}"
    # ...and the resumed weights moved away from the checkpoint they started from.
    q3, q4 = load_file(str(ckpt3 / "qformer.safetensors")), load_file(str(b4 / "qformer.safetensors"))
    assert any(not torch.equal(q3[k], q4[k]) for k in q3)


def test_main_end_to_end_with_vqa_and_mix(dataset, tmp_path, train_argv):
    from transformers import AutoTokenizer

    from trainer import IMAGE_TOKENS
    from trainer.stage2 import main

    vqa = str(next((dataset / "vqa").glob("*.json")))
    summary = main(train_argv(dataset, tmp_path, "--max-steps", "3", "--vqa", vqa,
                              "--mix", "synthetic=2", "--mix", "llava_instruct_tiny=1", "--checkpoint-every", "2"))
    assert summary["step"] == 3
    rows = _log(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3] and all(r["loss"] > 0 for r in rows)
    ckpt = Path(summary["checkpoint"])
    latest = tmp_path / "checkpoints" / "latest"
    assert ckpt.name == "step-0000003" and latest.is_symlink() and latest.resolve() == ckpt.resolve()
    for part in ("config.json", "tokenizer", "llava_adapter/adapter_model.safetensors", "qformer.safetensors",
                 "bim.safetensors", "unet/config.json", "null_text.safetensors", "training_state.pt"):
        assert (ckpt / part).exists(), part
    assert json.loads((ckpt / "unet" / "config.json").read_text())["in_channels"] == 8
    from safetensors.torch import load_file

    adapter = load_file(str(ckpt / "llava_adapter" / "adapter_model.safetensors"))
    rows = [v.shape[0] for k, v in adapter.items() if "trainable_tokens_delta" in k]
    assert rows == [33, 33]  # new-token rows of embed_tokens and lm_head travel with the adapter
    tok = AutoTokenizer.from_pretrained(str(ckpt / "tokenizer"), local_files_only=True)
    assert all(t in tok.get_vocab() for t in IMAGE_TOKENS) and "<img>" in tok.get_vocab()
    # A second call resumes from `latest` and has nothing left to do.
    again = main(train_argv(dataset, tmp_path, "--max-steps", "3"))
    assert again["step"] == 3 and again["nothing_to_do"]
