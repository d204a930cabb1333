"""Released SmartEdit weights -> a trainer checkpoint:
``python -m trainer.convert_official --official DIR --llava BASE --sd SD_DIR -o CKPT``.

The official release (TencentARC/SmartEdit) keeps, under one folder, per training step N:

- ``LLM-N/adapter_model.bin``: LoRA on the LLaMA's ``q_proj``/``v_proj``
  (``model.base_model.model.layers.I.self_attn.{q,v}_proj.lora_{A,B}.weight``) and the whole input
  embedding (``model.base_model.model.embed_tokens.weight``; only the new rows are used);
- ``embeddings_qformer/checkpoint-N_embeddings_qformer.bin``: the QFormer (``sd_qformer.*`` and
  ``sd_query_tokens``; ``qformer.*`` / ``query_tokens`` in a stage-1 file), ``lm_head.weight`` (only
  the new rows are used) and LLaVA-1.1's ``mm_projector`` (left to the ``--llava`` base);
- ``modulate-N/adapter_model.bin``: the BIM (``modulate_head``, ``modulate_transformer.*`` in SAM's
  two-way-transformer names, ``pe_layer``, ``dimension_reduction_head_{zeroconv,qformer_out}``);
  absent for MLLMSD (stage 2a), which converts to a checkpoint without BIM;
- ``unet-N/``: the 8-channel UNet, a diffusers folder or a state dict (keys optionally ``unet.``-prefixed).

New tokens: the official vocabulary appends ``<img>``, ``<im_start>``, ``<im_end>``, ``<img_0>..<img_31>``
(35 rows; 33 without the LLaVA-1.1 pair); ours keeps ``<img>`` and the 32 image tokens. Every key of
the official files is either mapped or named in an error: nothing is dropped silently except, onto a
llava-hf base, the ``mm_projector`` and the embedding rows of the base vocabulary (both from ``--llava``).
The LLM, vision tower and projector come from ``--llava``: a llava-hf folder, or the original LLaVA-1.1
code layout the release was trained on (``trainer.llava11``), converted into ``CKPT/llava_base/`` with
its tokenizer (``<im_patch>`` is the image placeholder, ``<im_start>``/``<im_end>`` keep their ids)
and with the release's own rows for the LLaMA vocabulary and ``<im_start>``/``<im_end>`` (the
official inference loads the whole embedding and ``lm_head`` from the release). The checkpoint
records ``--prompt-format`` (default ``official``: SmartEdit's conversation, ``trainer.prompts``).
"""
from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import torch

log = logging.getLogger("trainer.convert_official")
N_IMAGE_TOKENS = 32


def qformer_key(name: str) -> str | None:
    """Official (BLIP-2 / LAVIS BERT) QFormer key -> ours (``QFormer`` over transformers'
    ``Blip2QFormerModel``); None for keys with no counterpart (``embeddings.position_ids``)."""
    if name in ("sd_query_tokens", "query_tokens"):
        return "queries"
    name = re.sub(r"^(sd_)?qformer\.", "", name)
    if name.startswith("embeddings.position_ids"):
        return None
    if name.startswith("embeddings.LayerNorm."):
        return "encoder.layernorm." + name.rsplit(".", 1)[1]
    name = re.sub(r"\.(attention|crossattention)\.self\.", r".\1.attention.", name)
    return "encoder." + name


BIM_BLOCK = {"self_attn": "self_attn", "cross_attn_token_to_image": "text_to_image",
             "cross_attn_image_to_token": "image_to_text", "norm1": "norms.0", "norm2": "norms.1",
             "norm3": "norms.2", "norm4": "norms.3", "mlp.lin1": "mlp.0", "mlp.lin2": "mlp.2"}
BIM_TOP = {"modulate_head": "text_in", "dimension_reduction_head_zeroconv": "image_out",
           "dimension_reduction_head_qformer_out": "text_out", "pe_layer.positional_encoding_gaussian_matrix":
           "positions.freqs", "modulate_transformer.final_attn_token_to_image": "transformer.final_attn",
           "modulate_transformer.norm_final_attn": "transformer.final_norm"}
ATTN = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "out_proj": "out"}


def bim_key(name: str) -> str:
    """Official BIM key (SAM two-way transformer names) -> ours (``trainer.models.bim``)."""
    for old, new in BIM_TOP.items():
        if name == old or name.startswith(old + "."):
            rest = name[len(old):]
            return new + re.sub(r"^\.(q_proj|k_proj|v_proj|out_proj)\.", lambda m: "." + ATTN[m.group(1)] + ".", rest)
    m = re.match(r"modulate_transformer\.layers\.(\d+)\.(.+)$", name)
    if not m:
        raise KeyError(name)
    index, rest = m.groups()
    for old, new in BIM_BLOCK.items():
        if rest.startswith(old + "."):
            tail = rest[len(old) + 1:]
            head, _, param = tail.rpartition(".")
            tail = (ATTN[head] + "." + param) if head in ATTN else tail
            return f"transformer.blocks.{index}.{new}.{tail}"
    raise KeyError(name)


