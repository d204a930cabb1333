"""Conversation prompts and their tokenisation (LLaVA-1.1 / Vicuna style, as SmartEdit trains).

An edit sample is one user turn (the source image's patch placeholders + an instruction wrapped in
a request template) and one assistant turn that ends in the 32 image tokens ``<img_0>..<img_31>``.
The language-model loss covers the assistant turn only. A VQA sample (LLaVA-Instruct JSON) is the
same conversation format with several turns and no image tokens.

Token ids are built piecewise (prefix / answer) so the label boundary is exact whatever the
tokenizer does at the junction, and the ``<image>`` placeholder is expanded to one id per vision
patch directly (no reliance on the tokenizer splitting a long run of placeholders).

Two formats (``prompt_format``, recorded in the checkpoint config): ``ours`` (the templates below)
and ``official``, SmartEdit's own edit conversation tokenised as its code did (``_official_*``);
stage-1 captions and VQA turns use ours in both.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from trainer import IGNORE_INDEX, IMAGE_MARKER, IMAGE_TOKENS

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    f"helpful, detailed, and polite answers, and can edit the user's image: it then answers with an "
    f"image {IMAGE_MARKER}."
)
# (user request, assistant reply) pairs; "{instruction}" is filled in, the image tokens follow the reply.
EDIT_TEMPLATES = (
    ("Please edit the image as follows: {instruction}", "Sure, here is the edited image"),
    ("{instruction}", "Here is the edited image"),
    ("Can you change this picture? {instruction}", "Of course, this is the changed picture"),
    ("Edit the picture according to the instruction \"{instruction}\".", "Done, here is the result"),
    ("I would like a new version of this image: {instruction}", "Certainly, here is the new version"),
    ("Apply this edit to the image: {instruction}", "Here is the image with the edit applied"),
)
# Stage 1 (alignment): the LLM is asked for a picture of a caption and answers with the image tokens.
CAPTION_TEMPLATES = (
    ("Generate an image of \"{instruction}\".", "Here is the image"),
    ("Can you draw \"{instruction}\"?", "Sure, here is a picture of it"),
    ("Please show me a picture of: {instruction}", "Here is the picture"),
    ("Create an image that matches this caption: {instruction}", "This image matches the caption"),
)
PLACEHOLDER = "<image>"
PROMPT_FORMATS = ("ours", "official")
# The official SmartEdit prompt (TencentARC/SmartEdit: ``conversation_v01.py``'s ``vicuna_v1.3``
# system, its 30 Human/GPT templates in ``configs/official_edit_templates.txt``): "[cap]" becomes the
# quoted "<im_start> <img_0> <im_end>INSTRUCTION" whose <img_0> is replaced by the image's patches;
# in training " [img]." becomes " <img_0> <img_1> ... <img_31>" followed by "</s>".
OFFICIAL_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant can generate <img>. "
    "The assistant needs to conduct the image to image translation task based on given image and text information. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def official_edit_templates() -> tuple[tuple[str, str], ...]:
    """The official (Human, GPT) editing templates, in file order (``[cap]`` / ``[img]`` unfilled)."""
    lines = (Path(__file__).parent / "configs" / "official_edit_templates.txt").read_text().splitlines()
    humans = [line[len("Human: "):] for line in lines if line.startswith("Human: ")]
    gpts = [line[len("GPT: "):] for line in lines if line.startswith("GPT: ")]
    return tuple(zip(humans, gpts, strict=True))


@dataclass
class Tokenized:
    """``input_ids``/``labels``: equal-length lists of ints (labels use ``IGNORE_INDEX`` outside
    the assistant turns); ``n_image_tokens``: how many of the 32 image tokens are present."""

    input_ids: list[int]
    labels: list[int]
    n_image_tokens: int


class PromptBuilder:
    """Turns an instruction (or a LLaVA conversation) into token ids for one LLaVA tokenizer.

    ``tokenizer``: a transformers tokenizer that already has the 33 new tokens;
    ``image_token_id``: LLaVA's patch placeholder id (``config.image_token_id``);
    ``n_patches``: vision patches per image (placeholders inserted); ``max_length``: cap on the
    text ids, *not* counting the ``n_patches`` placeholders (576 of them for LLaVA-1.5 at 336 px).
    """

    def __init__(self, tokenizer, image_token_id: int, n_patches: int, max_length: int = 512,
                 prompt_format: str = "ours"):
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"--prompt-format {prompt_format!r}: expected one of {', '.join(PROMPT_FORMATS)}")
        self.tok = tokenizer
        self.format = prompt_format
        self.image_token_id = int(image_token_id)
        self.n_patches = int(n_patches)
        self.max_length = int(max_length)
        self.cap = self.max_length + self.n_patches  # ids per sample, placeholders included
        self.image_token_ids = tokenizer.convert_tokens_to_ids(list(IMAGE_TOKENS))
        self.bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.eos = tokenizer.eos_token_id
        self.official_templates = official_edit_templates() if prompt_format == "official" else ()

    def _ids(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _user_ids(self, text: str) -> list[int]:
        """``USER: <image>\\n{text} ASSISTANT:`` with the placeholder expanded to ``n_patches`` ids."""
        head = self._ids(f"{SYSTEM} USER: ")
        tail = self._ids(f"\n{text} ASSISTANT:")
        return head + [self.image_token_id] * self.n_patches + tail

    def _prefix(self, request: str, image: bool = True) -> list[int]:
        """BOS + the user turn, with the image's placeholders (``image``) or text only (stage 1)."""
        if not image:
            return self.bos + self._ids(f"{SYSTEM} USER: {request} ASSISTANT:")
        return self.bos + self._user_ids(request)

    def edit_prompt(self, instruction: str, template: int = 0) -> list[int]:
        """Inference prompt: everything up to and including ``ASSISTANT:`` (template ``template``;
        the official inference draws one of its 30 at random, we take the given one)."""
        if self.format == "official":
            return self._official_ids(self._official_texts(instruction, template)[0])
        request, _ = EDIT_TEMPLATES[template % len(EDIT_TEMPLATES)]
        return self._prefix(request.format(instruction=instruction))

    def _official_texts(self, instruction: str, template: int) -> tuple[str, str]:
        """(prompt up to ``ASSISTANT:``, answer) strings of the official conversation, before tokenising.
        ``<im_start>``/``<im_end>`` surround the image only when the tokenizer has them (LLaVA-1.1)."""
        human, gpt = self.official_templates[template % len(self.official_templates)]
        vocab = self.tok.get_vocab()
        start, end = ("<im_start>", "<im_end>") if "<im_start>" in vocab and "<im_end>" in vocab else ("", "")
        edit = f"{start} {IMAGE_TOKENS[0]} {end}{instruction}"
        prompt = f"{OFFICIAL_SYSTEM} USER: {human.replace('[cap]', chr(34) + edit + chr(34))} ASSISTANT:"
        answer = " " + gpt.replace(" [img].", "".join(" " + t for t in IMAGE_TOKENS)) + self.tok.eos_token
        return prompt.replace("\n", ""), answer.replace("\n", "")

    def _official_ids(self, text: str) -> list[int]:
        """BOS + ``text``'s ids with its first ``<img_0>`` replaced by the ``n_patches`` placeholders
        (the official code tokenises the whole string, then puts the patches where ``<img_0>`` was)."""
        ids = self.bos + self._slow_tokenizer_ids(text)
        at = ids.index(self.image_token_ids[0])
        return ids[:at] + [self.image_token_id] * self.n_patches + ids[at + 1:]

    def _slow_tokenizer_ids(self, text: str) -> list[int]:
        """``text`` tokenised as the official code did (transformers 4.28's slow tokenizer): split at
        every added token; whitespace next to an added token that is not BOS/EOS/UNK/PAD is dropped;
        each remaining piece of text is tokenised on its own (a SentencePiece LLaMA tokenizer then
        starts each piece with its word-start mark, unlike a whole-string call)."""
        added = self.tok.get_added_vocab()
        specials = set(self.tok.all_special_tokens)
        parts = re.split("(" + "|".join(map(re.escape, sorted(added, key=len, reverse=True))) + ")", text)
        ids = []
        for i, part in enumerate(parts):
            if i % 2:
                ids.append(added[part])
                continue
            if i > 0 and parts[i - 1] not in specials:
                part = part.lstrip()
            if i + 1 < len(parts) and parts[i + 1] not in specials:
                part = part.rstrip()
            if part:
                ids += self._ids(part)
        return ids

    def _official_pair(self, instruction: str, template: int) -> tuple[list[int], list[int]]:
        """(prompt ids, answer ids) of the official training conversation, tokenised as one string
        and cut after the prompt's ids (refused if the answer changes how the prompt tokenises)."""
        prompt_text, answer_text = self._official_texts(instruction, template)
        prompt, full = self._official_ids(prompt_text), self._official_ids(prompt_text + answer_text)
        if full[:len(prompt)] != prompt:
            raise ValueError("the tokenizer merges the official prompt's 'ASSISTANT:' with the answer; "
                             "its label boundary is undefined")
        return prompt, full[len(prompt):]

    def edit_sample(self, instruction: str, rng: random.Random) -> Tokenized:
        """Training ids for an edit: the reply and the 32 image tokens (and EOS) are the targets.

        Over-long instructions are cut (token-wise) so that the image tokens always fit.
        """
        if self.format == "official":
            template = rng.randrange(len(self.official_templates))
            return self._image_token_answer(lambda text: self._official_pair(text, template), instruction)
        return self._ours_answer(EDIT_TEMPLATES, instruction, rng, image=True)

    def caption_sample(self, caption: str, rng: random.Random) -> Tokenized:
        """Stage-1 ids: a text-only request for a picture of ``caption``; the reply and the 32 image
        tokens (and EOS) are the targets. Over-long captions are cut as in ``edit_sample``.
        Always our templates (the official stage-1 template file is not reproduced)."""
        return self._ours_answer(CAPTION_TEMPLATES, caption, rng, image=False)

    def _ours_answer(self, templates, instruction: str, rng: random.Random, image: bool) -> Tokenized:
        request, reply = templates[rng.randrange(len(templates))]
        answer = self._ids(" " + reply) + list(self.image_token_ids) + [self.eos]
        return self._image_token_answer(
            lambda text: (self._prefix(request.format(instruction=text), image), answer), instruction)

    def _image_token_answer(self, make, instruction: str) -> Tokenized:
        """``make(text) -> (prompt ids, answer ids)``; the instruction is cut until both fit ``cap``."""
        words, text = None, instruction
        while True:
            prompt, answer = make(text)
            overflow = len(prompt) + len(answer) - self.cap
            if overflow <= 0:
                break
            words = self._ids(instruction) if words is None else words
            if len(words) <= 1:
                raise ValueError(f"max_length {self.max_length} cannot hold the prompt template and answer")
            words = words[: max(1, len(words) - overflow)]
            text = self.tok.decode(words)
        labels = [IGNORE_INDEX] * len(prompt) + answer
        return Tokenized(prompt + answer, labels, len(self.image_token_ids))

    def conversation(self, turns: list[dict]) -> Tokenized:
        """LLaVA-Instruct turns ``[{"from": "human"|"gpt", "value": str}, ...]`` -> ids.

        The first human turn carries the image (its ``<image>`` tag is dropped and the patches put
        first); only the gpt turns are targets. Turns that no longer fit are dropped.
        """
        ids, labels = list(self.bos), [IGNORE_INDEX] * len(self.bos)
        for i in range(0, len(turns) - 1, 2):
            human, gpt = turns[i], turns[i + 1]
            text = str(human.get("value", "")).replace(PLACEHOLDER, "").strip()
            user = self._user_ids(text) if i == 0 else self._ids(f" USER: {text} ASSISTANT:")
            answer = self._ids(" " + str(gpt.get("value", "")).strip()) + [self.eos]
            room = self.cap - len(ids) - len(user)
            if room <= 1:
                break
            answer = answer[:room]
            ids += user + answer
            labels += [IGNORE_INDEX] * len(user) + answer
        return Tokenized(ids, labels, 0)
