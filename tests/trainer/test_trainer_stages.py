"""The whole recipe on tiny models: stage 1 alignment, then 2a (no BIM, IP2P UNet), then 2b (BIM),
each ``--init-from`` the previous checkpoint; and the start-point rules (resume, conflicts)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

CAPTIONS = ["a red box on a gradient", "a blue rectangle in the corner", "two green squares side by side",
            "a yellow cup to the right of a cup", "the object that can tell the time", "a smaller cat next to a bigger cat"]


@pytest.fixture(scope="module")
def captions(tmp_path_factory) -> Path:
    """An img2dataset webdataset folder (two shards) of the captions above."""
    from trainer.testdata import write_img2dataset_shard

    folder = tmp_path_factory.mktemp("cc-tiny")
    write_img2dataset_shard(folder, CAPTIONS[:3], shard=0)
    write_img2dataset_shard(folder, CAPTIONS[3:], shard=1)
    return folder


def _stage1_batch(model, tok, clip_tok, tiny_cfg):
    import random

    from trainer.captions import CaptionFeaturizer
    from trainer.features import collate
    from trainer.prompts import PromptBuilder

    prompts = PromptBuilder(tok, model.llm.image_token_id, model.llm.n_patches(), tiny_cfg.max_length)
    feat = CaptionFeaturizer(prompts, clip_tok)
    samples = [feat({"__key__": str(i), "txt": c.encode()}, None, random.Random(i)) for i, c in enumerate(CAPTIONS)]
    return collate(samples, tok.pad_token_id)


def test_stage1_alignment_loss_falls_and_only_the_aligned_parts_train(tiny_cfg, fit):
    from trainer.models.align import build_align_model

    torch.manual_seed(0)
    model, tok, clip_tok = build_align_model(tiny_cfg)
    names = [n for n, _ in model.trainable_parameters()]
    assert any(n.startswith("qformer.") for n in names) and any("trainable_tokens_delta" in n for n in names)
    assert not any("lora_" in n or "clip_text" in n for n in names)  # LLM (and its LoRA) and CLIP frozen
    batch = _stage1_batch(model, tok, clip_tok, tiny_cfg)
    # The target really is CLIP's embedding of each caption: different captions, different targets.
    target = model.clip_target(batch["clip_ids"])
    assert not torch.allclose(target[0], target[1])
    before, after = fit(model, batch, steps=15, lr=3e-3)
    assert after["align_loss"] < 0.7 * before["align_loss"]
    assert after["lm_loss"] < before["lm_loss"]


def _argv(data, out, *extra):
    return ["--shards", str(data), "--output", str(out), "--batch-size", "2", "--workers", "0", "--no-progress",
            "--mix-report", "4", *extra]


def test_chain_stage1_then_2a_without_bim_then_2b_with_bim(captions, dataset, tmp_path):
    from safetensors.torch import load_file

    from trainer.models.build import build_model, read_checkpoint_config, read_checkpoint_meta
    from trainer.stage1 import main as stage1
    from trainer.stage2 import main as stage2
    from trainer.tiny import save_tiny_ip2p_unet

    from trainer.captions import caption_source

    assert caption_source(str(captions)).kind == "shards"  # the tars, not img2dataset's record Parquets beside them
    s1 = stage1(_argv(captions, tmp_path / "s1", "--max-steps", "2", "--max-length", "160"))
    ckpt1 = Path(s1["checkpoint"])
    assert s1["last"]["align_loss"] > 0 and sorted(p.name for p in ckpt1.iterdir()) == [
        "config.json", "llava_adapter", "qformer.safetensors", "rng_rank0.pt", "tokenizer", "training_state.pt"]
    assert read_checkpoint_meta(ckpt1)["stage"] == 1

    ip2p = save_tiny_ip2p_unet(tmp_path / "ip2p-unet")
    common = ("--resolution", "64", "--max-length", "320", "--max-steps", "2")
    s2a = stage2(_argv(dataset / "manifests", tmp_path / "s2a", *common, "--no-bim", "--init-from", str(ckpt1),
                       "--unet", str(ip2p)))
    ckpt2a = Path(s2a["checkpoint"])
    assert not (ckpt2a / "bim.safetensors").exists() and (ckpt2a / "unet").is_dir()
    meta = read_checkpoint_meta(ckpt2a)
    assert meta["init_from"] == str(ckpt1.resolve()) and meta["model"]["use_bim"] is False
    assert all(Path(meta["model"][k]).is_absolute() for k in ("llava", "sd", "unet"))  # works from any cwd

    # What --init-from loads: the stage-1 QFormer and token rows, the IP2P UNet as is (8-ch conv_in kept).
    cfg2a = read_checkpoint_config(ckpt2a)
    cfg2a.unet = str(ip2p)
    fresh, _ = build_model(cfg2a, ckpt=ckpt1, partial=True)
    q1 = load_file(str(ckpt1 / "qformer.safetensors"))
    assert all(torch.equal(fresh.qformer.state_dict()[k], v) for k, v in q1.items())
    ip2p_conv = load_file(str(ip2p / "diffusion_pytorch_model.safetensors"))["conv_in.weight"]
    assert ip2p_conv[:, 4:].abs().sum() > 0 and torch.equal(fresh.unet.conv_in.weight, ip2p_conv)
    assert fresh.bim is None

    s2b = stage2(_argv(dataset / "manifests", tmp_path / "s2b", *common, "--init-from", str(ckpt2a)))
    ckpt2b = Path(s2b["checkpoint"])
    assert (ckpt2b / "bim.safetensors").exists() and s2b["last"]["diffusion_loss"] > 0
    assert read_checkpoint_config(ckpt2b).use_bim is True
    # 2b started from 2a's UNet, not from the SD folder's 4-channel one (its conv_in moved on from 2a's).
    conv2a = load_file(str(ckpt2a / "unet" / "diffusion_pytorch_model.safetensors"))["conv_in.weight"]
    conv2b = load_file(str(ckpt2b / "unet" / "diffusion_pytorch_model.safetensors"))["conv_in.weight"]
    assert (conv2b - conv2a).abs().max() < 1e-2 and (conv2b - conv2a).abs().max() > 0
    assert json.loads((ckpt2b / "unet" / "config.json").read_text())["in_channels"] == 8


def test_stage1_reads_parquet_captions(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainer.captions import caption_of, caption_source
    from trainer.data import parquet_samples

    table = pa.table({"image": [b"\xff\xd8 not decoded", None, b"x"], "caption": ["a red box", "a cup", "  "],
                      "status": ["success", "success", "success"]})
    pq.write_table(table, tmp_path / "part-0.parquet")
    source = caption_source(str(tmp_path))
    assert source.kind == "parquet" and source.nsamples == 3
    rows = list(parquet_samples(source.urls))
    assert caption_of(rows[0]) == "a red box" and caption_of(rows[1]) == "a cup"
    with pytest.raises(ValueError, match="empty caption"):
        caption_of(rows[2])
    with pytest.raises(ValueError, match="status"):
        caption_of({"__row__": {"caption": "x", "status": "failed_to_download"}})


def test_resume_refuses_conflicting_options_and_says_nothing_to_do(dataset, tmp_path, train_argv, caplog):
    from trainer.stage2 import main

    out = tmp_path / "run"
    main(train_argv(dataset, out, "--max-steps", "1"))
    with pytest.raises(SystemExit, match="--bim-depth 3 conflicts with checkpoint"):
        main(train_argv(dataset, out, "--max-steps", "2", "--bim-depth", "3"))
    with pytest.raises(SystemExit, match="--no-bim conflicts"):
        main(train_argv(dataset, out, "--max-steps", "2", "--no-bim"))
    with pytest.raises(SystemExit, match="--init-from .* conflicts with checkpoint .* which started from base weights"):
        main(train_argv(dataset, out, "--max-steps", "2", "--init-from", str(out / "checkpoints" / "step-0000001")))
    with caplog.at_level("INFO"):
        summary = main(train_argv(dataset, out, "--max-steps", "1"))
    assert summary["nothing_to_do"] and "already at step 1 (--max-steps 1), nothing to do" in caplog.text
    # `latest` is a folder link that --resume takes.
    latest = out / "checkpoints" / "latest"
    assert main(train_argv(dataset, tmp_path / "other", "--max-steps", "1", "--resume", str(latest)))["nothing_to_do"]


def test_missing_files_and_bad_configs_are_one_sentence(dataset, tmp_path, train_argv, trained_ckpt, monkeypatch):
    import shutil

    from trainer.edit import Editor
    from trainer.edit import main as edit
    from trainer.stage2 import main

    with pytest.raises(SystemExit, match=r"^error: Stable Diffusion base folder '/nope' does not exist; pass --sd"):
        main(train_argv(dataset, tmp_path, "--llava", "/nope", "--sd", "/nope"))
    with pytest.raises(SystemExit, match=r"^error: --recipe .*: no such file"):
        main(train_argv(dataset, tmp_path, "--recipe", str(tmp_path / "none.yaml"))[2:])
    with pytest.raises(FileNotFoundError, match="is not a trainer checkpoint: it has no config.json"):
        Editor(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        Editor(tmp_path)
    # A checkpoint whose SD base moved: from another working directory, one sentence naming --sd.
    ckpt = tmp_path / "moved"
    shutil.copytree(trained_ckpt, ckpt)
    meta = json.loads((ckpt / "config.json").read_text())
    meta["model"]["sd"] = str(tmp_path / "gone-sd")
    (ckpt / "config.json").write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: Stable Diffusion base folder .*gone-sd' does not exist; pass --sd"):
        edit(["--ckpt", str(ckpt), "--image", "x.png", "--instruction", "x", "-o", "y.png"])


def test_report_to_tensorboard_writes_event_files(dataset, tmp_path, train_argv):
    pytest.importorskip("tensorboard")
    from trainer.stage2 import main

    main(train_argv(dataset, tmp_path, "--max-steps", "2", "--report-to", "tensorboard"))
    events = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2]


def test_stage1_resume_reproduces_the_uninterrupted_run(captions, tmp_path):
    from safetensors.torch import load_file

    from trainer.stage1 import main as stage1

    common = ("--max-steps", "4", "--checkpoint-every", "3", "--max-length", "160", "--workers", "2")
    stage1(_argv(captions, tmp_path / "a", *common))
    ckpt3 = tmp_path / "a" / "checkpoints" / "step-0000003"
    stage1(_argv(captions, tmp_path / "b", *common, "--resume", str(ckpt3)))
    rows = {d: [json.loads(x) for x in (tmp_path / d / "loss_log.jsonl").read_text().splitlines()] for d in "ab"}
    assert [r["step"] for r in rows["b"]] == [4]
    assert {k: rows["b"][0][k] for k in ("loss", "align_loss")} == {k: rows["a"][3][k] for k in ("loss", "align_loss")}
    a4 = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000004" / "qformer.safetensors"))
    b4 = load_file(str(tmp_path / "b" / "checkpoints" / "step-0000004" / "qformer.safetensors"))
    assert all(torch.equal(a4[k], b4[k]) for k in a4)
