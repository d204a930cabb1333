"""Assemble SmartEdit from base weights (a LLaVA-hf folder and a diffusers SD folder) or from a
trainer checkpoint, and save the trainable parts as a checkpoint.

Checkpoint layout (everything needed to rebuild the trained model on top of the frozen bases)::

    config.json              {"format", "stage", "model": ModelConfig} with absolute base paths
    tokenizer/               the LLaVA tokenizer *with* the 33 new tokens (checked on load)
    llava_adapter/           peft adapter: LoRA (q_proj/v_proj of the LM) + new-token embedding and lm_head rows
    qformer.safetensors      QFormer (learned queries + BLIP-2 QFormer encoder)
    bim.safetensors          BIM (stage 2b only: two-way transformer, zero-init output heads)
    unet/                    the 8-channel UNet (stage 2; diffusers save_pretrained, fully fine-tuned)
    null_text.safetensors    the empty-prompt embedding used for conditioning dropout / guidance (stage 2)

A stage-1 checkpoint has the first four; stage 2a (``use_bim`` false) has no BIM. ``build_model``
with ``partial=True`` (``--init-from``) loads whichever parts a checkpoint has and starts the others
fresh; with ``partial=False`` (``--resume``, inference) every part the configuration needs must be there.
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
    align_weight: float = 1.0  # stage 1: MSE of the QFormer output against the CLIP text encoder's
    use_bim: bool = True  # False: stage 2a (MLLMSD, no BIM)
    null_text: str = "clip"  # "clip": CLIP("") from the SD folder's text encoder; "zeros": explicit opt-in
    prompt_format: str = "ours"  # "official": SmartEdit's own conversation template (trainer.prompts)

    def __post_init__(self):
        from trainer.prompts import PROMPT_FORMATS

        if self.prompt_format not in PROMPT_FORMATS:  # refused before any weight loads
            raise ValueError(f"--prompt-format {self.prompt_format!r}: expected one of {', '.join(PROMPT_FORMATS)}")

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def require_dir(path: str | Path, what: str, option: str) -> Path:
    """``path`` as a Path, or a one-sentence ``FileNotFoundError`` naming the option to pass."""
    if not path or not Path(path).is_dir():
        raise FileNotFoundError(f"{what} folder {str(path)!r} does not exist; pass {option} with a local folder")
    return Path(path)


def null_text_embedding(sd: Path, num_queries: int, cross_dim: int, mode: str = "clip") -> torch.Tensor:
    """The empty prompt's CLIP text embedding [77, C] from ``sd/text_encoder`` + ``sd/tokenizer``
    (what SD-1.5's unconditional branch was trained on); zeros only when ``mode`` is ``"zeros"``."""
    if mode == "zeros":
        return torch.zeros(num_queries, cross_dim)
    if mode != "clip":
        raise ValueError(f"--null-text {mode!r}: expected clip or zeros")
    if not ((sd / "text_encoder").is_dir() and (sd / "tokenizer").is_dir()):
        raise FileNotFoundError(f"SD folder {sd} has no text_encoder/ and tokenizer/ for the null-text embedding; "
                                "give an SD folder that has them or pass --null-text zeros")
    tok, encoder = load_clip_text(sd)
    ids = tok("", padding="max_length", max_length=num_queries, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        out = encoder(input_ids=ids).last_hidden_state[0]
    if out.shape != (num_queries, cross_dim):
        raise ValueError(f"null-text embedding has shape {tuple(out.shape)}, expected {(num_queries, cross_dim)}")
    return out


def load_clip_text(sd: Path):
    """(CLIP tokenizer padding with its pad or EOS token, frozen ``CLIPTextModel``) from an SD folder."""
    from transformers import AutoTokenizer, CLIPTextModel

    tok = AutoTokenizer.from_pretrained(str(sd / "tokenizer"), local_files_only=True)
    tok.pad_token = tok.pad_token or tok.eos_token
    encoder = CLIPTextModel.from_pretrained(str(sd / "text_encoder"), local_files_only=True).eval()
    encoder.requires_grad_(False)
    return tok, encoder


def _load_state(module: torch.nn.Module, file: Path) -> None:
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(file)), strict=True)


