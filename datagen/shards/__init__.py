"""WebDataset shards, manifests and readers: the single contract with the trainer (DESIGN.md 2).

Writing: ``ShardWriter`` (atomic, resumable, exactly-once; see ``writer``), then
``build_manifest(data_dir, name)`` -> ``manifests/NAME.json`` + ``data_dir/NAME.parquet``.
Reading: ``read_samples(manifest_or_dir)``, ``load_manifest``, ``verify_manifest``,
``wids_dataset`` (indexed access), ``decode_sample`` (for WebDataset / wids pipelines),
``sample_table(manifest_or_dir)`` (every per-sample Parquet table as one ``pyarrow.dataset``).
"""
from datagen.shards.layout import committed_shards
from datagen.shards.manifest import build_manifest
from datagen.shards.quarantine import read_quarantine_log
from datagen.shards.reader import (
    ManifestError,
    decode_sample,
    iter_shard,
    load_manifest,
    manifest_paths,
    read_samples,
    sample_table,
    verify_manifest,
    wids_dataset,
)
from datagen.shards.writer import ShardError, ShardWriter, WriterBusyError  # noqa: F401

__all__ = [
    "ManifestError",
    "ShardError",
    "ShardWriter",
    "WriterBusyError",
    "build_manifest",
    "committed_shards",
    "decode_sample",
    "iter_shard",
    "load_manifest",
    "manifest_paths",
    "read_quarantine_log",
    "read_samples",
    "sample_table",
    "verify_manifest",
    "wids_dataset",
]