def lora_key(name: str) -> str | None:
    """Official LLaMA LoRA key -> ours inside the LLaVA-hf peft model (None: not a LoRA weight)."""
    m = re.match(r"model\.base_model\.model\.layers\.(\d+)\.self_attn\.([qv]_proj)\.(lora_[AB])(?:\.default)?\.weight$", name)
    if not m:
        return None
    layer, proj, ab = m.groups()
    return f"base_model.model.model.language_model.layers.{layer}.self_attn.{proj}.{ab}.default.weight"


def new_token_rows(weight: torch.Tensor, n_new: int) -> torch.Tensor:
    """The rows of ``<img>`` and ``<img_0..31>`` (ours, in that order) from an official embedding
    or ``lm_head`` matrix whose last ``n_new`` (35 or 33) rows are the new tokens."""
    if n_new == N_IMAGE_TOKENS + 3:  # <img>, <im_start>, <im_end>, <img_0..31>
        tail = weight[-n_new:]
        return torch.cat([tail[:1], tail[3:]])
    if n_new == N_IMAGE_TOKENS + 1:
        return weight[-n_new:]
    raise ValueError(f"expected 33 or 35 new token rows, got {n_new}")


def latest(folder: Path, pattern: str) -> Path | None:
    """The highest-step match of ``pattern`` (with one ``*`` for the step) under ``folder``."""
    def step(path: Path) -> int:
        numbers = re.findall(r"\d+", str(path.relative_to(folder)))
        return int(numbers[0]) if numbers else -1

    found = sorted(folder.glob(pattern), key=step)
    return found[-1] if found else None


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assign(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str, source: Path) -> None:
    state = module.state_dict()
    missing = sorted(set(state) - set(weights))
    extra = sorted(set(weights) - set(state))
    if missing or extra:
        raise ValueError(f"{source}: the {what} keys do not match ours (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, value in weights.items():
        if state[name].shape != value.shape:
            raise ValueError(f"{source}: {what} {name} has shape {tuple(value.shape)}, ours {tuple(state[name].shape)}")
    module.load_state_dict({k: v.to(state[k].dtype) for k, v in weights.items()})


def _embeddings_file(official: Path) -> Path:
    found = latest(official / "embeddings_qformer", "checkpoint-*_embeddings_qformer.bin")
    if found is None and (official / "embeddings_qformer.bin").exists():
        found = official / "embeddings_qformer.bin"
    if found is None:
        raise FileNotFoundError(f"--official {official}: no embeddings_qformer/checkpoint-*_embeddings_qformer.bin")
    return found


def llava11_base(official: Path, llava: Path, out: Path, clip: str = "") -> tuple[Path, int]:
    """Convert the LLaVA-1.1 base ``llava`` into ``out`` (a llava-hf folder) with the release's rows
    for the LLaMA vocabulary and ``<im_start>``/``<im_end>`` and its ``mm_projector`` (as the official
    inference loads them); returns (``out``, LLaMA vocabulary size)."""
    from trainer.llava11 import END_TOKEN, PATCH_TOKEN, START_TOKEN, convert_llava11, load_llava11_tokenizer

    tok = load_llava11_tokenizer(llava)
    llama_rows = tok.convert_tokens_to_ids(PATCH_TOKEN)  # LLaVA-1.1 appends its tokens after LLaMA's
    llm_file = latest(official, "LLM-*/adapter_model.bin")
    embeds = _load(_embeddings_file(official))
    projector = {name: embeds[f"mm_projector.{name}"] for name in ("weight", "bias") if f"mm_projector.{name}" in embeds}
    sources = {"lm_head": embeds.get("lm_head.weight"),
               "embed": next((v for k, v in _load(llm_file).items() if k.endswith("embed_tokens.weight")), None)
               if llm_file else None}
    rows = {}
    for what, full in sources.items():
        if full is None:
            continue
        ids, values = list(range(llama_rows)), [full[:llama_rows]]
        if full.shape[0] - llama_rows == N_IMAGE_TOKENS + 3:  # <img>, <im_start>, <im_end>, <img_0..31>
            ids += tok.convert_tokens_to_ids([START_TOKEN, END_TOKEN])
            values.append(full[llama_rows + 1:llama_rows + 3])
        rows[what] = (torch.tensor(ids), torch.cat(values))
    return convert_llava11(llava, out, clip or None, rows, projector), llama_rows


def convert(official: Path, cfg, out: Path, clip: str = "") -> Path:
    """Build our model on ``cfg``'s bases, overwrite every part the release has, save ``out``.
    A LLaVA-1.1 ``cfg.llava`` is first converted into ``out/llava_base`` (and ``cfg.llava`` set to it)."""
    from trainer.llava11 import is_llava11
    from trainer.models.build import build_model, save_model

    embeds_file = _embeddings_file(official)
    llama_rows = None
    if is_llava11(cfg.llava):
        base, llama_rows = llava11_base(official, Path(cfg.llava), out / "llava_base", clip)
        cfg.llava = str(base)
    bim_file = latest(official, "modulate-*/adapter_model.bin")
    cfg.use_bim = bim_file is not None
    model, tokenizer = build_model(cfg)
    llama_rows = _base_rows(model) if llama_rows is None else llama_rows
    embeds = _load(embeds_file)
    qformer = {}
    for name, value in embeds.items():
        if name.startswith(("sd_qformer.", "qformer.")) or name in ("sd_query_tokens", "query_tokens"):
            key = qformer_key(name)
            if key is not None:
                qformer[key] = value
    _assign(model.qformer, qformer, "QFormer", embeds_file)
    llm_state = model.llm.peft.state_dict()
    rows = {}
    if "lm_head.weight" in embeds:
        head = embeds["lm_head.weight"]
        rows["base_model.model.lm_head.token_adapter.trainable_tokens_delta.default"] = head
    llm_file = latest(official, "LLM-*/adapter_model.bin")
    lora = {}
    if llm_file is not None:
        for name, value in _load(llm_file).items():
            if name.endswith("embed_tokens.weight"):
                rows["base_model.model.model.language_model.embed_tokens.token_adapter.trainable_tokens_delta.default"] = value
            elif (key := lora_key(name)) is not None:
                lora[key] = value
            else:
                raise ValueError(f"{llm_file}: key {name} is neither LoRA nor the embedding")
    with torch.no_grad():
        for key, full in rows.items():
            n_new = full.shape[0] - llama_rows
            llm_state[key].copy_(new_token_rows(full, n_new).to(llm_state[key].dtype))
        for key, value in lora.items():
            if key not in llm_state or llm_state[key].shape != value.shape:
                raise ValueError(f"{llm_file}: LoRA {key} does not fit ours (rank {value.shape}); pass --lora-r")
            llm_state[key].copy_(value.to(llm_state[key].dtype))
    if bim_file is not None:
        _assign(model.bim, {bim_key(k): v for k, v in _load(bim_file).items()}, "BIM", bim_file)
    unet_dir = latest(official, "unet-*")
    if unet_dir is not None:
        _load_unet(model.unet, unet_dir)
    log.info("converted %s: QFormer, %s, %s, %s", official.name, "LoRA + token rows" if llm_file else "token rows",
             "BIM" if bim_file else "no BIM (MLLMSD)", "UNet" if unet_dir else "UNet from --sd/--unet")
    return save_model(model, tokenizer, cfg, out)


def _base_rows(model) -> int:
    """Rows of the base vocabulary (before the 33 new tokens) in our LLaVA."""
    return int(model.llm.image_token_ids.min().item()) - 1


def _load_unet(unet, folder: Path) -> None:
    if (folder / "config.json").exists():
        from trainer.models.unet import load_unet

        weights = load_unet(str(folder)).state_dict()
    else:
        files = sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pt"))
        if not files:
            raise FileNotFoundError(f"{folder}: no UNet weights (a diffusers folder or a .bin state dict)")
        weights = {k.removeprefix("unet."): v for k, v in _load(files[0]).items()}
    _assign(unet, weights, "UNet", folder)


def parse_args(argv=None):
    from trainer.options import add_model_options

    p = argparse.ArgumentParser(prog="python -m trainer.convert_official", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", required=True, help="folder of the released SmartEdit weights")
    p.add_argument("-o", "--output", required=True, help="checkpoint folder to write")
    p.add_argument("--clip", default="", help="local CLIP ViT-L/14 folder for a LLaVA-1.1 --llava: the tower's "
                                              "configuration, and its weights when the LLaVA weights lack them "
                                              "(default: the base's mm_vision_tower, if a local folder)")
    add_model_options(p)
    return p.parse_args(argv)


def main(argv=None) -> Path:
    from trainer.models.build import ModelConfig
    from trainer.options import given_model_options, usage_errors

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    with usage_errors():
        if not (args.llava and args.sd):
            raise ValueError("give --llava (a llava-hf folder) and --sd (the SD-1.5 folder) to convert onto")
        cfg = ModelConfig(**{"prompt_format": "official", **given_model_options(args)})
        out = convert(Path(args.official), cfg, Path(args.output), args.clip)
    print(out)
    return out


if __name__ == "__main__":
    main()
