"""Reasoning instructions: a world-knowledge description plus an edit, in the paper's forms.

The supplement's examples (Fig. 8) fix the shapes::

    "Please remove the object that can be used to eat the cake."
    "What is the object that can help people prevent sunburn? Change it into blue."
    "Which animal is drinking water? Add a hat on this animal."
    "Which food contains most vitamin? Please replace this food with an apple."

Phrases built from a ``Description`` (kind ``animal``, predicate ``gives us milk``):

* ``noun_phrase``: "the animal that gives us milk" (person: "the one who can drive a car");
* ``question``: "Which animal gives us milk?" (person: "Who can drive a car?");
* ``this_phrase``: "this animal" (person: "this person").

When the category has several instances in the image the description alone is not unique, so a
referring attribute (``datagen.instructions.referring.Referring``) narrows it: "the left animal
that gives us milk", "the animal in the mirror that purrs", and after a question "the left one",
"the one in the mirror". The category's own name never appears.

``reasoning_instruction`` fills every template of an op and picks one by a seeded,
process-independent choice (``templates.choose``); the rest become paraphrases.
"""
from __future__ import annotations

from typing import Any, Sequence

from datagen.instructions.knowledge import Description
from datagen.instructions.templates import Phrasing, choose, with_article

REASONING_OPS = ("remove", "recolor", "replace", "addon")

TEMPLATES: dict[str, tuple[str, ...]] = {
    "remove": (
        "Please remove {np}.",
        "Remove {np}.",
        "{question} Please remove {this}.",
        "{question} Remove {this} from the picture.",
        "Delete {np} from the image.",
    ),
    "recolor": (
        "What is {np}? Change it into {value}.",
        "{question} Change {this} into {value}.",
        "Make {np} {value}.",
        "Change the colour of {np} to {value}.",
        "{question} Paint {this} {value}.",
    ),
    "replace": (
        "Replace {np} with {a_value}.",
        "{question} Please replace {this} with {a_value}.",
        "Swap {np} for {a_value}.",
        "What is {np}? Turn it into {a_value}.",
    ),
    "addon": (
        "{question} Add {a_value} on {this}.",
        "Add {a_value} on {np}.",
        "Put {a_value} on {np}.",
        "{question} Put {a_value} on {this}.",
    ),
}


def _refinement(referring) -> tuple[str, str]:
    """``(adjective, place)`` a referring attribute adds: ("left", "") or ("", "in the mirror");
    ("", "") for none or for ``count`` (the only instance needs no narrowing)."""
    if referring is None or referring.attribute == "count":
        return "", ""
    if referring.attribute == "mirror":
        return "", "in the mirror" if referring.value == "in_mirror" else "outside the mirror"
    return str(referring.value), ""


def noun_phrase(description: Description, referring=None) -> str:
    """"the animal that gives us milk", "the left animal that ...", "the one in the mirror who ..."."""
    adjective, place = _refinement(referring)
    person = description.kind == "person"
    head = " ".join(p for p in ("the", adjective, "one" if person else description.kind, place) if p)
    return f"{head} {'who' if person else 'that'} {description.predicate}"


def question(description: Description) -> str:
    """"Which animal gives us milk?" / "Who can drive a car?"."""
    if description.kind == "person":
        return f"Who {description.predicate}?"
    return f"Which {description.kind} {description.predicate}?"


def this_phrase(description: Description, referring=None) -> str:
    """What a sentence after the question calls the object: "this animal", or with a referring
    attribute "the left one" / "the one in the mirror"."""
    adjective, place = _refinement(referring)
    if adjective:
        return f"the {adjective} one"
    if place:
        return f"the one {place}"
    return f"this {description.kind}"


def reasoning_instruction(op: str, description: Description, *, value: str, referring=None, seed: int,
                          key: Sequence[Any] = ()) -> Phrasing:
    """Instruction and paraphrases for ``op`` on the object ``description`` names.

    ``value``: the new colour (recolor), the new object's bare noun (replace), the add-on's bare
    noun (addon); ignored for remove. ``referring``: a ``Referring`` that narrows the description
    when the category has several instances. ``key`` varies the choice across the dataset.
    """
    if op not in TEMPLATES:
        raise ValueError(f"op must be one of {REASONING_OPS}, got {op!r}")
    values = {
        "np": noun_phrase(description, referring), "question": question(description),
        "this": this_phrase(description, referring), "value": value or "",
        "a_value": with_article(value) if value else "",
    }
    templates = TEMPLATES[op]
    if description.kind == "person":  # "Who is the one who ...? Turn them into ...", not "What ... it"
        templates = tuple(t.replace("What is {np}?", "Who is {np}?").replace(" it ", " them ") for t in templates)
    return choose(templates, values, seed, ("reasoning", op, *key))
