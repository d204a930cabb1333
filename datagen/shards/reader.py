"""Reading datasets back by manifest: ``load_manifest``, ``read_samples``, ``verify_manifest``,
``decode_sample`` and ``wids_dataset``.

Shard URLs in a manifest may be relative (resolved against the manifest's folder, as wids does),
absolute paths, or fsspec URLs (``s3://``, ``gs://``, ``file://``...), which are opened with fsspec.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import quote, urlparse

from datagen.imageio import decode_image, decode_mask
from datagen.schema import EditSample
from datagen.shards.tario import iter_tar_samples


class ManifestError(ValueError):
    """A file is not a readable dataset manifest."""


def _is_url(path: str) -> bool:
    return "://" in path


def resolve_url(url: str, base: str) -> str:
    """Resolve a shard ``url`` from a manifest against ``base`` (the manifest's folder or URL)."""
    if _is_url(url) or os.path.isabs(url):
        return url
    if _is_url(base):
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, url))}"
    return os.path.normpath(os.path.join(os.path.abspath(base), url))


def _open(path: str, mode: str = "rb"):
    import fsspec

    return fsspec.open(path, mode).open() if _is_url(path) else open(path, mode)


def load_manifest(path) -> dict:
    """Read and check a manifest. Returns its dict with, in every ``shardlist`` entry, ``path``:
    the shard's resolved location (absolute local path or URL). Raises ``ManifestError``."""
    path = str(path)
    try:
        with _open(path) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("wids_version") != 1:
        raise ManifestError(f"{path} is not a wids_version 1 manifest")
    shardlist = manifest.get("shardlist")
    if not isinstance(shardlist, list) or not all(
            isinstance(s, dict) and isinstance(s.get("url"), str) and isinstance(s.get("nsamples"), int)
            for s in shardlist):
        raise ManifestError(f"{path}: shardlist must be a list of {{'url': str, 'nsamples': int}}")
    folder = posixpath.dirname(path) if _is_url(path) else os.path.dirname(os.path.abspath(path))
    base = resolve_url(manifest["base"], folder) if isinstance(manifest.get("base"), str) else folder
    for shard in shardlist:
        shard["path"] = resolve_url(shard["url"], base)
    index = manifest.get("index")
    if isinstance(index, dict) and isinstance(index.get("url"), str):
        index["path"] = resolve_url(index["url"], base)
    return manifest


def manifest_paths(manifest_path_or_dir) -> list[str]:
    """A manifest file -> ``[it]``; a local folder -> every ``*.json`` manifest in it, sorted."""
    path = str(manifest_path_or_dir)
    if _is_url(path) or not os.path.isdir(path):
        return [path]
    found = []
    for candidate in sorted(Path(path).glob("*.json")):
        try:
            with open(candidate, "rb") as fh:
                if json.load(fh).get("wids_version") == 1:
                    found.append(str(candidate))
        except (OSError, ValueError, AttributeError):
            continue
    if not found:
        raise ManifestError(f"no manifest (*.json with wids_version 1) in folder {path}")
    return found


def index_files(manifest: dict) -> list[str]:
    """The Parquet files of a loaded manifest's per-sample table: its ``index.parts`` inside the
    ``index.path`` folder, or the single file older manifests name."""
    index = manifest.get("index") or {}
    if "path" not in index:
        return []
    return [f"{index['path']}/{part}" for part in index.get("parts", [])] or [index["path"]]


def sample_table(manifest_path_or_dir):
    """A ``pyarrow.dataset.Dataset`` over the per-sample tables of every manifest given (a file or
    a folder of them): one table, in ``sampletable.parquet_schema``, whatever the scenarios.

    Manifests written before the explicit schema hold tables of other schemas: rebuild them
    (``build_manifest``) first."""
    import pyarrow.dataset as pads

    from datagen.shards.sampletable import parquet_schema

    files = [f for path in manifest_paths(manifest_path_or_dir) for f in index_files(load_manifest(path))]
    return pads.dataset(files, format="parquet", schema=parquet_schema())


def _member(members: Mapping[str, bytes], stem: str) -> bytes:
    matches = [data for ext, data in members.items() if ext.lstrip(".").split(".")[0] == stem]
    if len(matches) != 1:
        raise ValueError(f"sample has {len(matches)} '{stem}.*' members, expected 1: {sorted(members)}")
    data = matches[0]
    # wids hands members over as file-like streams; WebDataset and tarfile as bytes.
    return data.getvalue() if hasattr(data, "getvalue") else data.read() if hasattr(data, "read") else data


