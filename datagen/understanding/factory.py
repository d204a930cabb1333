"""Build an ``UnderstandingBuilder`` from backend names and options (what the CLI and flows pass).

``parse_options(["masker.checkpoint=/w/sam.pth", "inpainter.method=ns", "quality.max_seam_ratio=6"])``
-> ``{"masker": {"checkpoint": "/w/sam.pth"}, "inpainter": {"method": "ns"}, "quality": {...}}``;
values are read as JSON when they parse (numbers, booleans, lists) and as strings otherwise.
"""
from __future__ import annotations

from typing import Any, Iterable

from datagen.backends import parse_stage_options
from datagen.quality import ClipScorer, QualityChecker
from datagen.understanding.builder import UnderstandingBuilder
from datagen.understanding.donors import load_donors

STAGES = ("masker", "inpainter", "harmonizer", "quality")


def parse_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``STAGE.KEY=VALUE`` strings -> ``{stage: {key: value}}``; raises ``ValueError`` on bad items."""
    return parse_stage_options(list(items), STAGES)


def build_quality(options: dict[str, Any]) -> QualityChecker:
    """``QualityChecker`` from options; ``clip=PATH`` loads local CLIP weights for the clip check."""
    options = dict(options)
    clip_path = options.pop("clip", None)
    clip = ClipScorer(str(clip_path)) if clip_path else None
    return QualityChecker(**options, clip=clip)


def build_understanding(
    *,
    masker: str = "grabcut",
    inpainter: str = "opencv",
    harmonizer: str = "classical",
    options: dict[str, dict[str, Any]] | None = None,
    donors: str | list = "demo",
    **builder_options: Any,
) -> UnderstandingBuilder:
    """Build the backends by name (``BackendUnavailable`` when one cannot run here), load the
    donors (``"demo"``, a folder, or a list of donor objects) and return the builder."""
    from datagen.harmonization import build_harmonizer
    from datagen.inpainting import build_inpainter
    from datagen.masking import build_masker

    options = options or {}
    donor_list = load_donors(donors) if isinstance(donors, str) else list(donors)
    builder = UnderstandingBuilder(
        build_masker(masker, **options.get("masker", {})),
        build_inpainter(inpainter, **options.get("inpainter", {})),
        build_harmonizer(harmonizer, **options.get("harmonizer", {})),
        donor_list,
        quality=build_quality(options.get("quality", {})),
        **builder_options,
    )
    if not builder.donors and "replace" in builder.ops:
        problems = "; ".join(f"#{p['index']} {p['reason']}" for p in builder.donor_problems)
        raise ValueError(f"no usable donor for replace samples ({problems or 'none given'})")
    return builder
