"""Running an import job into a temporary folder and reading its shards back three ways."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from datagen.jobs import JobConfig, run_job
from datagen.shards.quarantine import read_quarantine_log


def import_job(dataset: str, source: Path, tmp: Path, *, images: Path | None = None, batch_size: int = 2,
               **options) -> JobConfig:
    return JobConfig("import", source=str(source), images=str(images) if images else None, out=str(tmp / "out" / dataset.replace("-", "_")),
                     name=dataset.replace("-", "_"), manifest_dir=str(tmp / "manifests"), batch_size=batch_size,
                     builder_options={"dataset": dataset, **options})


def run_import(config: JobConfig):
    result = run_job(config)
    assert result.manifest is not None, result.stats
    return result


def quarantine_reasons(config: JobConfig) -> dict[str, str]:
    """``{record id: reason}`` from every quarantine log of the job's data folder."""
    found = {}
    for log in sorted(Path(config.out).glob("*.quarantine.jsonl")):
        found.update({e["id"]: e["reason"] for e in read_quarantine_log(log)})
    return found


def _png(data: bytes, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert(mode))


def read_three_ways(manifest: Path) -> list[dict]:
    """Samples as webdataset, wids and the trainer's reader see them; asserts they agree.
    Returns ``[{"key", "meta", "src", "tgt", "mask"}]`` (arrays decoded from the tar)."""
    import webdataset
    import wids

    from trainer.data import tar_samples
    from trainer.sources import manifest_source

    source = manifest_source(str(manifest), allow_holdout=True)  # read as trainer.evaluate does
    by_trainer = {raw["__key__"]: raw for raw in tar_samples(source.urls)}
    by_wds = {raw["__key__"]: raw for raw in webdataset.WebDataset(source.urls, shardshuffle=False, empty_check=False)}
    indexed = wids.ShardListDataset(str(manifest), cache_dir=str(manifest.parent / ".wids-cache"), transformations=[])
    by_wids = {indexed[i]["__key__"]: indexed[i] for i in range(len(indexed))}
    assert set(by_trainer) == set(by_wds) == set(by_wids) and len(by_wids) == source.nsamples
    out = []
    for key, raw in sorted(by_trainer.items()):
        wids_json = by_wids[key][".json"]
        assert json.loads(wids_json.read() if hasattr(wids_json, "read") else wids_json) == json.loads(raw["json"])
        src = raw.get("src.png") or raw["src.jpg"]
        tgt = raw.get("tgt.png") or raw["tgt.jpg"]
        out.append({"key": key, "meta": json.loads(raw["json"]), "src": _png(src), "tgt": _png(tgt),
                    "mask": _png(raw["mask.png"], "L") > 127})
    return out
