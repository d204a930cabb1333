"""Reason-Edit style evaluation: ``python -m trainer.evaluate``.

Cases come from a held-out manifest (``--manifest``: shards of this project's format) or a
Reason-Edit-style folder (``--reason-edit``: one sub-folder per category with ``NAME.png``,
``NAME_mask.jpg|png`` and one ``*.txt`` holding a line ``instruction CLIP: text`` per image, in
sorted order). Edited images come from a checkpoint (``--ckpt``: edited here and saved) or from a
folder of earlier results (``--predictions``: ``KEY.png`` per case, or the official script's layout:
one ``<Category>_metrics_<n>/`` folder per category, e.g. ``LeftRight_metrics_1``, whose sorted
``*.png`` match the category's sorted source images). All metrics run at 256 px: PSNR / SSIM
(always), LPIPS (``--lpips-backbone`` + ``--lpips-linear``) and foreground CLIP score (``--clip``);
a metric without local weights is reported as skipped. ``--protocol masked`` (default) measures the
background only; ``--protocol official`` reproduces the official script (``trainer.paper_protocol``).
Writes ``metrics.json``, ``metrics.md`` (one row per category + overall), ``grid.png``.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from trainer import metrics

log = logging.getLogger("trainer.evaluate")
METRIC_SIZE = 256
ATTRIBUTE_CATEGORY = {"location": "Left-Right", "size": "Relative-Size", "mirror": "Mirror", "color": "Color",
                      "count": "Multiple-Objects"}


@dataclass
class Case:
    key: str  # unique; also the predictions file stem (may contain one '/': category/name)
    category: str
    instruction: str
    src: np.ndarray  # HxWx3 uint8
    mask: np.ndarray  # HxW bool, True = edit region
    clip_text: str = ""
    tgt: np.ndarray | None = None
    mask_l: np.ndarray | None = None  # HxW uint8 as stored (a JPEG mask stays soft), for --protocol official


def category_of(meta: dict) -> str:
    """Reason-Edit category of a shard sample (reasoning, or the understanding attribute)."""
    if meta.get("scenario") == "reasoning":
        return "Reasoning"
    attr = (meta.get("target") or {}).get("attribute")
    attr = "+".join(attr) if isinstance(attr, list) else attr
    return ATTRIBUTE_CATEGORY.get(attr, f"{meta.get('scenario')}:{attr or meta.get('op')}")


def manifest_cases(manifest: str, limit: int = 0) -> list[Case]:
    """Cases from every shard of one manifest (``clip_text`` from ``target.clip_text`` if present)."""
    from trainer.data import tar_samples
    from trainer.features import decode_rgb, image_member
    from trainer.sources import manifest_source

    cases = []
    for raw in tar_samples(manifest_source(manifest, allow_holdout=True).urls):
        meta = json.loads(raw["json"])
        mask_l = np.asarray(Image.open(__import__("io").BytesIO(raw["mask.png"])).convert("L"))
        cases.append(Case(raw["__key__"], category_of(meta), meta["instruction"],
                          np.asarray(decode_rgb(image_member(raw, "src"))), mask_l > 127,
                          str((meta.get("target") or {}).get("clip_text", "")),
                          np.asarray(decode_rgb(image_member(raw, "tgt"))), mask_l))
        if limit and len(cases) >= limit:
            break
    return cases


def _category_dirs(root: Path) -> list[Path]:
    subs = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.txt")))
    return subs or [root]


def _category_name(folder: str) -> str:
    """``1-Left-Right`` -> ``Left-Right``; ``Reasoning-231115`` -> ``Reasoning``."""
    name = folder.split("-", 1)[-1] if folder[:1].isdigit() and "-" in folder else folder
    return "Reasoning" if name.lower().startswith("reasoning") else name


def reason_edit_cases(root: str, limit: int = 0) -> list[Case]:
    """Cases from a Reason-Edit-style folder (see module docstring)."""
    cases = []
    for folder in _category_dirs(Path(root)):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")
                        and not p.stem.endswith("_mask"))
        masks = sorted(p for p in folder.iterdir() if p.stem.endswith("_mask"))
        texts = sorted(folder.glob("*.txt"))
        lines = [ln for ln in texts[0].read_text().splitlines() if ln.strip()] if texts else []
        if not (len(images) == len(masks) == len(lines)):
            raise ValueError(f"{folder}: {len(images)} images, {len(masks)} masks, {len(lines)} text lines differ")
        category = _category_name(folder.name)
        for image, mask, line in zip(images, masks, lines):
            instruction, _, clip_text = line.partition("CLIP:")
            mask_l = np.asarray(Image.open(mask).convert("L"))
            cases.append(Case(f"{folder.name}/{image.stem}", category, instruction.strip(),
                              np.asarray(Image.open(image).convert("RGB")), mask_l > 127, clip_text.strip(),
                              mask_l=mask_l))
            if limit and len(cases) >= limit:
                return cases
    return cases


def at_metric_size(image: np.ndarray, mask: bool = False) -> np.ndarray:
    pil = Image.fromarray(image.astype(np.uint8) * (255 if mask else 1))
    resample = Image.Resampling.NEAREST if mask else Image.Resampling.BICUBIC
    out = np.asarray(pil.resize((METRIC_SIZE, METRIC_SIZE), resample))
    return out > 127 if mask else out


def score_case(case: Case, edited: np.ndarray, lpips_model=None, clip=None, protocol: str = "masked") -> dict:
    """Metrics of one edited image (any size; everything is resized to 256 px first)."""
    from trainer.lpips import background_lpips

    if protocol == "official":
        from trainer import paper_protocol

        mask_l = case.mask_l if case.mask_l is not None else case.mask.astype(np.uint8) * 255
        scores = paper_protocol.score(case.src, edited, mask_l, lpips_model, clip, case.clip_text)
        return {"key": case.key, "category": case.category, "instruction": case.instruction, **scores}
    src, out, mask = at_metric_size(case.src), at_metric_size(edited), at_metric_size(case.mask, mask=True)
    row = {"key": case.key, "category": case.category, "instruction": case.instruction,
           "psnr": metrics.background_psnr(src, out, mask), "ssim": metrics.background_ssim(src, out, mask),
           "psnr_masked_frame": metrics.masked_frame_psnr(src, out, mask)}
    if lpips_model is not None:
        row["lpips"] = background_lpips(lpips_model, src, out, mask)
    if clip is not None and case.clip_text:
        row["clip"] = clip(metrics.crop_to_mask(out, mask), case.clip_text)
    return row


def summarize(rows: list[dict]) -> dict[str, dict]:
    """Mean of every metric per category and overall (``n`` = cases)."""
    groups = defaultdict(list)
    for row in rows:
        groups[row["category"]].append(row)
    groups["overall"] = rows
    table = {}
    for name, items in groups.items():
        keys = [k for k in ("psnr", "ssim", "lpips", "clip", "psnr_masked_frame") if any(k in r for r in items)]
        table[name] = {"n": len(items), **{k: float(np.mean([r[k] for r in items if k in r])) for k in keys}}
    return table


def markdown(table: dict[str, dict], skipped: list[str]) -> str:
    cols = ["psnr", "ssim", "lpips", "clip", "psnr_masked_frame"]
    head = "| category | n | PSNR (bg) | SSIM (bg) | LPIPS (bg) | CLIP (fg) | PSNR (public script) |"
    lines = [head, "|" + "---|" * 7]
    for name, row in table.items():
        cells = [f"{row[c]:.4f}" if c in row else "skipped" for c in cols]
        lines.append(f"| {name} | {row['n']} | " + " | ".join(cells) + " |")
    notes = [f"- {s}" for s in skipped]
    return "\n".join(lines + [""] + notes) + "\n"


def grid(cases: list[Case], edited: dict[str, np.ndarray], path: Path, rows: int = 12, cell: int = 160) -> Path:
    """Side-by-side PNG: source | mask overlay | edited | target (manifest cases), one row per case."""
    from PIL import ImageDraw

    chosen = cases[:rows]
    cols = 4 if any(c.tgt is not None for c in chosen) else 3
    sheet = Image.new("RGB", (cols * cell, len(chosen) * (cell + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, case in enumerate(chosen):
        overlay = case.src.copy()
        overlay[case.mask] = (0.5 * overlay[case.mask] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
        tiles = [case.src, overlay, edited[case.key]] + ([case.tgt] if cols == 4 and case.tgt is not None else [])
        y = r * (cell + 14)
        for c, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(tile).resize((cell, cell)), (c * cell, y + 14))
        draw.text((2, y + 1), f"[{case.category}] {case.instruction}"[: cols * cell // 6], fill="black")
    sheet.save(path)
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="held-out manifest JSON")
    src.add_argument("--reason-edit", help="Reason-Edit-style folder")
    gen = p.add_mutually_exclusive_group(required=True)
    gen.add_argument("--ckpt", help="checkpoint to edit with")
    gen.add_argument("--predictions", help="folder of edited images: KEY.png, or the official <Category>_metrics_<n>/ folders")
    p.add_argument("--protocol", choices=["masked", "official"], default="masked",
                   help="masked: background pixels only (ours); official: the public script's choices (paper Table 1)")
    p.add_argument("-o", "--output", default="runs/eval")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N cases (0: all)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--text-guidance", type=float, default=7.5)
    p.add_argument("--image-guidance", type=float, default=1.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", default="", help="local CLIPModel folder (ViT-L/14 for paper numbers)")
    p.add_argument("--lpips-net", choices=["alex", "vgg", "squeeze"], default=None,
                   help="default: squeeze with --protocol official (as the paper), else alex")
    p.add_argument("--lpips-backbone", default="", help="torchvision alexnet/vgg16/squeezenet1_1 state dict file")
    p.add_argument("--lpips-linear", default="", help="LPIPS v0.1 linear weights file (alex.pth / vgg.pth / squeeze.pth)")
    return p.parse_args(argv)


def official_prediction_files(root: Path, cases: list[Case]) -> dict[str, Path]:
    """Case key -> edited image in the official script's layout (``LeftRight_metrics_1/*.png`` ...):
    the folder whose name before ``_metrics`` is the category without dashes, its sorted PNGs matched
    by position to the category's cases. Empty when ``root`` has no such folder."""
    folders = {p.name.split("_metrics")[0].lower(): p for p in root.glob("*_metrics_*") if p.is_dir()}
    by_category = defaultdict(list)
    for case in cases:
        by_category[case.category].append(case)
    files = {}
    for category, group in by_category.items():
        folder = folders.get(category.replace("-", "").lower())
        if folder is None:
            continue
        images = sorted(folder.glob("*.png"))
        if len(images) < len(group):
            raise ValueError(f"--predictions {folder}: {len(images)} images for {len(group)} {category} cases")
        files.update({case.key: image for case, image in zip(group, images)})
    return files


