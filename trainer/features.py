"""Raw shard/VQA samples -> training tensors; conditioning dropout; batch collation.

Images: both branches see the same view, the whole image squashed to a square (as the official
code does): the UNet branch at ``resolution`` (256 by default, as the paper) scaled to [-1, 1], the
vision-tower branch at the tower's input size normalised with its mean/std. A centre crop on one
branch only would misalign the BIM's spatial features with the UNet latents on non-square images.
"""
from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from trainer import IGNORE_INDEX

DROPOUT_P = 0.05  # InstructPix2Pix / SmartEdit: text null r < 2p, image null p <= r < 3p


def draw_dropout(r: float, p: float = DROPOUT_P) -> tuple[bool, bool]:
    """``r`` uniform in [0,1) -> ``(drop_text, drop_image)``: text if r < 2p (10 %), image if
    p <= r < 3p (10 %); both for p <= r < 2p (5 %)."""
    return r < 2 * p, p <= r < 3 * p


def decode_rgb(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def image_member(raw: dict, stem: str) -> bytes:
    """A sample's ``STEM.png|jpg|webp`` member (the shard writer's image formats)."""
    for ext in ("png", "jpg", "webp"):
        if f"{stem}.{ext}" in raw:
            return raw[f"{stem}.{ext}"]
    raise KeyError(f"sample {raw.get('__key__')} has no {stem}.png|jpg|webp member: {sorted(raw)}")


def to_unet_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """PIL -> [3,size,size] float32 in [-1,1]: the whole image squashed to ``size`` x ``size`` (bicubic),
    the same view ``to_vit_tensor`` gives the vision tower."""
    image = image.resize((size, size), Image.Resampling.BICUBIC)
    arr = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
    return arr / 127.5 - 1.0


def to_vit_tensor(image: Image.Image, pre: dict) -> torch.Tensor:
    """PIL -> [3,S,S] float32 normalised for the vision tower (``pre``: size, mean, std)."""
    size = pre["size"]
    arr = np.asarray(image.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    mean, std = np.asarray(pre["mean"], np.float32), np.asarray(pre["std"], np.float32)
    return torch.from_numpy(((arr - mean) / std).copy()).permute(2, 0, 1)


@dataclass
class Featurizer:
    """Turns one raw sample into tensors. ``prompts``: ``trainer.prompts.PromptBuilder``;
    ``vit``: vision preprocessing (size, mean, std); ``dropout_p``: conditioning dropout base rate."""

    prompts: object
    vit: dict
    resolution: int = 256
    dropout_p: float = DROPOUT_P

    def __call__(self, raw: dict, source, rng: random.Random) -> dict:
        """One raw stream item of ``source`` (``trainer.sources.Source``) -> feature dict.

        Shard samples of scenario ``vqa`` (LLaVA-Instruct imported as shards: ``conversations`` in
        the JSON, the image as ``src``) are language-only; every other scenario (understanding,
        reasoning, perception, editing) is an edit pair."""
        if "__vqa__" in raw:
            return self.vqa(raw["__vqa__"], source.image_root, rng)
        meta = json.loads(raw["json"])
        if meta.get("scenario") == "vqa":
            image = decode_rgb(image_member(raw, "src"))
            return self._pack(self.prompts.conversation(meta["conversations"]), image, image, 0.0, False, False,
                              raw["__key__"], "")
        return self.edit(raw, rng, meta)

    def edit(self, raw: dict, rng: random.Random, meta: dict | None = None) -> dict:
        """A shard sample (``src.png|jpg|webp``, ``tgt.png|jpg|webp``, ``json``) -> feature dict."""
        meta = meta if meta is not None else json.loads(raw["json"])
        src = decode_rgb(image_member(raw, "src"))
        tgt = decode_rgb(image_member(raw, "tgt"))
        choices = [meta["instruction"], *(meta.get("paraphrases") or [])]
        instruction = rng.choice(choices)
        tokens = self.prompts.edit_sample(instruction, rng)
        drop_text, drop_image = draw_dropout(rng.random(), self.dropout_p)
        return self._pack(tokens, src, tgt, 1.0, drop_text, drop_image, raw["__key__"], instruction)

    def vqa(self, record: dict, image_root: str, rng: random.Random) -> dict:
        """A LLaVA-Instruct record -> feature dict with ``is_edit`` 0 (language loss only)."""
        import fsspec

        with fsspec.open(_join(image_root, record["image"]), "rb") as f:
            image = decode_rgb(f.read())
        tokens = self.prompts.conversation(record["conversations"])
        return self._pack(tokens, image, image, 0.0, False, False, str(record.get("id", record["image"])), "")

    def _pack(self, tokens, src, tgt, is_edit, drop_text, drop_image, key, instruction) -> dict:
        src_t = to_unet_tensor(src, self.resolution)
        return {
            "input_ids": torch.tensor(tokens.input_ids, dtype=torch.long),
            "labels": torch.tensor(tokens.labels, dtype=torch.long),
            "vit_pixels": to_vit_tensor(src, self.vit),
            "src": src_t,
            "tgt": src_t if tgt is src else to_unet_tensor(tgt, self.resolution),
            "is_edit": torch.tensor(is_edit),
            "drop_text": torch.tensor(drop_text),
            "drop_image": torch.tensor(drop_image),
            "key": key,
            "instruction": instruction,
        }


def _join(root: str, name: str) -> str:
    if "://" in name or name.startswith("/"):
        return name
    return root.rstrip("/") + "/" + name


def collate(samples: list[dict], pad_id: int) -> dict:
    """Right-pad ``input_ids`` (``pad_id``) / ``labels`` (ignored) / ``attention_mask``; stack every
    other tensor; gather everything else (keys, instructions, captions) into lists."""
    length = max(s["input_ids"].shape[0] for s in samples)
    n = len(samples)
    input_ids = torch.full((n, length), pad_id, dtype=torch.long)
    labels = torch.full((n, length), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    for i, s in enumerate(samples):
        k = s["input_ids"].shape[0]
        input_ids[i, :k], labels[i, :k], mask[i, :k] = s["input_ids"], s["labels"], 1
    batch = {"input_ids": input_ids, "labels": labels, "attention_mask": mask}
    for name, value in samples[0].items():
        if name in batch:
            continue
        column = [s[name] for s in samples]
        batch[name] = torch.stack(column) if isinstance(value, torch.Tensor) else column
    return batch
