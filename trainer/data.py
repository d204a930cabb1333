"""Streaming, mixed, resumable training data over WebDataset shards and VQA JSON.

Each stream (one per rank x DataLoader worker) reads its part of every source: whole shards
when there are at least as many shards as streams (WebDataset's ``split_by_node`` then
``split_by_worker``), otherwise every stream reads all shards and keeps every n-th sample.
Shards are re-shuffled per epoch, samples pass a small shuffle buffer, and the stream picks the
source of each sample by the mixing weights. Every random choice comes from generators seeded by
(seed, stream, position), so the stream is a pure function of its position: resuming after ``k``
batches replays the raw (undecoded) samples the stream already delivered and continues exactly.
Limits: replaying reads the skipped samples' bytes again (one pass, no decoding); a sample that failed
to decode before the checkpoint (skipped with a warning) shifts that stream's resume point by one.
"""
from __future__ import annotations

import logging
import random
from collections import Counter
from functools import partial
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset

from trainer.features import Featurizer, collate
from trainer.sources import Source

log = logging.getLogger(__name__)
MAX_FAILURES_IN_A_ROW = 50
SKIP_REPORT_EVERY = 1000


def _open_tars(urls: list[str]) -> Iterator[dict]:
    import fsspec

    for url in urls:
        with fsspec.open(url, "rb") as stream:
            yield {"url": url, "stream": stream}


def tar_samples(urls: list[str]) -> Iterator[dict]:
    """Raw WebDataset samples (``{"__key__", "src.png", "tgt.png", "mask.png", "json", ...}``)."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    return group_by_keys(tar_file_expander(_open_tars(urls)))


def parquet_samples(urls: list[str]) -> Iterator[dict]:
    """Rows of Parquet files as raw samples: ``{"__key__": "FILE:ROW", "__row__": {column: value}}``."""
    import fsspec
    import pyarrow.parquet as pq

    for url in urls:
        with fsspec.open(url, "rb") as f:
            table = pq.ParquetFile(f)
            row = 0
            for batch in table.iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    yield {"__key__": f"{url.rsplit('/', 1)[-1]}:{row}", "__url__": url, "__row__": record}
                    row += 1


def shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Deterministic shuffle buffer of ``size`` (``size`` <= 1: pass through)."""
    if size <= 1:
        yield from items
        return
    buf = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        j = rng.randrange(size)
        yield buf[j]
        buf[j] = item
    rng.shuffle(buf)
    yield from buf


def _split(items: list, stream: int, n_streams: int, workers: int = 1) -> list:
    """Items of ``stream`` (= rank x workers + role): by node, then by worker within the node."""
    rank, role, world = stream // workers, stream % workers, n_streams // workers
    return items[rank::world][role::workers]


def source_stream(source: Source, seed: int, stream: int, n_streams: int, buffer: int,
                  workers: int = 1) -> Iterator[dict]:
    """Endless raw samples of one source for one stream (epoch after epoch).

    ``stream`` = rank x workers + worker role; with enough shards the split equals WebDataset's
    ``split_by_node`` then ``split_by_worker`` (``urls[rank::world][worker::workers]``), written out
    here because after a resume the DataLoader worker index and the role differ (see EditStream).
    """
    def epoch_items(epoch: int) -> Iterator[dict]:
        rng = random.Random(f"{seed}:{source.name}:epoch:{epoch}")
        if source.kind == "vqa":
            order = list(range(len(source.records)))
            rng.shuffle(order)
            for i in _split(order, stream, n_streams, workers):
                yield {"__key__": f"{source.name}:{i}", "__vqa__": source.records[i]}
            return
        urls = list(source.urls)
        rng.shuffle(urls)
        read = parquet_samples if source.kind == "parquet" else tar_samples
        if len(urls) >= n_streams:
            samples = read(_split(urls, stream, n_streams, workers))
        else:  # fewer shards than streams: everyone reads all shards and keeps every n-th sample
            samples = (s for i, s in enumerate(read(urls)) if i % n_streams == stream)
        # Keys another manifest already supplies (see trainer.sources.drop_duplicate_keys) are read once, there.
        yield from (s for s in samples if s["__key__"] not in source.skip_keys.get(s.get("__url__"), ()))

    def endless() -> Iterator[dict]:
        epoch = 0
        while True:
            count = 0
            for item in epoch_items(epoch):
                count += 1
                yield item
            if count == 0:
                raise RuntimeError(f"source {source.name!r} gives stream {stream} of {n_streams} no sample; "
                                   "use fewer DataLoader workers or more samples")
            epoch += 1

    return shuffled(endless(), buffer, random.Random(f"{seed}:{source.name}:buffer:{stream}"))


