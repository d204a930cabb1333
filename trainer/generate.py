"""Sampling the assistant's answer up to the 32 image tokens (paper §4.1, GILL-style).

The LLM samples (temperature 0.7) until it has produced ``<img_0>..<img_31>``, an EOS, or
``max_new_tokens``. If what it produced is not exactly the 32 image tokens in order (an
undertrained model often stops early or emits them out of order), the answer is cut before its
first image token and the 32 tokens are appended ("forced"); the caller is told which happened.
The image tokens' hidden states depend only on what precedes them (causal attention), so the
forced sequence conditions the UNet exactly as training did.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Generation:
    ids: list[int]  # prompt + answer text + the 32 image tokens
    answer: list[int]  # sampled ids (before any forcing)
    forced: bool


@torch.no_grad()
def sample_answer(llm, prompt: list[int], vision: torch.Tensor, eos_id: int, *, temperature: float = 0.7,
                  max_new_tokens: int = 96, generator: torch.Generator | None = None) -> Generation:
    """``llm``: ``LlavaLM``; ``prompt``: ids ending in ``ASSISTANT:``; ``vision`` [1,N,Dv]."""
    from transformers import DynamicCache

    device = vision.device
    image_ids = llm.image_token_ids.tolist()
    image_set = set(image_ids)
    ids = torch.tensor([prompt], device=device)
    embeds = llm.embed(ids, vision)
    cache = DynamicCache(config=llm.llava.config)
    mask = torch.ones(1, ids.shape[1], dtype=torch.long, device=device)
    _, logits, cache = llm(None, mask, None, past_key_values=cache, inputs_embeds=embeds)
    answer: list[int] = []
    while len(answer) < max_new_tokens:
        scores = logits[0, -1].float() / max(temperature, 1e-5)
        token = int(torch.multinomial(torch.softmax(scores, -1).cpu(), 1, generator=generator))
        answer.append(token)
        if token == eos_id or sum(t in image_set for t in answer) == len(image_ids):
            break
        mask = torch.ones(1, len(prompt) + len(answer), dtype=torch.long, device=device)
        step = llm.llava.get_input_embeddings()(torch.tensor([[token]], device=device))
        _, logits, cache = llm(None, mask, None, past_key_values=cache, inputs_embeds=step)
    return _finish(prompt, answer, image_ids, image_set, eos_id)


def _finish(prompt: list[int], answer: list[int], image_ids: list[int], image_set: set[int], eos_id: int) -> Generation:
    """Keep a correctly generated image-token run; otherwise cut before the first image token (and
    before any EOS, which would end the turn) and append the 32 tokens."""
    first = next((i for i, t in enumerate(answer) if t in image_set), None)
    if first is not None and answer[first:first + len(image_ids)] == image_ids:
        return Generation(prompt + answer[: first + len(image_ids)], answer, False)
    text = answer[:first] if first is not None else list(answer)
    if eos_id in text:
        text = text[: text.index(eos_id)]
    return Generation(prompt + text + image_ids, answer, True)
