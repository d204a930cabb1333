"""Training sources: manifests (contract 2) found under ``--shards``, LLaVA-style VQA JSON files,
and their mixing weights.

A manifest is ``{"wids_version": 1, "name": ..., "shardlist": [{"url", "nsamples", ...}], ...}``;
shard URLs may be relative to the manifest's folder, absolute paths, or fsspec URLs. Only JSON
files with a ``shardlist`` are manifests (shard sidecars and other JSON are ignored).
"""
from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

@dataclass
class Source:
    """One dataset to mix: ``kind`` ``shards`` (``urls`` of tar shards), ``parquet`` (``urls`` of
    Parquet files, one sample a row) or ``vqa`` (``records``). ``skip_keys``: sample keys this source
    leaves to another source that lists them too (each sample is read once)."""

    name: str
    kind: str
    nsamples: int
    weight: float
    urls: list[str] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    image_root: str = ""
    declared_weight: float | None = None  # a manifest's own "weight" (build_manifest extra), if any
    skip_keys: dict = field(default_factory=dict)  # shard URL -> keys of it to pass over
    # the manifest's per-sample Parquet table (keys by shard), if it has one: its part files
    index_urls: list[str] = field(default_factory=list)


def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def find_manifests(spec: str) -> list[str]:
    """``spec``: a manifest file or a folder of them (local path or fsspec URL) -> sorted URLs."""
    fs, path = _fs(spec)
    if not fs.exists(path):
        raise FileNotFoundError(f"--shards {spec}: no such file or folder")
    if fs.isdir(path):
        candidates = sorted(p for p in fs.glob(posixpath.join(path, "*.json")))
    else:
        candidates = [path]
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    urls = [c if proto in ("file", "local") else f"{proto}://{c}" for c in candidates]
    found = [u for u in urls if "shardlist" in read_json(u)]
    if not found:
        raise FileNotFoundError(f"--shards {spec}: no manifest (JSON with a 'shardlist') found")
    return found


def read_json(url: str):
    import fsspec

    with fsspec.open(url, "r") as f:
        return json.load(f)


def resolve_url(manifest_url: str, shard_url: str) -> str:
    """A shard URL relative to its manifest's folder becomes absolute (same filesystem)."""
    if "://" in shard_url or shard_url.startswith("/"):
        return shard_url
    if "://" in manifest_url:
        return posixpath.join(posixpath.dirname(manifest_url), shard_url)
    return str(Path(manifest_url).resolve().parent / shard_url)


def manifest_source(url: str, allow_holdout: bool = False) -> Source:
    """Read one manifest into a ``Source`` (weight filled in by ``assign_weights``).

    A manifest marked ``"holdout": true`` is evaluation data: refused unless ``allow_holdout``
    (``trainer.evaluate`` reads it, the trainers never do)."""
    data = read_json(url)
    if data.get("holdout") is True and not allow_holdout:
        raise ValueError(f"manifest {url} is the held-out split {data.get('split', 'holdout')!r} (\"holdout\": true); "
                         "train on its training split and keep this one for trainer.evaluate")
    shards = [s for s in data["shardlist"] if int(s.get("nsamples", 0)) > 0]
    name = str(data.get("name") or Path(url).stem)
    weight = data.get("weight")
    index = data.get("index") or {}
    # A table folder lists its part files; older manifests name one Parquet file.
    index_urls = ([resolve_url(url, f"{index['url']}/{part}") for part in index.get("parts", [])]
                  or [resolve_url(url, index["url"])]) if index.get("url") else []
    return Source(name=name, kind="shards", nsamples=sum(int(s["nsamples"]) for s in shards), weight=0.0,
                  urls=[resolve_url(url, s["url"]) for s in shards],
                  declared_weight=float(weight) if isinstance(weight, (int, float)) else None,
                  index_urls=index_urls)


def shard_keys(source: Source) -> dict[str, list[str]]:
    """Sample keys of each shard URL of a ``shards`` source: from the manifest's Parquet index
    (``key`` and ``shard`` columns) when it has one, else by listing each tar's member names."""
    import fsspec

    if source.index_urls:
        import pyarrow.parquet as pq

        by_name = {url.rsplit("/", 1)[-1]: url for url in source.urls}
        keys: dict[str, list[str]] = {url: [] for url in source.urls}
        for index_url in source.index_urls:
            with fsspec.open(index_url, "rb") as f:
                table = pq.read_table(f, columns=["key", "shard"]).to_pydict()
            for key, shard in zip(table["key"], table["shard"]):
                if shard in by_name:
                    keys[by_name[shard]].append(key)
        return keys
    import tarfile

    from webdataset.tariterators import base_plus_ext

    keys = {}
    for url in source.urls:
        with fsspec.open(url, "rb") as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            names = (base_plus_ext(m.name) for m in tar if m.isfile())
            keys[url] = list(dict.fromkeys(prefix for prefix, _ in names if prefix))
    return keys


