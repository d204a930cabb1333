"""Dataset recipes: ``python -m trainer.stage2 --recipe recipes/smartedit-stage2.yaml [--data-root DIR]``.

A recipe (YAML, ``version: 1``) names the datasets of a mix and their sampling weights::

    version: 1
    name: smartedit-stage2
    data_root: ..                      # optional, relative to this file
    datasets:
      - name: synthetic-understanding
        manifest: manifests/understanding.json   # a manifest, or a folder = every manifest in it
        weight: 0.15
      - name: llava-instruct
        vqa: llava/llava_instruct_150k.json      # LLaVA-style VQA JSON (language loss only)
        vqa_images: coco/train2017
        weight: 0.1

Relative paths resolve against ``--data-root``, else the recipe's ``data_root`` (relative to the
recipe file), else the recipe file's folder. Weights are normalised over the entries; an entry whose
folder holds several manifests shares its weight among them by size. Each sample key is read once
across every manifest of the recipe.
"""
from __future__ import annotations

import logging
from pathlib import Path

from trainer.sources import (Source, check_unique_names, drop_duplicate_keys, manifest_source, training_manifests,
                             vqa_source)

log = logging.getLogger(__name__)
ENTRY_KEYS = {"name", "manifest", "vqa", "vqa_images", "weight"}


def _root(recipe: Path, data: dict, data_root: str | None) -> Path:
    if data_root:
        return Path(data_root)
    if data.get("data_root"):
        return (recipe.parent / str(data["data_root"])).resolve()
    return recipe.parent.resolve()


def _resolve(root: Path, path: str) -> str:
    return path if "://" in path or Path(path).is_absolute() else str(root / path)


def read_recipe(path: str | Path) -> dict:
    """The recipe's YAML as a dict, checked: one-sentence errors name the file and the entry."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--recipe {path}: no such file")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError(f"--recipe {path}: expected a mapping with 'version: 1'")
    entries = data.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"--recipe {path}: 'datasets' must be a non-empty list")
    for i, entry in enumerate(entries):
        label = entry.get("name", "?") if isinstance(entry, dict) else repr(entry)
        where = f"--recipe {path}: dataset {i + 1} ({label})"
        if not isinstance(entry, dict) or not entry.get("name"):
            raise ValueError(f"{where} needs a name")
        if unknown := sorted(set(entry) - ENTRY_KEYS):
            raise ValueError(f"{where} has unknown keys {unknown}; expected {sorted(ENTRY_KEYS)}")
        if ("manifest" in entry) == ("vqa" in entry):
            raise ValueError(f"{where} needs exactly one of 'manifest' or 'vqa'")
        weight = entry.get("weight", 1.0)
        if not isinstance(weight, (int, float)) or weight < 0:
            raise ValueError(f"{where}: weight must be a number >= 0")
    return data


def recipe_sources(path: str | Path, data_root: str | None = None) -> list[Source]:
    """Every dataset of the recipe as weighted ``Source``s (weights normalised to sum to 1)."""
    path = Path(path)
    data = read_recipe(path)
    root = _root(path, data, data_root)
    groups: list[tuple[float, list[Source]]] = []
    held_out: list[Source] = []
    for entry in data["datasets"]:
        weight = float(entry.get("weight", 1.0))
        if "vqa" in entry:
            images = _resolve(root, entry["vqa_images"]) if entry.get("vqa_images") else None
            source = vqa_source(_resolve(root, entry["vqa"]), images)
            source.name = entry["name"]
            groups.append((weight, [source]))
            continue
        urls, held = training_manifests(_resolve(root, entry["manifest"]))
        held_out += held
        sources = [manifest_source(u) for u in urls]
        for s in sources:
            s.name = entry["name"] if len(sources) == 1 else f"{entry['name']}/{s.name}"
        groups.append((weight, sources))
    every = [s for _, group in groups for s in group]
    check_unique_names(every)
    drop_duplicate_keys(every, held_out)
    for weight, group in groups:
        size = sum(s.nsamples for s in group) or 1
        for s in group:
            s.weight = weight * s.nsamples / size
    kept = [s for s in every if s.weight > 0 and s.nsamples > 0]
    if not kept:
        raise ValueError(f"--recipe {path}: no dataset left to train on (all empty or weighted 0)")
    total = sum(s.weight for s in kept)
    for s in kept:
        s.weight /= total
    log.info("recipe %s (data root %s): %s", data.get("name", path.stem), root,
             ", ".join(f"{s.name} {100 * s.weight:.1f}%" for s in kept))
    return kept