def build_llm(cfg: ModelConfig, ckpt: Path | None, frozen_dtype: torch.dtype):
    """Tokenizer + peft-wrapped LLaVA. The checkpoint's tokenizer and adapter are used when it has them."""
    from peft import PeftModel, get_peft_model

    llava_dir = require_dir(cfg.llava, "LLaVA base", "--llava")
    saved_tok = ckpt is not None and (ckpt / "tokenizer").is_dir()
    tokenizer = load_tokenizer(ckpt / "tokenizer" if saved_tok else llava_dir)
    new_ids = add_image_tokens(tokenizer)
    check_tokenizer(tokenizer)
    llava = load_llava(llava_dir, frozen_dtype)
    resize_for_tokens(llava, tokenizer, new_ids)
    # Rows that train stay fp32 even when the frozen weights are bf16 (their optimizer needs precision).
    llava.get_input_embeddings().float()
    llava.get_output_embeddings().float()
    if ckpt is not None and (ckpt / "llava_adapter").is_dir():
        peft_model = PeftModel.from_pretrained(llava, str(ckpt / "llava_adapter"), is_trainable=True)
    else:
        peft_model = get_peft_model(llava, lora_config(new_ids, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout))
    return tokenizer, LlavaLM(peft_model, new_ids[1:])


def build_qformer(cfg: ModelConfig, llm_hidden: int, cross_dim: int) -> QFormer:
    encoder = build_qformer_encoder(cross_dim, cfg.qformer_layers, cfg.qformer_heads, cfg.qformer_intermediate,
                                    llm_hidden, cfg.qformer_cross_freq)
    return QFormer(encoder, cfg.num_queries, cross_dim)


def _missing_parts(cfg: ModelConfig, ckpt: Path, stage: int) -> list[str]:
    need = ["tokenizer", "llava_adapter", "qformer.safetensors"]
    if stage >= 2:
        need += ["unet", "null_text.safetensors"] + (["bim.safetensors"] if cfg.use_bim else [])
    return [part for part in need if not (ckpt / part).exists()]


def load_parts(ckpt: Path | None, modules: dict[str, torch.nn.Module]) -> list[str]:
    """Load ``NAME.safetensors`` of ``ckpt`` into each module of ``modules`` that has one; returns
    the names loaded."""
    loaded = []
    for name, module in modules.items():
        if module is not None and ckpt is not None and (ckpt / f"{name}.safetensors").exists():
            _load_state(module, ckpt / f"{name}.safetensors")
            loaded.append(name)
    return loaded


def build_model(cfg: ModelConfig, ckpt: str | Path | None = None, frozen_dtype: torch.dtype = torch.float32,
                *, partial: bool = False):
    """Returns ``(SmartEdit, tokenizer)``: parts from ``ckpt`` (all required unless ``partial``),
    the rest new (QFormer/BIM random, UNet from ``cfg.unet`` or the SD folder with the 8-channel surgery)."""
    from diffusers import AutoencoderKL, DDPMScheduler

    ckpt = Path(ckpt) if ckpt else None
    if ckpt is not None and not partial:
        missing = _missing_parts(cfg, ckpt, stage=2)
        if missing:
            raise FileNotFoundError(f"checkpoint {ckpt} lacks {', '.join(missing)}; use --init-from to start "
                                    "from a checkpoint of an earlier stage")
    sd = require_dir(cfg.sd, "Stable Diffusion base", "--sd")
    tokenizer, llm = build_llm(cfg, ckpt, frozen_dtype)
    if ckpt is not None and (ckpt / "unet").is_dir():
        unet = load_unet(str(ckpt / "unet"))
    else:
        unet = load_unet(str(require_dir(cfg.unet, "UNet", "--unet") if cfg.unet else require_dir(sd / "unet", "SD UNet", "--sd")))
    unet = expand_conv_in(unet, in_channels=2 * unet.config.out_channels)
    cross_dim = int(unet.config.cross_attention_dim)
    qformer = build_qformer(cfg, llm.hidden_size, cross_dim)
    bim = None
    if cfg.use_bim:
        bim = build_bim(cross_dim, llm.vision_hidden_size, cross_dim, unet.conv_in.out_channels, cfg.bim_dim or None,
                        cfg.bim_depth, cfg.bim_heads, cfg.bim_mlp, cfg.bim_downsample)
    vae = AutoencoderKL.from_pretrained(str(sd / "vae"), local_files_only=True, torch_dtype=frozen_dtype)
    scheduler = DDPMScheduler.from_pretrained(str(sd), subfolder="scheduler", local_files_only=True)
    load_parts(ckpt, {"qformer": qformer, "bim": bim})
    if ckpt is not None and (ckpt / "null_text.safetensors").exists():
        from safetensors.torch import load_file

        null_text = load_file(str(ckpt / "null_text.safetensors"))["null_text"]
    else:
        null_text = null_text_embedding(sd, cfg.num_queries, cross_dim, cfg.null_text)
    model = SmartEdit(llm, qformer, bim, unet, vae, scheduler, null_text,
                      cfg.lm_weight, cfg.diffusion_weight, cfg.bim_weight)
    return model, tokenizer


