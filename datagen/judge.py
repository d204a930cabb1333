"""A vision-language judge: does the target follow the instruction on the source? 1-5 and a reason.

``VlmJudge.from_pretrained(model_dir)`` loads any ``transformers`` image-text-to-text model the
user points to (LLaVA, LLaVA-OneVision, Qwen2-VL...) with its processor, from a local folder
(``local_files_only``). ``judge(pairs)`` asks, for each ``(src, tgt, instruction)`` (images HxWx3
uint8 RGB), with both images in one chat turn (source first), and generates greedily, a batch at
a time (left padding, so every prompt ends where generation starts). The answer is parsed by
``parse_verdict``: the first digit 1-5 after "score" (else the first lone digit 1-5) and the rest
of that line as the reason. An answer with no score is kept as ``score=None`` with the raw text as
the reason, so it is counted rather than guessed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

QUESTION = ("The first image is the source, the second is the result of editing it with the instruction: "
            "\"{instruction}\". Does the result follow the instruction, changing only what it asks? "
            "Answer in one line as 'Score: N. Reason: ...' with N from 1 (not at all) to 5 (perfectly).")
_SCORE_AFTER_WORD = re.compile(r"score\W{0,3}([1-5])\b", re.IGNORECASE)
_LONE_DIGIT = re.compile(r"(?<![\d.])([1-5])(?![\d.])")


@dataclass(frozen=True)
class JudgeVerdict:
    score: int | None
    reason: str

    def to_dict(self) -> dict:
        return {"score": self.score, "reason": self.reason}


def parse_verdict(text: str) -> JudgeVerdict:
    """``"Score: 4. Reason: the cup is gone"`` -> ``JudgeVerdict(4, "the cup is gone")``."""
    line = next((ln.strip() for ln in text.strip().splitlines() if ln.strip()), "")
    found = _SCORE_AFTER_WORD.search(line) or _LONE_DIGIT.search(line)
    if found is None:
        return JudgeVerdict(None, line[:200])
    reason = line[found.end():].lstrip(" .:;,-)")
    reason = re.sub(r"^reason\W*", "", reason, flags=re.IGNORECASE).strip()
    return JudgeVerdict(int(found.group(1)), reason[:200])


class VlmJudge:
    """See the module docstring. ``batch_size`` pairs per ``generate``; ``max_new_tokens`` caps
    the answer (one line)."""

    def __init__(self, model, processor, *, model_dir: str, batch_size: int = 4, max_new_tokens: int = 40,
                 device: str = "cpu"):
        self.model, self.processor = model, processor
        self.name = f"judge:{model_dir}"
        self.model_dir = str(model_dir)
        self.batch_size, self.max_new_tokens, self.device = max(1, int(batch_size)), int(max_new_tokens), device
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or getattr(processor, "chat_template", None) is None:
            raise ValueError(f"the judge model folder {model_dir!r} needs a processor with a tokenizer and a chat "
                             "template (processor_config.json / chat_template.jinja)")
        tokenizer.padding_side = "left"

    @classmethod
    def from_pretrained(cls, model_dir=None, *, device: str | None = None, precision: str | None = None,
                        **options) -> "VlmJudge":
        """Load from a local folder. ``precision``: ``fp32`` / ``fp16`` / ``bf16`` weights (default
        fp16 on CUDA, fp32 elsewhere; half precision needs CUDA)."""
        from datagen.backends import pick_device, require_path, resolve_precision, torch_dtype

        path = require_path(model_dir, option="quality.judge", backend="judge", is_dir=True,
                            what="a local transformers vision-language model folder")
        from transformers import AutoModelForImageTextToText, AutoProcessor

        device = pick_device(device)
        dtype = torch_dtype(resolve_precision(precision, device, backend="judge", default_cuda="fp16"))
        model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True, dtype=dtype).to(device).eval()
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        return cls(model, processor, model_dir=str(path), device=device, **options)

    def settings(self) -> dict:
        from datagen.backends import file_fingerprint

        return {"name": self.name, "model": file_fingerprint(self.model_dir), "question": QUESTION,
                "max_new_tokens": self.max_new_tokens}

    def prompt(self, instruction: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                 {"type": "text", "text": QUESTION.format(instruction=instruction)}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def judge(self, pairs: Sequence[tuple[np.ndarray, np.ndarray, str]]) -> list[JudgeVerdict]:
        """One ``JudgeVerdict`` per ``(src, tgt, instruction)``, in order."""
        out: list[JudgeVerdict] = []
        for start in range(0, len(pairs), self.batch_size):
            out.extend(parse_verdict(text) for text in self._generate(pairs[start:start + self.batch_size]))
        return out

    def _generate(self, chunk) -> list[str]:
        import torch

        texts = [self.prompt(instruction) for _src, _tgt, instruction in chunk]
        images = [image for src, tgt, _ in chunk for image in (src, tgt)]
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        dtype = next(self.model.parameters()).dtype
        inputs = {k: (v.to(self.device, dtype=dtype) if torch.is_floating_point(v) else v.to(self.device))
                  for k, v in inputs.items()}
        with torch.no_grad():
            generated = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = generated[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)
