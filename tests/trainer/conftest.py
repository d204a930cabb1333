"""Shared tiny fixtures for the trainer tests: tiny base weights (saved to disk, loaded back through
``from_pretrained(local_files_only=True)``), a fixed shard set in the project's format, a VQA JSON,
and one short training run whose checkpoint the inference/evaluation tests use."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> dict:
    from trainer.tiny import ensure_tiny_base

    return ensure_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """``root/manifests/{synthetic,perception}.json`` (6 samples / 2 shards, 4 / 2) + ``root/vqa/*.json``."""
    from trainer.testdata import write_dataset, write_vqa

    root = tmp_path_factory.mktemp("data")
    write_dataset(root, "synthetic", 6, samples_per_shard=4, seed=0)
    write_dataset(root, "perception", 4, samples_per_shard=2, seed=1, scenario="perception")
    write_vqa(root, 3)
    return root


@pytest.fixture(scope="session")
def tiny_cfg(tiny_base):
    from trainer.models.build import ModelConfig
    from trainer.tiny import TINY_ARCH

    return ModelConfig(llava=tiny_base["llava"], sd=tiny_base["sd"], resolution=64, max_length=320, **TINY_ARCH)


def train_args(dataset: Path, output: Path, *extra: str) -> list[str]:
    return ["--shards", str(dataset / "manifests"), "--output", str(output), "--resolution", "64",
            "--batch-size", "2", "--workers", "0", "--no-progress", *extra]


@pytest.fixture(scope="session")
def train_argv():
    """``train_argv(dataset, output, *extra)`` -> a small CPU argv for ``trainer.stage2.main``."""
    return train_args


@pytest.fixture(scope="session")
def trained_ckpt(dataset, tmp_path_factory) -> Path:
    """A 2-step run of ``trainer.stage2.main`` (tiny configuration built by the command itself)."""
    from trainer.stage2 import main

    out = tmp_path_factory.mktemp("run")
    summary = main(train_args(dataset, out, "--max-steps", "2"))
    return Path(summary["checkpoint"])


@pytest.fixture
def make_batch(tiny_cfg):
    """Build a collated batch (edit samples + one VQA sample) for a model/tokenizer pair."""
    import random

    from trainer.features import Featurizer, collate
    from trainer.models.llava import image_preprocess_config

    def build(model, tokenizer, dataset: Path, n_edit: int = 2, vqa: bool = True, drop: tuple = ()):
        from trainer.data import tar_samples
        from trainer.prompts import PromptBuilder
        from trainer.sources import manifest_source, vqa_source

        llm = model.llm
        prompts = PromptBuilder(tokenizer, llm.image_token_id, llm.n_patches(), tiny_cfg.max_length)
        feat = Featurizer(prompts, image_preprocess_config(tiny_cfg.llava, llm.vision_size), tiny_cfg.resolution)
        raws = list(tar_samples(manifest_source(str(dataset / "manifests" / "synthetic.json")).urls))[:n_edit]
        samples = [feat.edit(r, random.Random(i)) for i, r in enumerate(raws)]
        for s in samples:
            s["drop_text"][...] = "text" in drop
            s["drop_image"][...] = "image" in drop
        if vqa:
            src = vqa_source(str(next((dataset / "vqa").glob("*.json"))))
            samples.append(feat.vqa(src.records[0], src.image_root, random.Random(9)))
        return collate(samples, tokenizer.pad_token_id)

    return build


def fit_fixed_batch(model, batch, steps: int, lr: float) -> tuple[dict, dict]:
    """AdamW on the trainable parameters for ``steps`` steps on one batch; returns the losses before
    and after, each measured in eval mode under the same seed (no dropout, same noise and timesteps:
    the loss of the weights alone)."""
    import torch

    opt = torch.optim.AdamW([p for _, p in model.trainable_parameters()], lr=lr, weight_decay=0.0)

    def fixed_loss():
        model.eval()
        torch.manual_seed(123)
        with torch.no_grad():
            out = model(batch)
        model.train()
        return out

    before = fixed_loss()
    for _ in range(steps):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, fixed_loss()


@pytest.fixture(scope="session")
def fit():
    """``fit(model, batch, steps, lr) -> (losses before, losses after)`` (see ``fit_fixed_batch``)."""
    return fit_fixed_batch
