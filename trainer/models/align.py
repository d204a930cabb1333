"""Stage 1 (alignment): LLaVA's LLM + the 32 image tokens + QFormer, aligned to the CLIP text
encoder the diffusion UNet cross-attends to (SmartEdit's official ``TrainStage1``).

The LLM reads a text-only request for a picture of a caption and answers with ``<img_0>..<img_31>``;
the QFormer turns the hidden states at those 32 positions into 77 x C, regressed (MSE) onto the
frozen CLIP text encoder's last hidden state for the caption. Loss = ``lm_weight`` x LM
cross-entropy (answer tokens) + ``align_weight`` x MSE. What trains: the new token rows of the
input embedding and ``lm_head`` and the QFormer (with its queries); the LLM itself, its LoRA (kept
at its zero init, so stage 2 starts from the frozen LLM) and the CLIP text encoder stay frozen.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trainer.models.smartedit import lm_cross_entropy


class AlignModel(nn.Module):
    """``llm``: ``LlavaLM``; ``qformer``: ``QFormer``; ``clip_text``: frozen ``CLIPTextModel``."""

    def __init__(self, llm, qformer, clip_text, lm_weight: float = 1.0, align_weight: float = 1.0):
        super().__init__()
        self.llm, self.qformer, self.clip_text = llm, qformer, clip_text
        self.lm_weight, self.align_weight = lm_weight, align_weight
        self.clip_text.requires_grad_(False)
        for name, param in self.llm.named_parameters():
            if "lora_" in name:
                param.requires_grad_(False)

    def align_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """-> (QFormer output [B,77,C] fp32, LM logits [B,L,V]) for text-only ids [B,L]."""
        hidden, logits, _ = self.llm(input_ids, attention_mask, None)
        return self.qformer(self.llm.image_token_states(hidden, input_ids)), logits

    @torch.no_grad()
    def clip_target(self, clip_ids: torch.Tensor) -> torch.Tensor:
        """[B,77] CLIP token ids -> [B,77,C] last hidden state of the frozen text encoder (fp32)."""
        self.clip_text.eval()
        return self.clip_text(input_ids=clip_ids).last_hidden_state.float()

    def forward(self, batch: dict) -> dict:
        """``batch`` from ``trainer.features.collate`` over ``CaptionFeaturizer`` samples:
        input_ids/attention_mask/labels [B,L], clip_ids [B,77]. Returns scalars ``loss``
        (with gradients), ``lm_loss``, ``align_loss``."""
        query, logits = self.align_output(batch["input_ids"], batch["attention_mask"])
        lm_loss = lm_cross_entropy(logits, batch["labels"])
        align_loss = F.mse_loss(query.float(), self.clip_target(batch["clip_ids"]))
        loss = self.lm_weight * lm_loss + self.align_weight * align_loss
        return {"loss": loss, "lm_loss": lm_loss.detach(), "align_loss": align_loss.detach()}

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


def build_align_model(cfg, ckpt: str | Path | None = None, frozen_dtype: torch.dtype = torch.float32):
    """``(AlignModel, tokenizer, clip_tokenizer)``; the LLM parts and QFormer from ``ckpt`` when given."""
    from trainer.models.build import build_llm, build_qformer, load_clip_text, load_parts, require_dir

    ckpt = Path(ckpt) if ckpt else None
    sd = require_dir(cfg.sd, "Stable Diffusion base", "--sd")
    if not ((sd / "text_encoder").is_dir() and (sd / "tokenizer").is_dir()):
        raise FileNotFoundError(f"SD folder {sd} has no text_encoder/ and tokenizer/, the CLIP text encoder stage 1 "
                                "aligns to; pass --sd with a folder that has them")
    clip_tok, clip_text = load_clip_text(sd)
    tokenizer, llm = build_llm(cfg, ckpt, frozen_dtype)
    qformer = build_qformer(cfg, llm.hidden_size, int(clip_text.config.hidden_size))
    load_parts(ckpt, {"qformer": qformer})
    model = AlignModel(llm, qformer, clip_text, cfg.lm_weight, cfg.align_weight)
    return model, tokenizer, clip_tok
