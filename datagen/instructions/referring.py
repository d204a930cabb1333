"""Referring expressions: phrases that name one instance uniquely among those of its category.

``referring_expressions(record, instance_id)`` returns every attribute that singles the instance
out ("the left cat", "the smaller cup", "the red rocket", "the cat in the mirror", "the cup"), in
the fixed order location, size, color, mirror, count; ``[]`` when nothing does. Every rule below
errs towards silence: an instruction naming the wrong object is worse training data than no
instruction, so an attribute is emitted only with a clear margin.

Competitors are the instances of the same category in the record (minus ``ignore``, used by the
understanding builder for the image after a removal). A category for which the catalog dropped an
annotation (``record.meta["dropped_instances"]`` entries with a ``category``) gets no expression at
all: the dropped object is still in the picture, unseen by every rule below. Decisions, with the thresholds as module
constants:

* **location** (geometry of box centres, x only): 2 instances give left/right, 3 give
  left/middle/right, 4+ give leftmost/rightmost for the extremes. Neighbouring centres must be at
  least ``LOCATION_GAP_OF_WIDTH`` x their mean box width and ``LOCATION_GAP_OF_IMAGE`` x the image
  width apart, otherwise the position is not clear and nothing is said.
* **size**: 2 instances give smaller/bigger, 3+ give smallest/biggest for the extremes, only when
  the area ratio to the nearest competitor is at least ``SIZE_RATIO`` by box area *and* by mask
  area (when every competitor has a mask). Requiring both keeps a half-occluded big object (small
  mask, big box) from being called either. An object cut by the image border (box within
  ``BORDER_PX`` of an edge) may be bigger than it looks: it may not be called smaller/smallest,
  and while a competitor is cut nothing is called bigger/biggest.
* **color**: ``attributes["color"]`` when annotated, else ``colors.color_name`` of the masked
  pixels. Unique only when the target's colour is known and every competitor's colour is known and
  different (an undecidable competitor might be read as the same colour), and, for estimated
  colours, when neither object has ``COLOR_OVERLAP`` or more of its pixels voting for the other's
  name: two copies of one orange-brown cat lit a little differently can fall on either side of
  the orange/brown line, and must not be told apart by it.
* **mirror**: ``attributes["in_mirror"]``. The only reflected instance is "the cat in the mirror";
  the only non-reflected one, when at least one is reflected, is "the cat outside the mirror".
* **count**: the only instance of its category (and not a reflection) is "the cup". This holds in
  a one-object image too; the paper's "multiple objects" case is the subset with other objects.

Mirror semantics (the paper's mirror category: "Remove the cat in the mirror"): a reflection is
an image of a real object, not another object. It does not count for location or size (with two
real people and one reflection, "the left person" is the left of the two real ones), it is never
named by location or size itself ("in the mirror" is its name), and while an object's reflection
is in the picture the short "the cat" is not used for it (a reader sees two cats; "the cat outside
the mirror" is unambiguous). Colour still compares against reflections: a reflection that shows
the same colour must not let "the red cat" point at two things. Editors keep an object and its
reflection consistent (``datagen.understanding``: a removal takes the reflection with it, a
replacement of a reflected object is not made).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

from datagen.instructions.colors import instance_color_votes, name_from_votes
from datagen.schema import ImageRecord, Instance

ATTRIBUTES = ("location", "size", "color", "mirror", "count")

LOCATION_GAP_OF_WIDTH = 0.5   # centre gap >= this x mean width of the two boxes
LOCATION_GAP_OF_IMAGE = 0.04  # ... and >= this x image width
SIZE_RATIO = 1.5              # area ratio to the nearest competitor, by box and by mask
COLOR_OVERLAP = 0.2           # pixel share voting for the other object's colour name
BORDER_PX = 1.0               # a box this close to an image edge is cut by the border
RELATION_GAP_OF_EXTENT = 0.5  # relation_to: centre offset >= this x mean box extent on that axis


@dataclass(frozen=True)
class Referring:
    """One way to name an instance uniquely. ``attribute`` is one of ``ATTRIBUTES``; ``value`` is
    e.g. ``"left"``, ``"smaller"``, ``"red"``, ``"in_mirror"``, ``"single"``; ``phrase`` is the
    noun phrase with its article, e.g. ``"the left cat"``."""

    attribute: str
    value: str
    phrase: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Facts:
    """Geometry and attributes of one instance, computed once per record."""

    instance: Instance
    cx: float
    cy: float
    width: float
    height: float
    box_area: float
    mask_area: int | None
    in_mirror: bool
    touches_border: bool
    _color: tuple[str | None, dict] | None = field(default=None, repr=False)


def _facts(inst: Instance, hw: tuple[int, int]) -> _Facts:
    x0, y0, x1, y1 = (float(v) for v in inst.box)
    h, w = hw
    return _Facts(
        instance=inst,
        cx=(x0 + x1) / 2, cy=(y0 + y1) / 2,
        width=x1 - x0, height=y1 - y0,
        box_area=(x1 - x0) * (y1 - y0),
        mask_area=None if inst.mask is None else int(inst.mask.sum()),
        in_mirror=bool(inst.attributes.get("in_mirror", False)),
        touches_border=min(x0, y0, w - x1, h - y1) <= BORDER_PX,
    )


class _Scene:
    """The record's instances grouped by category, with colours estimated lazily (pixel work is
    only done for categories where colour can matter)."""

    def __init__(self, record: ImageRecord, ignore: Iterable[str] = ()):
        skip = set(ignore)
        self.record = record
        self.image_width = float(record.image.shape[1])
        hw = record.image.shape[:2]
        self.facts = {i.id: _facts(i, hw) for i in record.instances if i.id not in skip}
        # Categories with an annotation the catalog dropped (a bad box, a crowd region...): that
        # object is still in the picture, so "the left cat" or "the cat" might name the wrong one.
        self.incomplete = {d["category"] for d in (record.meta or {}).get("dropped_instances", [])
                           if isinstance(d, dict) and d.get("category")}

    def peers(self, instance_id: str) -> list[_Facts]:
        """All instances of the category of ``instance_id``, itself included."""
        category = self.facts[instance_id].instance.category
        return [f for f in self.facts.values() if f.instance.category == category]

    def color(self, f: _Facts) -> tuple[str | None, dict]:
        """(colour name or None, pixel votes; empty for an annotated colour)."""
        if f._color is None:
            annotated = f.instance.attributes.get("color")
            if annotated:
                f._color = (str(annotated), {})
            else:
                votes = instance_color_votes(self.record.image, f.instance.mask)
                f._color = (name_from_votes(votes), votes)
        return f._color


def _clear_gap(a: _Facts, b: _Facts, image_width: float) -> bool:
    """True when ``b``'s centre is clearly to the right of ``a``'s."""
    need = max(LOCATION_GAP_OF_WIDTH * (a.width + b.width) / 2, LOCATION_GAP_OF_IMAGE * image_width)
    return b.cx - a.cx >= need


def _real(peers: list[_Facts]) -> list[_Facts]:
    """The peers that are objects, not reflections (see the module docstring)."""
    return [f for f in peers if not f.in_mirror]


def _location(scene: _Scene, target: _Facts, peers: list[_Facts]) -> str | None:
    peers = _real(peers)
    n = len(peers)
    if target.in_mirror or n < 2:
        return None
    order = sorted(peers, key=lambda f: f.cx)
    i = next(k for k, f in enumerate(order) if f is target)
    left_clear = i > 0 and _clear_gap(order[i - 1], target, scene.image_width)
    right_clear = i < n - 1 and _clear_gap(target, order[i + 1], scene.image_width)
    first, last = ("left", "right") if n <= 3 else ("leftmost", "rightmost")
    if i == 0 and right_clear:
        return first
    if i == n - 1 and left_clear:
        return last
    if n == 3 and i == 1 and left_clear and right_clear:
        return "middle"
    return None


def _size_label(values: list[float], target_index: int) -> str | None:
    """Extreme label for ``values[target_index]`` with a ``SIZE_RATIO`` margin to the nearest."""
    n = len(values)
    ordered = sorted(range(n), key=lambda k: values[k])
    small, big = ("smaller", "bigger") if n == 2 else ("smallest", "biggest")
    if ordered[0] == target_index and values[ordered[1]] >= SIZE_RATIO * values[ordered[0]]:
        return small
    if ordered[-1] == target_index and values[ordered[-1]] >= SIZE_RATIO * values[ordered[-2]]:
        return big
    return None


def _size(target: _Facts, peers: list[_Facts]) -> str | None:
    peers = _real(peers)
    if target.in_mirror or len(peers) < 2:
        return None
    index = peers.index(target)
    labels = {_size_label([f.box_area for f in peers], index)}
    if all(f.mask_area is not None for f in peers):
        labels.add(_size_label([float(f.mask_area) for f in peers], index))
    label = labels.pop() if len(labels) == 1 else None
    if label in ("smaller", "smallest") and target.touches_border:
        return None  # its true size is unknown: maybe bigger than it looks
    if label in ("bigger", "biggest") and any(f.touches_border for f in peers if f is not target):
        return None  # a cut competitor may truly be bigger
    return label


def _color(scene: _Scene, target: _Facts, peers: list[_Facts]) -> str | None:
    if len(peers) < 2:
        return None  # a lone instance is named by count; colour would add an estimate's risk
    mine, my_votes = scene.color(target)
    if mine is None:
        return None
    for other in peers:
        if other is not target:
            theirs, their_votes = scene.color(other)
            if theirs is None or theirs == mine:
                return None
            if my_votes.get(theirs, 0.0) >= COLOR_OVERLAP or their_votes.get(mine, 0.0) >= COLOR_OVERLAP:
                return None
    return mine


def _mirror(target: _Facts, peers: list[_Facts]) -> str | None:
    inside = [f for f in peers if f.in_mirror]
    outside = [f for f in peers if not f.in_mirror]
    if target.in_mirror and len(inside) == 1 and outside:
        return "in_mirror"
    if not target.in_mirror and len(outside) == 1 and inside:
        return "outside_mirror"
    return None


def _phrase(attribute: str, value: str, category: str) -> str:
    if attribute == "mirror":
        where = "in the mirror" if value == "in_mirror" else "outside the mirror"
        return f"the {category} {where}"
    if attribute == "count":
        return f"the {category}"
    return f"the {value} {category}"


def _expressions(scene: _Scene, instance_id: str) -> list[Referring]:
    target = scene.facts[instance_id]
    peers = scene.peers(instance_id)
    category = target.instance.category
    if category in scene.incomplete:
        return []
    found = {
        "location": _location(scene, target, peers),
        "size": _size(target, peers),
        "color": _color(scene, target, peers),
        "mirror": _mirror(target, peers),
        "count": "single" if len(peers) == 1 and not target.in_mirror else None,
    }
    return [Referring(a, v, _phrase(a, v, category)) for a, v in found.items() if v is not None]


def referring_expressions(
    record: ImageRecord, instance_id: str, *, ignore: Iterable[str] = ()
) -> list[Referring]:
    """Every attribute that names ``instance_id`` uniquely among its category in ``record``.

    ``ignore``: instance ids to treat as absent (e.g. the instance removed from the image).
    Returns ``Referring``s in the order location, size, color, mirror, count; ``[]`` when nothing
    singles the instance out. Raises ``KeyError`` for an unknown or ignored ``instance_id``.
    """
    scene = _Scene(record, ignore)
    if instance_id not in scene.facts:
        raise KeyError(f"record {record.id} has no instance {instance_id!r} (or it is ignored)")
    return _expressions(scene, instance_id)


def referring_table(record: ImageRecord, *, ignore: Iterable[str] = ()) -> dict[str, list[Referring]]:
    """``referring_expressions`` for every (non-ignored) instance, sharing the per-record work."""
    scene = _Scene(record, ignore)
    return {iid: _expressions(scene, iid) for iid in scene.facts}


def relation_to(record: ImageRecord, instance_id: str, anchor_id: str) -> str | None:
    """Where ``instance_id`` lies relative to ``anchor_id``: ``"to the right of"``,
    ``"to the left of"``, ``"above"`` or ``"below"``, or None when no direction is clearly true.

    Uses box centres: the offset along the dominant axis must be at least
    ``RELATION_GAP_OF_EXTENT`` x the mean box extent on that axis (widths for left/right, heights
    for above/below) and larger than the offset on the other axis.
    """
    hw = record.image.shape[:2]
    by_id = {i.id: _facts(i, hw) for i in record.instances}
    me, anchor = by_id[instance_id], by_id[anchor_id]
    dx, dy = me.cx - anchor.cx, me.cy - anchor.cy
    if abs(dx) > abs(dy) and abs(dx) >= RELATION_GAP_OF_EXTENT * (me.width + anchor.width) / 2:
        return "to the right of" if dx > 0 else "to the left of"
    if abs(dy) > abs(dx) and abs(dy) >= RELATION_GAP_OF_EXTENT * (me.height + anchor.height) / 2:
        return "below" if dy > 0 else "above"
    return None


def anchor_phrase(record: ImageRecord, anchor_id: str, *, ignore: Iterable[str] = ()) -> str | None:
    """A unique noun phrase for ``anchor_id`` to hang a relation on ("Add a cat to the right of
    *the cat*"): "the cat" when it is the only one of its category and has no reflection in the
    picture, else the first referring expression (location, size, color, mirror order), else None."""
    scene = _Scene(record, ignore)
    if anchor_id not in scene.facts:
        raise KeyError(f"record {record.id} has no instance {anchor_id!r} (or it is ignored)")
    target = scene.facts[anchor_id]
    if not target.in_mirror and scene.peers(anchor_id) == [target]:
        return f"the {target.instance.category}"
    found = _expressions(scene, anchor_id)
    return found[0].phrase if found else None

