"""World-knowledge descriptions of object categories, and the rule for when one may be used.

A reasoning instruction names its object by what people know about it, not by its name: "the
object that can tell the time" (clock), "the animal that gives us milk" (cow), "the food that has
the most vitamin C" (orange). ``KnowledgeTable`` holds such descriptions per category (the curated
``knowledge_table`` by default, extendable from a JSON file) and answers the one question the
builder asks: *which descriptions of this category may be used in this image?*

The rule: a description is usable only when no *other* category present in the image also fits
it. Each description lists every category it fits (its own first, plus the ones a reader could
reasonably take it to mean), so "the animal that can be ridden" (horse, elephant) is never used in
an image that holds both. A category the table does not know may fit anything, so while one is
present nothing is said (``unknown_neighbour``); this errs towards silence, like the referring
expressions do.

Usage::

    table = default_knowledge()
    choice = table.choose("clock", present={"clock", "cup", "person"})
    choice.usable  -> [Description("clock:0", "can tell the time"), ...]   (or [] with choice.reason)
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from datagen.instructions import knowledge_table as _data

KINDS = _data.KINDS


def normalize(category: str) -> str:
    """Lower-case, single-spaced category name (``"Dining  Table"`` -> ``"dining table"``)."""
    return " ".join(str(category).lower().replace("_", " ").split())


@dataclass(frozen=True)
class Description:
    """One world-knowledge description of ``category``.

    ``id``: stable ``"category:index"``. ``kind``: one of ``KINDS`` (decides the noun: "the
    animal that ..."). ``predicate``: third-person verb phrase ("gives us milk"). ``fits``: every
    category the description fits, ``category`` first.
    """

    id: str
    category: str
    kind: str
    predicate: str
    fits: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"id": self.id, "category": self.category, "kind": self.kind, "predicate": self.predicate,
                "fits": list(self.fits)}


@dataclass(frozen=True)
class CategoryKnowledge:
    """A category's kind, its display ``noun`` ("TV" for ``tv``) and its descriptions."""

    category: str
    kind: str
    noun: str
    descriptions: tuple[Description, ...]


@dataclass(frozen=True)
class Choice:
    """The usable descriptions of a category in one image; ``reason``/``detail`` say why there
    are none (``no_description``, ``unknown_neighbour``, ``ambiguous_description``)."""

    usable: tuple[Description, ...]
    reason: str | None = None
    detail: str = ""


@dataclass
class KnowledgeTable:
    """Descriptions per category plus the edit vocabularies (see ``knowledge_table``)."""

    categories: dict[str, CategoryKnowledge]
    replacements: dict[str, tuple[str, ...]] = field(default_factory=dict)
    addons: dict[str, tuple[str, ...]] = field(default_factory=dict)
    recolor_kinds: tuple[str, ...] = ()
    colours: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)

    # ---------------------------------------------------------------- lookup

    def resolve(self, category: str) -> str | None:
        """The table's name for ``category`` (normalised, aliases followed), or None."""
        name = normalize(category)
        name = self.aliases.get(name, name)
        return name if name in self.categories else None

    def __contains__(self, category: object) -> bool:
        return isinstance(category, str) and self.resolve(category) is not None

    def get(self, category: str) -> CategoryKnowledge | None:
        name = self.resolve(category)
        return self.categories[name] if name else None

    def descriptions(self, category: str) -> tuple[Description, ...]:
        entry = self.get(category)
        return entry.descriptions if entry else ()

    def noun(self, category: str) -> str:
        """Display noun of ``category``; the category itself when the table does not know it."""
        entry = self.get(category)
        return entry.noun if entry else str(category)

    # ---------------------------------------------------------------- the uniqueness rule

    def choose(self, category: str, present: Iterable[str]) -> Choice:
        """Descriptions of ``category`` that fit no other category in ``present`` (the
        categories of every instance in the image, ``category`` included or not)."""
        entry = self.get(category)
        if entry is None:
            return Choice((), "no_description", f"the knowledge table has no entry for {category!r}")
        others = {normalize(c) for c in present} - {normalize(category), entry.category}
        unknown = sorted(c for c in others if self.resolve(c) is None)
        if unknown:
            return Choice((), "unknown_neighbour",
                          f"the image also holds {', '.join(unknown)}, which the table does not know, so "
                          f"any description of {entry.category} might fit it")
        others = {self.resolve(c) for c in others}
        usable = tuple(d for d in entry.descriptions if not others.intersection(d.fits))
        if not usable:
            clashes = sorted(others.intersection(*[set(d.fits) for d in entry.descriptions]) or others)
            return Choice((), "ambiguous_description",
                          f"every description of {entry.category} also fits {', '.join(clashes)} in the image")
        return Choice(usable)

    def usable(self, category: str, present: Iterable[str]) -> tuple[Description, ...]:
        return self.choose(category, present).usable

    # ---------------------------------------------------------------- vocabularies

    def replacement_nouns(self, category: str) -> tuple[str, ...]:
        """Nouns an SD replace edit may put in place of ``category`` (never the same noun)."""
        entry = self.get(category)
        if entry is None:
            return ()
        return tuple(n for n in self.replacements.get(entry.kind, ()) if normalize(n) not in
                     {entry.category, normalize(entry.noun)})

    def addon_items(self, category: str) -> tuple[str, ...]:
        entry = self.get(category)
        return self.addons.get(entry.kind, ()) if entry else ()

    def can_recolor(self, category: str) -> bool:
        entry = self.get(category)
        return bool(entry) and entry.kind in self.recolor_kinds

    # ---------------------------------------------------------------- checks and identity

    def problems(self) -> list[str]:
        """Contract violations of the table, one sentence each (empty = sound)."""
        out = []
        for name, entry in self.categories.items():
            if entry.kind not in KINDS:
                out.append(f"{name}: unknown kind {entry.kind!r}")
            if not entry.descriptions:
                out.append(f"{name}: has no description")
            for d in entry.descriptions:
                if d.fits[:1] != (name,):
                    out.append(f"{d.id}: must fit its own category first")
                for other in d.fits:
                    if other not in self.categories:
                        out.append(f"{d.id}: fits unknown category {other!r}")
                if _mentions(d.predicate, entry):
                    out.append(f"{d.id}: {d.predicate!r} names its own category")
        return out

    def fingerprint(self) -> str:
        """16 hex chars of the table's content: part of sample keys and settings."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")
        return hashlib.sha1(blob).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {
            "categories": {name: {"kind": e.kind, "noun": e.noun,
                                  "descriptions": [{"predicate": d.predicate, "also_fits": list(d.fits[1:])}
                                                   for d in e.descriptions]}
                           for name, e in sorted(self.categories.items())},
            "replacements": {k: list(v) for k, v in sorted(self.replacements.items())},
            "addons": {k: list(v) for k, v in sorted(self.addons.items())},
            "recolor_kinds": list(self.recolor_kinds), "colours": list(self.colours),
            "aliases": dict(sorted(self.aliases.items())),
        }

    def summary(self) -> dict:
        return {"categories": len(self.categories),
                "descriptions": sum(len(e.descriptions) for e in self.categories.values()),
                "fingerprint": self.fingerprint()}

    def merged(self, extra: Mapping) -> "KnowledgeTable":
        """A new table with ``extra`` (the ``to_dict`` shape, any part optional) laid over this one:
        a category in ``extra`` replaces the same category here; vocabularies are replaced per kind."""
        categories = dict(self.categories)
        for name, spec in (extra.get("categories") or {}).items():
            entry = _category(normalize(name), spec)
            categories[entry.category] = entry
        table = KnowledgeTable(
            categories=categories,
            replacements={**self.replacements, **{k: tuple(v) for k, v in (extra.get("replacements") or {}).items()}},
            addons={**self.addons, **{k: tuple(v) for k, v in (extra.get("addons") or {}).items()}},
            recolor_kinds=tuple(extra.get("recolor_kinds", self.recolor_kinds)),
            colours=tuple(extra.get("colours", self.colours)),
            aliases={**self.aliases, **{normalize(k): normalize(v) for k, v in (extra.get("aliases") or {}).items()}},
        )
        problems = table.problems()
        if problems:
            raise ValueError("knowledge table: " + "; ".join(problems[:5]))
        return table


def _category(name: str, spec: Mapping) -> CategoryKnowledge:
    """``{"kind", "noun", "descriptions": [{"predicate", "also_fits"}]}`` -> ``CategoryKnowledge``."""
    try:
        kind = str(spec["kind"])
        descriptions = [(str(d["predicate"]), tuple(normalize(c) for c in d.get("also_fits", ())))
                        for d in spec["descriptions"]]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"knowledge entry {name!r} needs kind and descriptions[].predicate ({exc})") from exc
    return _entry(name, kind, str(spec.get("noun") or name), descriptions)


def _entry(name: str, kind: str, noun: str, descriptions: list[tuple[str, tuple[str, ...]]]) -> CategoryKnowledge:
    descs = tuple(
        Description(f"{name}:{i}", name, kind, " ".join(pred.split()), (name, *[c for c in also if c != name]))
        for i, (pred, also) in enumerate(descriptions)
    )
    return CategoryKnowledge(name, kind, noun, descs)


def _mentions(predicate: str, entry: CategoryKnowledge) -> bool:
    """True when the predicate contains the head word of the category's name or noun ("light"
    of "traffic light"): that would answer the riddle. A modifier ("traffic") may appear."""
    words = set(predicate.lower().replace("'", " ").replace(",", " ").split())
    heads = {entry.category.split()[-1], entry.noun.lower().split()[-1]}
    return bool(heads & words)


@functools.cache
def default_knowledge() -> KnowledgeTable:
    """The curated table (``knowledge_table``), validated once per process."""
    table = KnowledgeTable(
        categories={name: _entry(name, kind, noun, descs) for name, (kind, noun, descs) in _data.CATEGORIES.items()},
        replacements=dict(_data.REPLACEMENTS), addons=dict(_data.ADDONS),
        recolor_kinds=tuple(_data.RECOLOR_KINDS), colours=tuple(_data.RECOLOR_COLOURS),
        aliases=dict(_data.ALIASES),
    )
    problems = table.problems()
    if problems:  # a broken curated table is a programming error, caught by the tests
        raise AssertionError("knowledge_table: " + "; ".join(problems))
    return table


def load_knowledge(path: str | Path | None = None) -> KnowledgeTable:
    """The default table, extended by a JSON file in the ``KnowledgeTable.to_dict`` shape
    (e.g. ``{"categories": {"rabbit": {"kind": "animal", "descriptions": [{"predicate": "hops",
    "also_fits": []}]}}}``). Raises ``ValueError`` naming the file when it cannot be used."""
    table = default_knowledge()
    if path is None:
        return table
    try:
        extra = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read knowledge file {path}: {exc}") from exc
    if not isinstance(extra, dict):
        raise ValueError(f"knowledge file {path} must hold a JSON object")
    return table.merged(extra)
