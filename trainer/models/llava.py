"""LLaVA with the 33 new tokens, LoRA on the language model only, and the image-token read-out.

The base is transformers' ``LlavaForConditionalGeneration`` loaded from a local folder. New tokens
(``<img>`` marker + ``<img_0>..<img_31>``) are added to the tokenizer; their input-embedding and
``lm_head`` rows are trained through peft's trainable-token adapter (a separate trainable delta for
just those rows: the old rows stay bit-for-bit frozen and the optimizer holds 2x33 rows, not the
whole vocabulary). LoRA targets ``q_proj``/``v_proj`` of the *language model* only: a plain
``["q_proj", "v_proj"]`` list would also match the CLIP vision tower, so the target is a regex
anchored on ``language_model``. Vision tower and projector stay frozen.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from trainer import IMAGE_MARKER, IMAGE_TOKENS

LORA_TARGET_REGEX = r".*language_model.*\.(q_proj|v_proj)"


def new_token_list() -> list[str]:
    return [IMAGE_MARKER, *IMAGE_TOKENS]


def load_tokenizer(path: str | Path):
    """``AutoTokenizer`` from a local folder; right padding (training pads after the answer)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    tok.padding_side = "right"
    if tok.pad_token_id is None:  # LLaMA tokenizers ship without one; <unk> is LLaVA's choice
        tok.pad_token = tok.unk_token
    return tok


def add_image_tokens(tokenizer) -> list[int]:
    """Add ``<img>`` and ``<img_0>..<img_31>`` (no-op if present); return their ids in that order."""
    missing = [t for t in new_token_list() if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(new_token_list())
    if len(set(ids)) != len(ids) or any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise ValueError("the tokenizer could not add the 33 SmartEdit tokens as distinct ids")
    return ids


def check_tokenizer(tokenizer) -> None:
    """Raise unless each new token encodes to its own single id (whitespace pieces aside): a
    vocabulary that splits them is the most common SmartEdit bug (wrong tokenizer for a checkpoint)."""
    for token in new_token_list():
        tid = tokenizer.convert_tokens_to_ids(token)
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        rest = [i for i in ids if i != tid]
        if ids.count(tid) != 1 or tokenizer.decode(rest).strip():
            raise ValueError(f"token {token!r} encodes to {ids}; save and load the checkpoint's tokenizer")


def load_llava(path: str | Path, dtype: torch.dtype = torch.float32):
    """``LlavaForConditionalGeneration.from_pretrained(path, local_files_only=True)`` in ``dtype``."""
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(str(path), local_files_only=True, dtype=dtype)


def resize_for_tokens(model, tokenizer, new_ids: list[int]) -> None:
    """Make room for the new ids (never shrinking: some LLaVA-hf models pad the vocabulary, e.g.
    32064 rows for 32002 tokens) and start their rows at the mean of the original vocabulary's rows
    (GILL / SmartEdit initialisation; deterministic, unlike a random draw)."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    base = min(new_ids)  # rows below the first new id are the original vocabulary
    with torch.no_grad():
        for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            weight[new_ids] = weight[:base].float().mean(dim=0, keepdim=True).to(weight.dtype)


def lora_config(new_ids: list[int], r: int = 8, alpha: int = 16, dropout: float = 0.05):
    """peft ``LoraConfig``: LoRA on the language model's q/v projections + trainable new-token rows."""
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGET_REGEX, bias="none",
        trainable_token_indices={"embed_tokens": list(new_ids), "lm_head": list(new_ids)},
    )


def image_preprocess_config(path: str | Path, vision_size: int) -> dict:
    """Mean/std/size for the vision tower from the folder's ``preprocessor_config.json`` (CLIP defaults)."""
    cfg = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
    file = Path(path) / "preprocessor_config.json"
    if file.exists():
        cfg.update({k: v for k, v in json.loads(file.read_text()).items() if k in ("image_mean", "image_std")})
    return {"mean": cfg["image_mean"], "std": cfg["image_std"], "size": int(vision_size)}


