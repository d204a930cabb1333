"""Optional variety: a local causal language model rewrites reasoning instructions.

The knowledge table and templates are the default and the ground truth; a rewrite only replaces
an instruction when it passes ``check_rewrite``, otherwise the original is kept. The checks guard
what makes a reasoning instruction correct:

* it is text at all: printable ASCII, mostly letters, a sensible length, no word repeated over
  and over (an untrained or confused model's output fails here);
* it still says what to do with what: every ``keep`` phrase (the new colour, object or add-on)
  and at least half of the content words of ``anchor`` (the description's predicate) survive;
* it does not give the answer away: no head word of an ``avoid`` name (the object's category).

The model is a ``transformers`` causal LM loaded from a local folder with
``local_files_only=True`` (nothing is downloaded); a chat template is used when the tokenizer has
one. ``rewrite`` is seeded, so a rerun on the same device proposes the same text.
"""
from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any, Iterable

PROMPT = (
    "Rewrite the image-editing instruction in different words. Keep its meaning, keep every colour "
    "and object it names, and never say what the described object is called.\n"
    "Instruction: {instruction}\nRewrite:"
)
_STOPWORDS = {"that", "this", "with", "from", "into", "have", "will", "your", "their", "them", "then",
              "than", "when", "what", "which", "where", "there", "these", "those", "they", "been", "were"}
_WORD = re.compile(r"[A-Za-z']+")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def _content_words(text: str) -> set[str]:
    return {w for w in _words(text) if len(w) >= 4 and w not in _STOPWORDS}


def clean_output(text: str) -> str:
    """First non-empty line of a model's continuation, stripped of quotes and a "Rewrite:" echo."""
    for line in str(text).splitlines():
        line = line.strip().strip('"').strip("'").strip()
        line = re.sub(r"^(rewrite|instruction)\s*:\s*", "", line, flags=re.IGNORECASE).strip()
        if line:
            return line
    return ""


def check_rewrite(original: str, candidate: str, *, keep: Iterable[str] = (), avoid: Iterable[str] = (),
                  anchor: str = "") -> str | None:
    """Why ``candidate`` may not replace ``original`` (a short code), or None when it may."""
    text = candidate.strip()
    if not text:
        return "empty"
    if any(ch not in string.printable or ch in "\t\r\n\x0b\x0c" for ch in text):
        return "garbage"
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.6 * len(text.replace(" ", "")):
        return "garbage"
    words, before = _words(text), _words(original)
    if not (max(3, len(before) // 2) <= len(words) <= 2 * len(before) + 8):
        return "length"
    if words == before:
        return "unchanged"
    if any(words.count(w) > 3 for w in set(words)):
        return "repetitive"
    lowered = " " + " ".join(words) + " "
    for phrase in keep:
        if phrase and " " + " ".join(_words(phrase)) + " " not in lowered:
            return "lost_value"
    for name in avoid:
        parts = _words(name)
        if parts and parts[-1] in words:
            return "names_object"
    needed = _content_words(anchor)
    if needed and len(needed & set(words)) * 2 < len(needed):
        return "lost_meaning"
    return None


class InstructionRewriter:
    """A local causal LM that proposes rewrites; ``rewrite`` returns the original unless the
    proposal passes ``check_rewrite``. Counts of accepted / rejected proposals are in ``stats``."""

    name = "llm"

    def __init__(self, model: Any, tokenizer: Any, *, model_dir: str | Path, device: str = "cpu",
                 max_new_tokens: int = 48, temperature: float = 0.7):
        self.model, self.tokenizer = model, tokenizer
        self.model_dir, self.device = Path(model_dir), device
        self.max_new_tokens, self.temperature = int(max_new_tokens), float(temperature)
        self.stats: dict[str, int] = {}

    @classmethod
    def from_pretrained(cls, model_dir: str | Path | None, *, device: str | None = None,
                        **options: Any) -> "InstructionRewriter":
        """Load tokenizer + causal LM from ``model_dir`` (local only); ``BackendUnavailable`` when
        the folder is missing or not a transformers causal LM."""
        from datagen.backends import BackendUnavailable, pick_device, require_path

        folder = require_path(model_dir, option="model_dir", is_dir=True, backend="llm",
                              what="a local transformers causal LM folder (config.json + weights + tokenizer)")
        device = pick_device(device)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"the 'llm' rewriter could not load model_dir={str(folder)!r} "
                                     f"({str(exc).splitlines()[0]}); pass a complete local causal LM folder.") from exc
        return cls(model, tokenizer, model_dir=folder, device=device, **options)

    def _prompt_ids(self, instruction: str):
        text = PROMPT.format(instruction=instruction)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                      return_tensors="pt", return_dict=True)
        return self.tokenizer(text, return_tensors="pt")

    def propose(self, instruction: str, *, seed: int = 0) -> str:
        """The model's cleaned continuation (may be empty or nonsense: callers check it)."""
        import torch

        inputs = {k: v.to(self.device) for k, v in self._prompt_ids(instruction).items()}
        torch.manual_seed(int(seed))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=True,
                                      temperature=self.temperature, pad_token_id=pad)
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        return clean_output(self.tokenizer.decode(new_tokens, skip_special_tokens=True))

    def rewrite(self, instruction: str, *, keep: Iterable[str] = (), avoid: Iterable[str] = (), anchor: str = "",
                seed: int = 0) -> str:
        """A checked rewrite of ``instruction``, or ``instruction`` itself."""
        proposal = self.propose(instruction, seed=seed)
        problem = check_rewrite(instruction, proposal, keep=keep, avoid=avoid, anchor=anchor)
        key = problem or "accepted"
        self.stats[key] = self.stats.get(key, 0) + 1
        return instruction if problem else proposal

    def settings(self) -> dict:
        from datagen.backends import file_fingerprint

        return {"rewriter": self.name, "model_dir": file_fingerprint(self.model_dir),
                "max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "prompt": PROMPT}