def decode_sample(members: Mapping[str, bytes]) -> EditSample:
    """One sample's members -> ``EditSample`` (src/tgt ``HxWx3 uint8``, mask ``HxW bool``).

    ``members`` maps extensions to bytes, with or without a leading dot (WebDataset gives
    ``"src.png"``, wids ``".src.png"``), values are bytes or file-like objects; ``__key__``-style
    entries are ignored.
    """
    members = {k: v for k, v in members.items() if not k.startswith("__")}
    meta = json.loads(_member(members, "json"))
    return EditSample.from_parts(meta, decode_image(_member(members, "src")),
                                 decode_image(_member(members, "tgt")), decode_mask(_member(members, "mask")))


def iter_shard(path: str) -> Iterator[EditSample]:
    """Every sample of one shard (local path or fsspec URL), in archive order."""
    with _open(path) as fh:
        for key, members in iter_tar_samples(fh):
            sample = decode_sample(members)
            if sample.key != key:
                raise ValueError(f"{path}: member key {key} holds metadata of key {sample.key}")
            yield sample


def read_samples(manifest_path_or_dir) -> Iterator[EditSample]:
    """Every sample of a manifest, or of every manifest in a folder, shard by shard."""
    for manifest_path in manifest_paths(manifest_path_or_dir):
        for shard in load_manifest(manifest_path)["shardlist"]:
            yield from iter_shard(shard["path"])


class _HashingReader:
    """File wrapper that hashes every byte read through it."""

    def __init__(self, fh):
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _check_shard(shard: dict, keys_seen: dict[str, str]) -> list[str]:
    url, problems = shard["url"], []
    try:
        fh = _open(shard["path"])
    except FileNotFoundError:
        return [f"{url}: shard is missing ({shard['path']})"]
    except OSError as exc:
        return [f"{url}: cannot open shard: {exc}"]
    keys = []
    with fh:
        reader = _HashingReader(fh)
        try:
            keys = [key for key, _ in iter_tar_samples(reader)]
        except Exception as exc:  # tarfile and our grouping raise assorted errors on damaged data
            problems.append(f"{url}: unreadable tar: {type(exc).__name__}: {exc}")
        reader.drain()
    if "filesize" in shard and reader.size != shard["filesize"]:
        problems.append(f"{url}: size {reader.size} != manifest filesize {shard['filesize']}")
    if "sha256" in shard and reader.sha256.hexdigest() != shard["sha256"]:
        problems.append(f"{url}: sha256 {reader.sha256.hexdigest()} != manifest {shard['sha256']}")
    if not problems and len(keys) != shard["nsamples"]:
        problems.append(f"{url}: {len(keys)} samples != manifest nsamples {shard['nsamples']}")
    for key in keys:
        if key in keys_seen:
            problems.append(f"{url}: key {key} is also in {keys_seen[key]}")
        keys_seen[key] = url
    return problems


def verify_manifest(path) -> list[str]:
    """Check every shard of a manifest against it: present, filesize, sha256, nsamples, no key
    in two shards, and the Parquet index present. Returns problems as sentences ([] = all good)."""
    try:
        manifest = load_manifest(path)
    except ManifestError as exc:
        return [str(exc)]
    problems: list[str] = []
    keys_seen: dict[str, str] = {}
    for shard in manifest["shardlist"]:
        problems += _check_shard(shard, keys_seen)
    for part in index_files(manifest):
        try:
            _open(part).close()
        except OSError:
            problems.append(f"index {manifest['index']['url']} is missing {part.rsplit('/', 1)[-1]}")
    return problems


def wids_dataset(manifest_path, *, cache_dir: str | None = None, transformations=None, **kwargs):
    """``wids.ShardListDataset`` over a manifest whose items are ``EditSample``s by default.

    Local shards are read in place instead of being copied into wids' cache (its default copies
    every local shard to ``/tmp/_wids_cache``, and a stale copy would survive a rebuilt shard);
    remote shards are downloaded into ``cache_dir``. wids briefly creates ``SHARD.lock`` beside
    each shard it opens, so the data folder must be writable. Pass ``transformations=[]`` to
    get wids' raw ``{".src.png": bytes, ...}`` dicts.
    """
    import wids

    cache_dir = cache_dir or os.environ.get("WIDS_CACHE", "/tmp/_wids_cache")

    def localname(url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme in ("", "file"):
            return os.path.abspath(parsed.path)
        os.makedirs(cache_dir, exist_ok=True)
        return os.path.join(cache_dir, quote(url, safe="+-"))

    if transformations is None:
        transformations = [decode_sample]
    return wids.ShardListDataset(str(manifest_path), localname=localname,
                                 transformations=transformations, **kwargs)
