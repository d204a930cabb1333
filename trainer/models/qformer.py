"""QFormer: learned queries cross-attending to the LLM's hidden states at the 32 image tokens.

The transformer is transformers' BLIP-2 ``Blip2QFormerModel`` (BERT-like, cross-attention every
``cross_attention_frequency``-th layer, no text branch), as in SmartEdit: hidden 768, 12 heads,
6 layers, cross-attention every 2nd layer, keys/values of the LLM's width. Its output lives in the
space of the CLIP text encoder the UNet cross-attends to (77 x 768 for SD-1.5).
"""
from __future__ import annotations

import torch
from torch import nn


def build_qformer_encoder(hidden: int, layers: int, heads: int, intermediate: int, encoder_hidden: int,
                          cross_attention_frequency: int = 2):
    """A randomly initialised ``Blip2QFormerModel`` with the given sizes."""
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    config = Blip2QFormerConfig(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=intermediate,
        encoder_hidden_size=encoder_hidden, cross_attention_frequency=cross_attention_frequency,
    )
    return Blip2QFormerModel(config)


class QFormer(nn.Module):
    """``encoder``: a ``Blip2QFormerModel``; ``num_queries`` learned queries (77: CLIP's length).

    ``out_dim``: the UNet's cross-attention width; a linear map is added only if it differs from
    the encoder's hidden size (it does not for SD-1.5: 768 = 768).
    """

    def __init__(self, encoder: nn.Module, num_queries: int = 77, out_dim: int | None = None):
        super().__init__()
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.queries = nn.Parameter(torch.randn(1, num_queries, hidden) * encoder.config.initializer_range)
        self.proj = nn.Identity() if out_dim in (None, hidden) else nn.Linear(hidden, out_dim)

    @property
    def num_queries(self) -> int:
        return self.queries.shape[1]

    def forward(self, llm_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``llm_states`` [B,32,H_llm] (any float dtype), ``mask`` [B,32] 1 = attend -> [B,77,out_dim] fp32."""
        queries = self.queries.expand(llm_states.shape[0], -1, -1)
        out = self.encoder(
            query_embeds=queries, encoder_hidden_states=llm_states.to(queries.dtype), encoder_attention_mask=mask,
        ).last_hidden_state
        return self.proj(out)