def edited_images(args, cases: list[Case], out: Path) -> dict[str, np.ndarray]:
    """Run the checkpoint on every case (saving OUT/edited/KEY.png) or read ``--predictions``."""
    result = {}
    if args.predictions:
        files = official_prediction_files(Path(args.predictions), cases)
        for case in cases:
            path = files.get(case.key, Path(args.predictions) / f"{case.key}.png")
            if not path.exists():
                raise FileNotFoundError(f"--predictions {args.predictions}: no edited image for case {case.key} ({path})")
            result[case.key] = np.asarray(Image.open(path).convert("RGB"))
        return result
    from trainer.edit import Editor

    editor = Editor(args.ckpt)
    for case in cases:
        image, _ = editor.edit(case.src, case.instruction, steps=args.steps, text_guidance=args.text_guidance,
                               image_guidance=args.image_guidance, seed=args.seed)
        target = out / "edited" / f"{case.key}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target)
        result[case.key] = image
    return result


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    from trainer.options import usage_errors

    with usage_errors():
        cases = manifest_cases(args.manifest, args.limit) if args.manifest else reason_edit_cases(args.reason_edit, args.limit)
        edited = edited_images(args, cases, out)
    skipped, lpips_model, clip = [], None, None
    net = args.lpips_net or ("squeeze" if args.protocol == "official" else "alex")
    if args.lpips_backbone and args.lpips_linear:
        from trainer.lpips import load_lpips

        lpips_model = load_lpips(net, args.lpips_backbone, args.lpips_linear)
        if args.protocol == "official" and net != "squeeze":
            skipped.append(f"LPIPS uses {net}, not the official script's SqueezeNet: not comparable to the paper")
    else:
        skipped.append("LPIPS skipped: no local weights (--lpips-backbone and --lpips-linear)")
    if args.clip:
        clip = metrics.ClipScorer(args.clip)
        if not any(c.clip_text for c in cases):
            skipped.append("CLIP score skipped: no case has a CLIP text")
    else:
        skipped.append("CLIP score skipped: no local CLIP weights (--clip)")
    rows = [score_case(c, edited[c.key], lpips_model, clip, args.protocol) for c in cases]
    table = summarize(rows)
    note = ("official protocol: both images x (1 - mask), whole frame (paper Table 1)" if args.protocol == "official"
            else "PSNR/SSIM/LPIPS over background pixels only; psnr_masked_frame = public script's whole-frame variant")
    report = {"protocol": args.protocol, "cases": rows, "table": table, "skipped": skipped, "note": note}
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    (out / "metrics.md").write_text(markdown(table, skipped))
    grid(cases, edited, out / "grid.png")
    for line in skipped:
        log.warning(line)
    print(markdown(table, skipped))
    return report


if __name__ == "__main__":
    main()
