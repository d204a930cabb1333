"""Donor objects (the paper's ``x2`` + ``mask2``): the objects pasted in by ``replace`` samples.

A donor is anything with ``category`` (str), ``rgb`` (hxwx3 uint8 RGB) and ``mask`` (hxw bool,
True = the object). ``prepare_donors`` cuts each one to its mask once, at start-up, and gives it
a content fingerprint for sample keys and provenance. ``load_donors(spec)`` reads them from:

* ``"demo"`` -- ``datagen.sources.demo.donor_objects()`` (cutouts from scikit-image photos);
* a folder of RGBA PNGs -- alpha >= 128 is the object; the category is the file name up to the
  first ``_`` or ``-`` (``rabbit_01.png`` -> ``rabbit``);
* a folder of ``NAME.jpg|png`` images, each with a ``NAME.mask.png`` (255 = object) beside it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from datagen.compositing import CompositingError, cutout
from datagen.imageio import ImageDecodeError


@dataclass(frozen=True)
class Donor:
    """A donor read from disk. ``rgb``: hxwx3 uint8, ``mask``: hxw bool."""

    category: str
    rgb: np.ndarray
    mask: np.ndarray
    source: str = ""


@dataclass(frozen=True)
class PreparedDonor:
    """A donor cut to its mask's bounding box. ``rgb``: hxwx3 uint8, ``mask``: hxw bool."""

    index: int
    category: str
    rgb: np.ndarray
    mask: np.ndarray
    fingerprint: str


def donor_fingerprint(rgb: np.ndarray, mask: np.ndarray) -> str:
    """16 hex chars from the cut-out's pixels and mask (input content, never pipeline output)."""
    digest = hashlib.sha1(str(rgb.shape).encode())
    digest.update(rgb.tobytes())
    digest.update(np.packbits(mask).tobytes())
    return digest.hexdigest()[:16]


def prepare_donors(donors: Sequence) -> tuple[list[PreparedDonor], list[dict]]:
    """Cut every donor once. Returns ``(ready, problems)``; a broken donor (empty mask, shape
    mismatch, not uint8 RGB) goes to ``problems`` with its reason and is never chosen."""
    ready, problems = [], []
    for index, donor in enumerate(donors):
        category = str(getattr(donor, "category", "") or "")
        try:
            if not category:
                raise CompositingError("bad_donor", "donor has no category")
            rgb, mask = cutout(donor.rgb, donor.mask)
        except CompositingError as exc:
            problems.append({"index": index, "category": category, "reason": exc.reason, "detail": exc.detail})
            continue
        ready.append(PreparedDonor(index, category, rgb, mask, donor_fingerprint(rgb, mask)))
    return ready, problems


_CATEGORY_RE = re.compile(r"^([^_\-.]+)")


def load_donors(spec: str) -> list:
    """Donors from ``"demo"`` or a folder (see the module docstring). Unreadable files raise
    ``ValueError`` naming the file: donors are configuration, checked before a run starts."""
    if spec == "demo":
        from datagen.sources.demo import donor_objects

        return list(donor_objects())
    folder = Path(spec)
    if not folder.is_dir():
        raise ValueError(f"--donors must be 'demo' or a folder of cutouts, got {spec!r}")
    donors = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg") or path.name.endswith(".mask.png"):
            continue
        donors.append(_read_donor(path))
    if not donors:
        raise ValueError(f"no donor images (RGBA PNG, or image + NAME.mask.png) in {folder}")
    return donors


def _read_donor(path: Path) -> Donor:
    from PIL import Image

    from datagen.imageio import decode_mask, load_image

    match = _CATEGORY_RE.match(path.stem)
    category = match.group(1) if match else path.stem
    mask_path = path.with_name(path.stem + ".mask.png")
    try:
        if mask_path.exists():
            rgb = load_image(path)
            mask = decode_mask(mask_path.read_bytes())
        else:
            with Image.open(path) as img:
                if "A" not in img.getbands():
                    raise ValueError(f"donor {path} has no alpha channel and no {mask_path.name}")
                rgba = np.asarray(img.convert("RGBA"))
            rgb, mask = np.ascontiguousarray(rgba[:, :, :3]), rgba[:, :, 3] >= 128
    except (OSError, ImageDecodeError) as exc:
        raise ValueError(f"cannot read donor {path}: {exc}") from exc
    return Donor(category=category, rgb=rgb, mask=mask, source=str(path))