class EditStream(IterableDataset):
    """Mixed feature dicts for this rank. ``featurizer(raw, source, rng) -> dict`` turns one raw
    item into tensors (``trainer.features.Featurizer`` for stage 2, ``trainer.captions.CaptionFeaturizer``
    for stage 1). ``skip_batches``: batches this rank already consumed
    (resume); ``batch_size``: per-rank micro-batch size (to turn batches into samples per worker)."""

    def __init__(self, sources: list[Source], featurizer: Featurizer, seed: int = 0, batch_size: int = 1,
                 skip_batches: int = 0, shuffle_buffer: int = 64):
        super().__init__()
        self.sources, self.featurizer = sources, featurizer
        self.seed, self.batch_size, self.skip_batches = seed, batch_size, skip_batches
        self.shuffle_buffer = shuffle_buffer
        self.skipped: Counter = Counter()  # reason -> samples skipped (this process's streams)

    def _position(self) -> tuple[int, int, int, int]:
        """(stream id, number of streams, workers per rank, samples this stream delivered before resuming)."""
        from webdataset.utils import pytorch_worker_info

        rank, world, worker, workers = pytorch_worker_info()
        # The DataLoader takes batch k from worker k % workers and always starts at worker 0, so
        # after a resume at batch `skip` the local worker j plays the original worker (j + skip) % W.
        role = (worker + self.skip_batches) % workers
        made = len(range(role, self.skip_batches, workers))  # batches that role had delivered
        return rank * workers + role, world * workers, workers, made * self.batch_size

    def _count_skip(self, key, source: str, exc: Exception) -> None:
        """Count a skipped sample by reason (exception type and message head); the first of each
        reason is logged with its traceback, then a tally every ``SKIP_REPORT_EVERY`` skips."""
        reason = f"{type(exc).__name__}: {str(exc)[:60]}"
        self.skipped[reason] += 1
        if self.skipped[reason] == 1:
            log.warning("skipping sample %s of %s (%s); further samples for this reason are counted",
                        key, source, reason, exc_info=exc)
        total = sum(self.skipped.values())
        if total % SKIP_REPORT_EVERY == 0:
            log.warning("skipped %d samples so far: %s", total, dict(self.skipped.most_common()))

    def __iter__(self) -> Iterator[dict]:
        stream, n_streams, workers, skip = self._position()
        iters = [source_stream(s, self.seed, stream, n_streams, self.shuffle_buffer, workers) for s in self.sources]
        weights = [s.weight for s in self.sources]
        pick = random.Random(f"{self.seed}:mix:{stream}")
        position, failures = 0, 0
        while True:
            i = pick.choices(range(len(iters)), weights)[0]
            raw = next(iters[i])
            position += 1
            if position <= skip:
                continue  # already trained on: replayed raw, never decoded
            rng = random.Random(f"{self.seed}:{stream}:{position}:{raw['__key__']}")
            try:
                features = self.featurizer(raw, self.sources[i], rng)
            except Exception as exc:  # a bad sample must not stop a multi-day run...
                failures += 1
                if failures >= MAX_FAILURES_IN_A_ROW:  # ...but a setting that fails every sample must
                    raise RuntimeError(f"{failures} samples in a row failed to featurize; the last "
                                       f"({raw.get('__key__')} of {self.sources[i].name}): {exc}") from exc
                self._count_skip(raw.get("__key__"), self.sources[i].name, exc)
                continue
            failures = 0
            features["source"] = self.sources[i].name  # for the realised-mix report
            yield features


def make_loader(sources: list[Source], featurizer: Featurizer, pad_id: int, batch_size: int, *, seed: int = 0,
                workers: int = 0, skip_batches: int = 0, shuffle_buffer: int = 64) -> DataLoader:
    """A ``DataLoader`` over ``EditStream``; its own generator keeps the global torch RNG untouched
    (so model-side randomness is identical whether or not a run was resumed)."""
    dataset = EditStream(sources, featurizer, seed, batch_size, skip_batches, shuffle_buffer)
    return DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=partial(collate, pad_id=pad_id),
        generator=torch.Generator().manual_seed(seed), prefetch_factor=4 if workers else None,
        persistent_workers=False, pin_memory=torch.cuda.is_available(),
    )