def checkpoint_parts(ckpt: str | Path) -> list[str]:
    """The model parts a checkpoint folder holds (for logs: what ``--init-from`` takes from it)."""
    names = ("tokenizer", "llava_adapter", "qformer.safetensors", "bim.safetensors", "unet", "null_text.safetensors")
    return [n.split(".")[0] for n in names if (Path(ckpt) / n).exists()]


def _absolute(path: str) -> str:
    """Local base paths are stored absolute, so a checkpoint works from any working directory."""
    return path if not path or "://" in path else str(Path(path).resolve())


def write_config(cfg: ModelConfig, out: Path, stage: int, init_from: str = "") -> None:
    """``config.json``: format, stage (1 or 2), the ``--init-from`` checkpoint, the ModelConfig."""
    model = asdict(cfg)
    for name in ("llava", "sd", "unet"):
        model[name] = _absolute(model[name])
    meta = {"format": CHECKPOINT_FORMAT, "stage": stage, "init_from": _absolute(init_from), "model": model}
    (out / "config.json").write_text(json.dumps(meta, indent=2))


def save_trainable_parts(out: Path, tokenizer, llm, modules: dict) -> None:
    """Tokenizer, LoRA + new-token adapter, and ``NAME.safetensors`` for each module (None skipped)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    llm.peft.save_pretrained(str(out / "llava_adapter"))
    for name, module in modules.items():
        if module is not None:
            save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()},
                      str(out / f"{name}.safetensors"))


def save_model(model: SmartEdit, tokenizer, cfg: ModelConfig, out: str | Path, init_from: str = "") -> Path:
    """Write the stage-2 checkpoint layout above into ``out`` (created)."""
    from safetensors.torch import save_file

    out = Path(out)
    save_trainable_parts(out, tokenizer, model.llm, {"qformer": model.qformer, "bim": model.bim})
    model.unet.save_pretrained(str(out / "unet"))
    save_file({"null_text": model.null_text.detach().cpu().contiguous()}, str(out / "null_text.safetensors"))
    write_config(cfg, out, stage=2, init_from=init_from)
    return out


def read_checkpoint_meta(ckpt: str | Path) -> dict:
    """``config.json`` of a checkpoint folder, or a one-sentence error saying what is wrong."""
    ckpt = Path(ckpt)
    file = ckpt / "config.json"
    if not ckpt.is_dir():
        raise FileNotFoundError(f"checkpoint folder {ckpt} does not exist")
    if not file.exists():
        raise FileNotFoundError(f"{ckpt} is not a trainer checkpoint: it has no config.json")
    try:
        meta = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or not isinstance(meta.get("model"), dict):
        got = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{ckpt} is not a {CHECKPOINT_FORMAT} checkpoint (format {got!r})")
    return meta


def read_checkpoint_config(ckpt: str | Path) -> ModelConfig:
    """The checkpoint's ModelConfig; relative base paths resolve against the checkpoint folder."""
    cfg = ModelConfig.from_dict(read_checkpoint_meta(ckpt)["model"])
    for name in ("llava", "sd", "unet"):
        value = getattr(cfg, name)
        if value and "://" not in value and not Path(value).is_absolute():
            setattr(cfg, name, str((Path(ckpt) / value).resolve()))
    return cfg