class LlavaLM(nn.Module):
    """The peft-wrapped LLaVA and the read-outs SmartEdit needs from it.

    ``peft_model``: ``PeftModel`` over ``LlavaForConditionalGeneration``; ``image_token_ids``: the
    32 ids of ``<img_0>..<img_31>``.
    """

    def __init__(self, peft_model, image_token_ids: list[int]):
        super().__init__()
        self.peft = peft_model
        self.register_buffer("image_token_ids", torch.tensor(image_token_ids, dtype=torch.long), persistent=False)
        cfg = self.llava.config
        self.image_token_id = int(cfg.image_token_id)
        self.feature_layer = cfg.vision_feature_layer
        self.select_strategy = cfg.vision_feature_select_strategy

    @property
    def llava(self):
        return self.peft.base_model.model

    @property
    def hidden_size(self) -> int:
        return int(self.llava.config.text_config.hidden_size)

    @property
    def vision_hidden_size(self) -> int:
        return int(self.llava.config.vision_config.hidden_size)

    @property
    def vision_size(self) -> int:
        return int(self.llava.config.vision_config.image_size)

    def n_patches(self) -> int:
        """Placeholders per image: the patch grid (+1 with the ``full`` strategy, which keeps CLS)."""
        vc = self.llava.config.vision_config
        n = (vc.image_size // vc.patch_size) ** 2
        return n + (1 if self.select_strategy == "full" else 0)

    @torch.no_grad()
    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B,3,S,S] CLIP-normalised -> [B,N,Dv] patch features of the selected layer (frozen tower).

        These feed both the LLaVA projector (LLM input) and the BIM (spatial branch), so the tower
        runs once per sample.
        """
        tower = self.llava.model.vision_tower
        dtype = next(tower.parameters()).dtype
        out = tower(pixel_values.to(dtype), output_hidden_states=True)
        layers = self.feature_layer if isinstance(self.feature_layer, (list, tuple)) else [self.feature_layer]
        feats = [out.hidden_states[i] for i in layers]
        if self.select_strategy == "default":
            feats = [f[:, 1:] for f in feats]
        return torch.cat(feats, dim=-1)

    def embed(self, input_ids: torch.Tensor, vision_feats: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings [B,L,H] with the projected patches scattered into the placeholders."""
        embeds = self.llava.get_input_embeddings()(input_ids)
        if vision_feats is None:
            return embeds
        projected = self.llava.model.multi_modal_projector(vision_feats.to(embeds.dtype))
        slots = (input_ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
        if int(slots[..., 0].sum()) != projected.shape[0] * projected.shape[1]:
            raise ValueError("image placeholder count does not match the vision features (one image per sample)")
        return embeds.masked_scatter(slots, projected.to(embeds.dtype))

    def forward(self, input_ids, attention_mask, vision_feats, past_key_values=None, inputs_embeds=None):
        """Returns ``(hidden [B,L,H] last layer after the final norm, logits [B,L,V], cache)``."""
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, vision_feats)
        out = self.llava.model.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, past_key_values=past_key_values,
            use_cache=past_key_values is not None,
        )
        hidden = out.last_hidden_state
        return hidden, self.llava.lm_head(hidden), out.past_key_values

    def image_token_states(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """[B,L,H] -> [B,32,H]: hidden states where the input is ``<img_i>`` (in ``i`` order).

        Samples without the tokens (VQA) get zeros; their diffusion loss is weighted to zero.
        """
        rows = []
        for b in range(hidden.shape[0]):
            match = input_ids[b].unsqueeze(0) == self.image_token_ids.unsqueeze(1)  # [32, L]
            if match.any(dim=1).all():
                rows.append(hidden[b, match.float().argmax(dim=1)])
            else:
                rows.append(hidden.new_zeros(len(self.image_token_ids), hidden.shape[-1]))
        return torch.stack(rows)
