"""A contact sheet: samples laid out as ``src | tgt | mask`` with their instruction underneath,
for people who would rather look at a dataset than read its counts."""
from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from datagen.schema import EditSample
from datagen.shards.index import attribute_of

BACKGROUND = (255, 255, 255)
LETTERBOX = (224, 224, 224)
TEXT = (20, 20, 20)
CAPTION = (110, 110, 110)
GAP = 4  # pixels between the three images of a sample
MARGIN = 12  # pixels around and between samples


def _font(thumb: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=max(10, thumb // 12))
    except TypeError:  # Pillow < 10.1 has only the fixed-size bitmap font
        return ImageFont.load_default()


def _thumbnail(image: np.ndarray, thumb: int) -> Image.Image:
    """Scale ``image`` (HxWx3 uint8) to fit a ``thumb`` x ``thumb`` letterboxed square."""
    pil = Image.fromarray(image)
    # Enlarged small images stay crisp with nearest-neighbour; shrunk ones need a proper filter.
    upscale = max(pil.size) < thumb
    pil = ImageOps.contain(pil, (thumb, thumb), Image.Resampling.NEAREST if upscale else Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (thumb, thumb), LETTERBOX)
    canvas.paste(pil, ((thumb - pil.width) // 2, (thumb - pil.height) // 2))
    return canvas


def _wrap(text: str, font, width: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word longer than a line gets a line of its own."""
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines


def render(samples: Iterable[EditSample], *, cols: int = 2, thumb: int = 160) -> np.ndarray:
    """Draw ``samples`` on a grid of ``cols`` samples per row; returns ``HxWx3 uint8 RGB``.

    Each sample is three ``thumb``-pixel squares (source, target, mask in white) followed by a
    grey caption line (``scenario/op · attribute``) and its instruction, word-wrapped.
    Raises ``ValueError`` for no samples or non-positive ``cols`` / ``thumb``.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("a contact sheet needs at least one sample")
    if cols < 1 or thumb < 8:
        raise ValueError(f"cols must be >= 1 and thumb >= 8, got {cols}, {thumb}")
    font = _font(thumb)
    line_h = int(font.getbbox("Ag")[3]) + 3
    cell_w = 3 * thumb + 2 * GAP
    texts = [[(f"{s.scenario}/{s.op} \u00b7 {attribute_of(s.target)}", CAPTION)]
             + [(line, TEXT) for line in _wrap(s.instruction, font, cell_w)] for s in samples]
    cols = min(cols, len(samples))
    rows = [list(range(i, min(i + cols, len(samples)))) for i in range(0, len(samples), cols)]
    row_heights = [thumb + GAP + max(len(texts[i]) for i in row) * line_h for row in rows]
    width = MARGIN + cols * (cell_w + MARGIN)
    height = MARGIN + sum(h + MARGIN for h in row_heights)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = MARGIN
    for row, row_h in zip(rows, row_heights):
        for col, i in enumerate(row):
            x = MARGIN + col * (cell_w + MARGIN)
            mask_rgb = np.repeat(samples[i].mask[:, :, None], 3, axis=2).astype(np.uint8) * 255
            for j, image in enumerate((samples[i].src, samples[i].tgt, mask_rgb)):
                sheet.paste(_thumbnail(image, thumb), (x + j * (thumb + GAP), y))
            for k, (line, colour) in enumerate(texts[i]):
                draw.text((x, y + thumb + GAP + k * line_h), line, fill=colour, font=font)
        y += row_h + MARGIN
    return np.asarray(sheet, dtype=np.uint8).copy()


def pick_samples(manifest: str | Path, n: int = 12, scan_per_shard: int = 40) -> list[EditSample]:
    """Up to ``n`` samples that show a dataset's variety: at most two per source record, with
    different ops, from shards across the whole dataset (not just the first batch). Only the
    chosen samples' images are decoded, and at most ``scan_per_shard`` samples of a shard are
    looked at, so this stays cheap on a large dataset."""
    from datagen.shards import load_manifest
    from datagen.shards.reader import _open, decode_sample
    from datagen.shards.tario import iter_tar_samples

    shards = load_manifest(manifest)["shardlist"]
    step = max(1, len(shards) // n)
    chosen, ops_by_record = [], {}
    for shard in shards[::step]:
        with _open(shard["path"]) as fh:
            for _key, members in islice(iter_tar_samples(fh), scan_per_shard):
                meta = json.loads(members["json"])
                ops = ops_by_record.setdefault((meta.get("provenance") or {}).get("record", meta["key"]), set())
                if len(ops) >= 2 or meta["op"] in ops:
                    continue
                ops.add(meta["op"])
                chosen.append(decode_sample(members))
                if len(chosen) >= n:
                    return chosen
    return chosen


def write_contact_sheet(manifest: str | Path, out_png: str | Path, *, n: int = 12, cols: int = 2,
                        thumb: int = 160) -> Path | None:
    """Render ``pick_samples(manifest, n)`` to the PNG ``out_png``; None if there is nothing to show."""
    samples = pick_samples(manifest, n)
    return save_contact_sheet(samples, out_png, cols=cols, thumb=thumb) if samples else None


def save_contact_sheet(samples: list[EditSample], out_png: str | Path, *, cols: int = 2, thumb: int = 160) -> Path:
    """``render(samples)`` written as the PNG ``out_png`` (parent folders created)."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    # compress_level 3: zlib's default 6 costs three times the time for a few per cent of size.
    Image.fromarray(render(samples, cols=cols, thumb=thumb)).save(out_png, compress_level=3)
    return out_png
