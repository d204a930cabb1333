"""Assemble SmartEdit from base weights (a LLaVA-hf folder and a diffusers SD folder) or from a
trainer checkpoint, and save the trainable parts as a checkpoint.

Checkpoint layout (everything needed to rebuild the trained model on top of the frozen bases)::

    config.json              ModelConfig (base paths, sizes, loss weights, resolution)
    tokenizer/               the LLaVA tokenizer *with* the 33 new tokens (checked on load)
    llava_adapter/           peft adapter: LoRA (q_proj/v_proj of the LM) + new-token embedding and lm_head rows
    qformer.safetensors      QFormer (learned queries + BLIP-2 QFormer encoder)
    bim.safetensors          BIM (two-way transformer, zero-init output heads, positional frequencies)
    unet/                    the 8-channel UNet (diffusers save_pretrained, fully fine-tuned)
    null_text.safetensors    the empty-prompt embedding used for conditioning dropout / guidance
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from trainer.models.bim import build_bim
from trainer.models.llava import (LlavaLM, add_image_tokens, check_tokenizer, load_llava, load_tokenizer,
                                  lora_config, resize_for_tokens)
from trainer.models.qformer import QFormer, build_qformer_encoder
from trainer.models.smartedit import SmartEdit
from trainer.models.unet import expand_conv_in, load_unet

CHECKPOINT_FORMAT = "smartedit-stage2/1"


@dataclass
class ModelConfig:
    """Everything that defines the model; SmartEdit-7B values by default (REFERENCE.md)."""

    llava: str = ""  # LLaVA-hf folder (model + tokenizer + preprocessor_config.json)
    sd: str = ""  # diffusers SD folder: vae/, scheduler/, unet/ (+ text_encoder/, tokenizer/ for the null prompt)
    unet: str = ""  # optional UNet folder overriding sd/unet (e.g. InstructDiffusion converted to diffusers)
    num_queries: int = 77
    qformer_layers: int = 6
    qformer_heads: int = 12
    qformer_intermediate: int = 3072
    qformer_cross_freq: int = 2
    bim_dim: int = 0  # 0: the vision tower's width (1024 for CLIP ViT-L/14)
    bim_depth: int = 2
    bim_heads: int = 8
    bim_mlp: int = 2048
    bim_downsample: int = 2
    bim_weight: float = 0.5
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    resolution: int = 256
    max_length: int = 512  # text ids per sample, not counting the image's patch placeholders
    lm_weight: float = 1.0
    diffusion_weight: float = 1.0

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _null_text(sd: Path, num_queries: int, cross_dim: int) -> torch.Tensor:
    """CLIP text encoder output for "" ([77, C]) when ``sd`` has ``text_encoder/`` + ``tokenizer/``,
    else zeros (documented deviation: SD-1.5's unconditional branch was trained on CLIP(""))."""
    if not ((sd / "text_encoder").is_dir() and (sd / "tokenizer").is_dir()):
        return torch.zeros(num_queries, cross_dim)
    from transformers import AutoTokenizer, CLIPTextModel

    tok = AutoTokenizer.from_pretrained(str(sd / "tokenizer"), local_files_only=True)
    encoder = CLIPTextModel.from_pretrained(str(sd / "text_encoder"), local_files_only=True)
    pad = tok.pad_token or tok.eos_token
    tok.pad_token = pad
    ids = tok("", padding="max_length", max_length=num_queries, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        out = encoder(input_ids=ids).last_hidden_state[0]
    if out.shape != (num_queries, cross_dim):
        raise ValueError(f"null-text embedding has shape {tuple(out.shape)}, expected {(num_queries, cross_dim)}")
    return out


def _load_state(module: torch.nn.Module, file: Path) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(file)), strict=True)


