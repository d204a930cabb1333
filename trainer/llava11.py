"""The original LLaVA-1.1 code layout (haotian-liu/LLaVA, v1.1, which the released SmartEdit
checkpoints were trained on) -> a llava-hf folder our model loads (``LlavaForConditionalGeneration``).

A LLaVA-1.1 folder holds a LLaMA checkpoint (``pytorch_model*.bin`` or ``*.safetensors``, keys
``model.embed_tokens`` / ``model.layers.*`` / ``model.norm`` / ``lm_head``) plus ``model.mm_projector``
(ONE ``Linear(vision width -> LLM width)``), a ``config.json`` with LLaMA's fields and ``mm_*`` ones
(``mm_vision_tower``, ``mm_vision_select_layer``, ``mm_use_im_start_end``), and a tokenizer with
``<im_patch>``, ``<im_start>``, ``<im_end>`` (ids 32000-32002 for LLaMA's 32000). The CLIP vision tower
is either in the weights (``model.vision_tower.[vision_tower.]vision_model.*``) or a CLIP folder
(``--clip``, else ``mm_vision_tower`` when it is a local folder), which also gives its configuration.

Mapping: LLaMA keys go under ``model.language_model.``; the tower under ``model.vision_tower.``
(patch features of ``mm_vision_select_layer`` without CLS = llava-hf's ``default`` strategy).
llava-hf's projector is ``linear_2(act(linear_1(x)))`` and cannot be a single linear, so the exact
equivalent is built: ``linear_1`` = ``mm_projector``, ``act`` = identity (``"linear"``), ``linear_2`` =
the identity matrix with zero bias (x·I + 0 is exact in every float format; it costs one H×H matrix).
The image placeholder is ``<im_patch>`` (``image_token_id``); the tokenizer is saved with the weights.
``rows`` optionally overwrites embedding / ``lm_head`` rows (the official release's own rows).
Shards are converted one at a time, so memory stays at one shard.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

PATCH_TOKEN, START_TOKEN, END_TOKEN = "<im_patch>", "<im_start>", "<im_end>"


def is_llava11(folder: str | Path) -> bool:
    """True for an original-code LLaVA folder (``mm_*`` fields, no llava-hf ``text_config``)."""
    file = Path(folder) / "config.json"
    if not file.exists():
        return False
    cfg = json.loads(file.read_text())
    return "text_config" not in cfg and ("mm_vision_tower" in cfg or "mm_hidden_size" in cfg)


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint shards of a folder: ``*.safetensors``, else ``pytorch_model*.bin``."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"{folder} has no *.safetensors or pytorch_model*.bin weights")
    return files


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    return torch.load(file, map_location="cpu", weights_only=True)


_VISION = re.compile(r"^model\.vision_tower\.(?:vision_tower\.|0\.)?vision_model\.")


def hf_key(name: str) -> str | None:
    """LLaVA-1.1 key -> llava-hf key; None for buffers llava-hf recomputes (rotary ``inv_freq``,
    ``position_ids``). Raises ``KeyError`` for a key of neither kind."""
    if name.endswith(("rotary_emb.inv_freq", "position_ids")):
        return None
    if name in ("model.mm_projector.weight", "model.mm_projector.bias"):
        return "model.multi_modal_projector.linear_1." + name.rsplit(".", 1)[1]
    if _VISION.match(name):
        return "model.vision_tower." + _VISION.sub("", name)
    if name.startswith(("model.embed_tokens.", "model.layers.", "model.norm.")):
        return "model.language_model." + name[len("model."):]
    if name == "lm_head.weight":
        return name
    raise KeyError(name)


_TOWER_PARTS = ("embeddings.", "encoder.", "pre_layrnorm.", "post_layernorm.")


def clip_tower_weights(clip: Path) -> dict[str, torch.Tensor]:
    """The vision tower of a CLIP folder under llava-hf names: ``CLIPModel`` keys (``vision_model.*``;
    the text model and projections are left out) or ``CLIPVisionModel`` keys (with or without the prefix)."""
    out = {}
    for file in weight_files(clip):
        for name, value in read_weights(file).items():
            name = name.removeprefix("vision_model.")
            if name.startswith(_TOWER_PARTS) and not name.endswith("position_ids"):
                out["model.vision_tower." + name] = value
    if not out:
        raise ValueError(f"CLIP folder {clip} has no vision tower weights (a CLIPVisionModel or CLIPModel folder)")
    return out


def _clip_folder(folder: Path, cfg: dict, clip: str | Path | None) -> Path:
    tower = Path(clip) if clip else Path(cfg.get("mm_vision_tower") or "")
    if not (tower / "config.json").exists():
        raise FileNotFoundError(f"the LLaVA-1.1 base {folder} names vision tower {cfg.get('mm_vision_tower')!r}, "
                                "which is not a local folder; pass --clip with a local CLIP ViT-L/14 folder")
    return tower


def hf_config(cfg: dict, clip: Path, tokenizer, vocab_rows: int):
    """``LlavaConfig`` for a LLaVA-1.1 ``config.json`` + its CLIP folder (single-linear projector)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    text_fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                   "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "hidden_act", "rope_theta")
    text = LlamaConfig(**{k: cfg[k] for k in text_fields if k in cfg}, vocab_size=vocab_rows,
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    # LLaVA's "patch" drops CLS (llava-hf "default"); "cls_patch" keeps it ("full").
    strategy = "full" if cfg.get("mm_vision_select_feature") == "cls_patch" else "default"
    return LlavaConfig(
        vision_config=CLIPVisionConfig.from_pretrained(str(clip)), text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids(PATCH_TOKEN),
        vision_feature_layer=int(cfg.get("mm_vision_select_layer", -2)), vision_feature_select_strategy=strategy,
        projector_hidden_act="linear", multimodal_projector_bias=True,
    )


def load_llava11_tokenizer(folder: Path):
    """The LLaVA-1.1 tokenizer; refuses one without ``<im_patch>`` (the image placeholder)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if PATCH_TOKEN not in tok.get_vocab():
        raise ValueError(f"the LLaVA-1.1 base {folder} has no {PATCH_TOKEN} token in its tokenizer; "
                         "give the tokenizer LLaVA-1.1 was trained with")
    return tok


def convert_llava11(folder: str | Path, out: str | Path, clip: str | Path | None = None,
                    rows: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                    projector: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the llava-hf folder for the LLaVA-1.1 base ``folder`` into ``out``; returns ``out``.

    ``rows``: ``{"embed" | "lm_head": (ids [n] int64, values [n, H])}`` overwrite those rows (ids in
    this tokenizer); ``projector``: ``{"weight", "bias"}`` replacing ``mm_projector`` (the release's
    own). The preprocessor config is the CLIP folder's (CLIP's mean/std at the tower's size).
    """
    from safetensors.torch import save_file

    folder, out = Path(folder), Path(out)
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("mm_projector_type", "linear") != "linear":  # checked before any shard is written
        raise ValueError(f"{folder}: mm_projector_type {cfg['mm_projector_type']!r}; only LLaVA-1.1's single "
                         "linear projector is converted")
    clip_dir = _clip_folder(folder, cfg, clip)
    tok = load_llava11_tokenizer(folder)
    out.mkdir(parents=True, exist_ok=True)
    weight_map, has_tower, vocab_rows = {}, False, 0
    targets = {"embed": "model.language_model.embed_tokens.weight", "lm_head": "lm_head.weight"}
    for i, file in enumerate(weight_files(folder)):
        shard = {}
        for name, value in read_weights(file).items():
            try:
                key = hf_key(name)
            except KeyError:
                raise ValueError(f"{file}: key {name} is not part of the LLaVA-1.1 layout") from None
            if key is not None:
                shard[key] = value
        for name, value in (projector or {}).items():
            key = "model.multi_modal_projector.linear_1." + name
            if key in shard:
                shard[key] = _same_shape(value, shard[key], f"the release's mm_projector.{name}")
        has_tower = has_tower or any(k.startswith("model.vision_tower.") for k in shard)
        for what, key in targets.items():
            if key in shard:
                vocab_rows = shard[key].shape[0]
                if what in (rows or {}):
                    ids, values = rows[what]
                    shard[key][ids] = values.to(shard[key].dtype)
        _save_shard(shard, out / f"model-{i:05d}.safetensors", weight_map, save_file)
    hidden = int(cfg["hidden_size"])
    extra = {} if has_tower else clip_tower_weights(clip_dir)
    dtype = next(iter(extra.values())).dtype if extra else torch.float32
    extra["model.multi_modal_projector.linear_2.weight"] = torch.eye(hidden, dtype=dtype)
    extra["model.multi_modal_projector.linear_2.bias"] = torch.zeros(hidden, dtype=dtype)
    _save_shard(extra, out / "model-extra.safetensors", weight_map, save_file)
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
    hf_config(cfg, clip_dir, tok, vocab_rows).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    pre = clip_dir / "preprocessor_config.json"
    if pre.exists():
        shutil.copy(pre, out / "preprocessor_config.json")
    return out


def _same_shape(value: torch.Tensor, like: torch.Tensor, what: str) -> torch.Tensor:
    if value.shape != like.shape:
        raise ValueError(f"{what} has shape {tuple(value.shape)}, the LLaVA-1.1 base's {tuple(like.shape)}")
    return value.to(like.dtype)


def _save_shard(shard: dict, file: Path, weight_map: dict, save_file) -> None:
    if shard:
        save_file({k: v.contiguous() for k, v in shard.items()}, str(file), metadata={"format": "pt"})
        weight_map.update({k: file.name for k in shard})
