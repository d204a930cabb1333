"""Phrasing templates for understanding (remove / add / replace) and perception (mark) instructions.

Every ``*_instruction`` function fills all of its templates and returns a ``Phrasing``: one
instruction chosen by a seeded, process-independent choice (a hash of ``seed`` and ``key``, never
Python's randomised ``hash``) and the others as paraphrases (``EditSample.paraphrases``; the trainer
samples one per step). ``key`` is whatever makes the choice vary across the dataset, e.g.
``(record.id, instance.id)``, so one run uses all the phrasings rather than one.

Placeholders: ``{ref}`` a referring phrase with its article ("the left cat"), ``{new}`` /
``{category}`` a bare noun that gets "a"/"an" here, ``{relation}`` from ``referring.relation_to``,
``{anchor}`` a referring phrase, ``{colour}`` a colour name.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

REMOVE_TEMPLATES = (
    "Remove {ref}",
    "Delete {ref} from the image",
    "Take away {ref}",
    "Get rid of {ref}",
    "Erase {ref} from the picture",
)
ADD_TEMPLATES = (
    "Add {a_category} {relation} {anchor}",
    "Put {a_category} {relation} {anchor}",
    "Place {a_category} {relation} {anchor}",
    "Insert {a_category} {relation} {anchor}",
)
REPLACE_TEMPLATES = (
    "Replace {ref} with {a_new}",
    "Change {ref} into {a_new}",
    "Swap {ref} for {a_new}",
    "Turn {ref} into {a_new}",
    "Change {ref} to {a_new}",
)
MARK_TEMPLATES = (
    "Mark {ref} in {colour}",
    "Highlight {ref} with {colour}",
    "Mark the pixels of {ref} in {colour}",
    "Cover {ref} with a translucent {colour} mask",
    "Segment {ref} and show it in {colour}",
)

# Words whose spelling and sound disagree about "a" vs "an".
_AN_DESPITE_CONSONANT = ("hour", "honest", "honor", "honour", "heir")
_A_DESPITE_VOWEL = ("uni", "use", "usu", "uti", "eu", "one", "once", "ewe")


def with_article(noun: str) -> str:
    """``"a cat"``, ``"an apple"``, ``"a unicorn"``, ``"an hourglass"``; ``noun`` is a bare noun
    phrase (leading/trailing spaces stripped)."""
    word = noun.strip()
    lower = word.lower()
    if lower.startswith(_AN_DESPITE_CONSONANT):
        return f"an {word}"
    if lower.startswith(_A_DESPITE_VOWEL):
        return f"a {word}"
    return f"{'an' if lower[:1] in 'aeiou' and lower else 'a'} {word}"


def seeded_index(n: int, seed: int, *key: Any) -> int:
    """Deterministic index in ``range(n)`` from ``seed`` and JSON-serialisable ``key`` parts;
    the same in every process and on every rerun."""
    blob = json.dumps([seed, *key], sort_keys=True, default=str).encode("utf-8")
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") % n


@dataclass(frozen=True)
class Phrasing:
    """The chosen ``instruction`` and the remaining fillings as ``paraphrases``."""

    instruction: str
    paraphrases: tuple[str, ...]

    def all(self) -> list[str]:
        return [self.instruction, *self.paraphrases]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def choose(templates: Sequence[str], values: dict[str, str], seed: int, key: Sequence[Any] = ()) -> Phrasing:
    """Fill every template with ``values``; pick one by ``seeded_index``; the rest (deduplicated,
    in template order) become paraphrases."""
    filled: list[str] = []
    for template in templates:
        text = _capitalise(" ".join(template.format(**values).split()))
        if text not in filled:
            filled.append(text)
    index = seeded_index(len(filled), seed, *key)
    return Phrasing(filled[index], tuple(t for k, t in enumerate(filled) if k != index))


def remove_instruction(ref: str, *, seed: int, key: Sequence[Any] = ()) -> Phrasing:
    """"Remove the left cat". ``ref``: referring phrase with article."""
    return choose(REMOVE_TEMPLATES, {"ref": ref}, seed, ("remove", *key))


def add_instruction(category: str, relation: str, anchor: str, *, seed: int, key: Sequence[Any] = ()) -> Phrasing:
    """"Add a cat to the right of the cat". ``category``: bare noun of the added object;
    ``relation``: e.g. "to the right of", "above"; ``anchor``: referring phrase with article."""
    values = {"a_category": with_article(category), "relation": relation, "anchor": anchor}
    return choose(ADD_TEMPLATES, values, seed, ("add", *key))


def replace_instruction(ref: str, new: str, *, seed: int, key: Sequence[Any] = ()) -> Phrasing:
    """"Replace the smaller cat with a rabbit". ``new``: bare noun of the replacement."""
    return choose(REPLACE_TEMPLATES, {"ref": ref, "a_new": with_article(new)}, seed, ("replace", *key))


def mark_instruction(ref: str, colour: str, *, seed: int, key: Sequence[Any] = ()) -> Phrasing:
    """"Mark the left cat in red" (InstructDiffusion-style segmentation as editing)."""
    return choose(MARK_TEMPLATES, {"ref": ref, "colour": colour}, seed, ("mark", *key))