def build_llm(cfg: ModelConfig, ckpt: Path | None, frozen_dtype: torch.dtype):
    """Tokenizer + peft-wrapped LLaVA. From a checkpoint, the saved tokenizer and adapter are used."""
    from peft import PeftModel, get_peft_model

    tokenizer = load_tokenizer(ckpt / "tokenizer" if ckpt else cfg.llava)
    new_ids = add_image_tokens(tokenizer)
    check_tokenizer(tokenizer)
    llava = load_llava(cfg.llava, frozen_dtype)
    resize_for_tokens(llava, tokenizer, new_ids)
    # Rows that train stay fp32 even when the frozen weights are bf16 (their optimizer needs precision).
    llava.get_input_embeddings().float()
    llava.get_output_embeddings().float()
    if ckpt:
        peft_model = PeftModel.from_pretrained(llava, str(ckpt / "llava_adapter"), is_trainable=True)
    else:
        peft_model = get_peft_model(llava, lora_config(new_ids, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout))
    return tokenizer, LlavaLM(peft_model, new_ids[1:])


def build_model(cfg: ModelConfig, ckpt: str | Path | None = None, frozen_dtype: torch.dtype = torch.float32):
    """Returns ``(SmartEdit, tokenizer)``; new QFormer/BIM/UNet surgery unless ``ckpt`` is given."""
    from diffusers import AutoencoderKL, DDPMScheduler

    ckpt = Path(ckpt) if ckpt else None
    sd = Path(cfg.sd)
    tokenizer, llm = build_llm(cfg, ckpt, frozen_dtype)
    unet = load_unet(str(ckpt / "unet") if ckpt else (cfg.unet or str(sd / "unet")))
    unet = expand_conv_in(unet, in_channels=2 * unet.config.out_channels)
    cross_dim = int(unet.config.cross_attention_dim)
    encoder = build_qformer_encoder(cross_dim, cfg.qformer_layers, cfg.qformer_heads, cfg.qformer_intermediate,
                                    llm.hidden_size, cfg.qformer_cross_freq)
    qformer = QFormer(encoder, cfg.num_queries, cross_dim)
    bim = build_bim(cross_dim, llm.vision_hidden_size, cross_dim, unet.conv_in.out_channels, cfg.bim_dim or None,
                    cfg.bim_depth, cfg.bim_heads, cfg.bim_mlp, cfg.bim_downsample)
    vae = AutoencoderKL.from_pretrained(str(sd / "vae"), local_files_only=True, torch_dtype=frozen_dtype)
    scheduler = DDPMScheduler.from_pretrained(str(sd), subfolder="scheduler", local_files_only=True)
    if ckpt:
        from safetensors.torch import load_file

        _load_state(qformer, ckpt / "qformer.safetensors")
        _load_state(bim, ckpt / "bim.safetensors")
        null_text = load_file(str(ckpt / "null_text.safetensors"))["null_text"]
    else:
        null_text = _null_text(sd, cfg.num_queries, cross_dim)
    model = SmartEdit(llm, qformer, bim, unet, vae, scheduler, null_text,
                      cfg.lm_weight, cfg.diffusion_weight, cfg.bim_weight)
    return model, tokenizer


def save_model(model: SmartEdit, tokenizer, cfg: ModelConfig, out: str | Path) -> Path:
    """Write the checkpoint layout above into ``out`` (created)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    model.llm.peft.save_pretrained(str(out / "llava_adapter"))
    save_file({k: v.detach().contiguous().cpu() for k, v in model.qformer.state_dict().items()}, str(out / "qformer.safetensors"))
    save_file({k: v.detach().contiguous().cpu() for k, v in model.bim.state_dict().items()}, str(out / "bim.safetensors"))
    model.unet.save_pretrained(str(out / "unet"))
    save_file({"null_text": model.null_text.detach().cpu().contiguous()}, str(out / "null_text.safetensors"))
    meta = {"format": CHECKPOINT_FORMAT, "model": asdict(cfg)}
    (out / "config.json").write_text(json.dumps(meta, indent=2))
    return out


def read_checkpoint_config(ckpt: str | Path) -> ModelConfig:
    meta = json.loads((Path(ckpt) / "config.json").read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{ckpt} is not a {CHECKPOINT_FORMAT} checkpoint (format {meta.get('format')!r})")
    return ModelConfig.from_dict(meta["model"])
