"""Segmentation annotations with human expressions as perception samples ("Mark ... in green").

The overlay and the instruction templates are the perception builder's (``datagen.perception``,
``datagen.instructions.templates``): an imported mark sample looks exactly like a synthetic one,
only the expression comes from the dataset's annotators instead of our referring expressions.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from datagen.instructions.colors import MARK_COLORS, color_name
from datagen.instructions.templates import choose, mark_instruction, seeded_index
from datagen.perception import overlay_mask
from datagen.schema import EditSample, ImageRecord

# For whole-sentence queries (LISA's is_sentence): the query is kept verbatim, the mark follows.
SENTENCE_TEMPLATES = (
    "{query} Mark it in {colour}.",
    "{query} Highlight it with {colour}.",
    "{query} Cover it with a translucent {colour} mask.",
)
OPACITY = 0.5  # InstructDiffusion / SmartEdit's segmentation transparency
COLOUR_VOTES = 4096


def region_colour(image: np.ndarray, mask: np.ndarray) -> str | None:
    """Colour name of ``mask``'s pixels (HxW bool) in ``image`` (HxWx3 uint8); None when the mask
    is empty or no colour dominates. Computed once per record: every sentence of it shares the mask.
    A vote over at most ``COLOUR_VOTES`` evenly spread pixels names the same majority colour as
    one over all of them (stuff regions cover half an image) at a fraction of the cost; the voters
    are gathered by index, in raster order, without a full-size mask of them."""
    where = np.flatnonzero(mask)
    if where.size == 0:
        return None
    return color_name(image.reshape(-1, 3)[where[:: max(1, where.size // COLOUR_VOTES)]])


def pick_colour(own: str | None, *, seed: int, key: Sequence, expression: str = "",
                colors=MARK_COLORS) -> tuple[str, tuple[int, int, int]]:
    """Seeded palette colour for marking a region whose own colour name is ``own``, avoiding it
    and any colour the ``expression`` names when the palette leaves a choice (a red mark on a red
    shirt is invisible; "Mark the man in the red shirt in red" reads as a riddle)."""
    named = set(expression.lower().replace(",", " ").split())
    usable = [c for c in colors if c[0] != own and c[0] not in named] or list(colors)
    return usable[seeded_index(len(usable), seed, *key, "colour")]


def mark_phrasing(expression: str, colour: str, *, sentence: bool, seed: int, key: Sequence):
    """``Phrasing`` naming ``expression`` (an annotator's phrase, or a whole question when
    ``sentence``) and the overlay ``colour``."""
    if sentence:
        return choose(SENTENCE_TEMPLATES, {"query": expression, "colour": colour}, seed, ("mark-sentence", *key))
    return mark_instruction(expression, colour, seed=seed, key=key)


def mark_sample(importer, record: ImageRecord, *, mask: np.ndarray, expression: str, parts: Sequence,
                target: dict, ids: dict, sentence: bool = False, own_colour: str | None = None) -> EditSample:
    """One perception sample: ``record.image`` with ``mask`` (HxW bool) overlaid at 0.5 opacity and
    an instruction naming ``expression``. An empty ``mask`` (the expression names nothing in the
    image) gives op ``keep``: target = source, the model learns to leave the image alone.

    ``parts``: what distinguishes this sample within the record (sentence id...), part of the key;
    ``target``/``ids``: dataset facts for ``target`` and ``provenance["ids"]``; ``own_colour``:
    ``region_colour(record.image, mask)``, computed once by the caller for all its samples."""
    key_parts = (record.id, *parts)
    colour, rgb = pick_colour(own_colour, seed=importer.seed, key=key_parts, expression=expression)
    phrasing = mark_phrasing(expression, colour, sentence=sentence, seed=importer.seed, key=key_parts)
    area = int(mask.sum())
    keep = area == 0
    return EditSample(
        key=importer.key(record, *parts),
        src=record.image,
        tgt=record.image if keep else overlay_mask(record.image, mask, rgb, OPACITY),
        mask=mask,
        instruction=phrasing.instruction,
        paraphrases=list(phrasing.paraphrases),
        scenario="perception",
        op="keep" if keep else "mark",
        target={"expression": expression, "sentence": sentence, "colour": colour, "colour_rgb": list(rgb),
                "attribute": "human_expression", **target},
        provenance=importer.provenance(record, **ids),
        quality={"scores": {"mask_area": area, "mask_fraction": area / mask.size}, "passed": [], "failed": {}},
    )