def drop_duplicate_keys(sources: list[Source], held_out: list[Source] = ()) -> None:
    """Each sample key is read once across all ``shards`` sources, from the first source (in the
    given order) that lists it, and never when a held-out split (``held_out``) has it: sources pass
    over such keys (whole shards are dropped when every key of theirs is taken) and count them out
    of ``nsamples``. Says what it found in the log."""
    excluded = {k: h.name for h in held_out for keys in shard_keys(h).values() for k in keys}
    owner: dict[str, str] = {}
    found = False
    for source in sources:
        if source.kind != "shards":
            continue
        kept_urls, dupes, held, total, others = [], 0, 0, 0, set()
        for url, keys in shard_keys(source).items():
            taken = {k for k in keys if k in owner or k in excluded}
            others.update(owner[k] for k in taken if k in owner)
            held += sum(k in excluded for k in keys)
            dupes += len(taken)
            total += len(keys)
            if len(taken) < len(keys):
                kept_urls.append(url)
                if taken:
                    source.skip_keys[url] = frozenset(taken)
            for k in keys:
                owner.setdefault(k, source.name)
        if dupes - held:
            found = True
            log.warning("%s: %d of its %d samples are also in %s; each is read once, from there",
                        source.name, dupes - held, total, ", ".join(sorted(others)))
        if held:
            log.warning("%s: %d of its %d samples are in a held-out split (%s); they are left out of training",
                        source.name, held, total, ", ".join(sorted({h.name for h in held_out})))
        source.urls, source.nsamples = kept_urls, max(0, source.nsamples - dupes)
    if not found:
        log.info("duplicate keys: none across %d manifests", sum(s.kind == "shards" for s in sources))


def training_manifests(spec: str) -> tuple[list[str], list[Source]]:
    """Manifests of one ``--shards`` value: (URLs to train on, held-out splits found beside them).
    A folder's held-out manifests (``"holdout": true``) are not trained on but their keys are left
    out of training; a held-out manifest named directly is refused by ``manifest_source``."""
    urls = find_manifests(spec)
    fs, path = _fs(spec)
    if not fs.isdir(path):
        return urls, []
    train, held = [], []
    for url in urls:
        if read_json(url).get("holdout") is True:
            held.append(manifest_source(url, allow_holdout=True))
            log.info("held-out split %s in %s: not trained on, its keys left out of training", held[-1].name, spec)
        else:
            train.append(url)
    return train, held


def vqa_source(path: str, image_root: str | None = None) -> Source:
    """LLaVA-Instruct JSON (``[{"id", "image", "conversations": [{"from", "value"}...]}]``).

    Records without an image or without a human/gpt pair are left out (they carry no image to edit
    with and the model always sees one image). Images resolve against ``image_root`` (default: the
    JSON's folder).
    """
    records = [r for r in read_json(path) if r.get("image") and len(r.get("conversations") or []) >= 2]
    root = image_root or str(Path(path).resolve().parent)
    return Source(name=Path(path).stem, kind="vqa", nsamples=len(records), weight=0.0, records=records, image_root=root)


def parse_mix(items: list[str] | None) -> dict[str, float]:
    """``["synthetic=0.15", "perception=1"]`` -> ``{"synthetic": 0.15, "perception": 1.0}``."""
    mix = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--mix {item!r}: expected NAME=WEIGHT")
        weight = float(value)
        if weight < 0:
            raise ValueError(f"--mix {item!r}: weight must be >= 0")
        mix[name.strip()] = weight
    return mix


def assign_weights(sources: list[Source], mix: dict[str, float]) -> list[Source]:
    """Weight of each source: ``mix[name]`` if given, else the manifest's own ``weight`` field,
    else its share of all samples (size-proportional, i.e. plain concatenation).

    Weights are then normalised to sum to 1. Sources with weight 0 are dropped. Raises if a
    ``mix`` name matches no source.
    """
    names = {s.name for s in sources}
    unknown = sorted(set(mix) - names)
    if unknown:
        raise ValueError(f"--mix names {unknown} match no source; sources are {sorted(names)}")
    total = sum(s.nsamples for s in sources) or 1
    for s in sources:
        default = s.declared_weight if s.declared_weight is not None else s.nsamples / total
        s.weight = mix.get(s.name, default)
    kept = [s for s in sources if s.weight > 0 and s.nsamples > 0]
    if not kept:
        raise ValueError("no source left to train on (all empty or weighted 0)")
    norm = sum(s.weight for s in kept)
    for s in kept:
        s.weight /= norm
    return kept


def load_sources(shards: list[str], vqa: list[str] | None = None, vqa_images: str | None = None,
                 mix: dict[str, float] | None = None) -> list[Source]:
    """Every manifest under each ``--shards`` spec plus each ``--vqa`` file, weighted."""
    found = [training_manifests(spec) for spec in shards]
    sources = [manifest_source(url) for urls, _ in found for url in urls]
    sources += [vqa_source(path, vqa_images) for path in vqa or []]
    check_unique_names(sources)
    drop_duplicate_keys(sources, [h for _, held in found for h in held])
    return assign_weights(sources, mix or {})


def check_unique_names(sources: list[Source]) -> None:
    seen = set()
    for s in sources:
        if s.name in seen:
            raise ValueError(f"two sources are named {s.name!r}; names must be unique for --mix")
        seen.add(s.name)
