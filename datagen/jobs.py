"""A synthesis job cut into batches: the unit of work the CLI and the Prefect flows share.

    config = JobConfig("understanding", source="demo:48", out="data/understanding", name="understanding")
    for batch in plan_batches(config):
        stats = run_batch(config, batch)      # any order, any process, any number of times
    manifest = finish(config, total_stats)   # or: run_job(config) does all three in order

Why batches: a Prefect task costs milliseconds and memory per call, so tasks map over batches of
catalog records, never over single samples. Each batch writes with its own shard-writer prefix
(``{name}-b{index:05d}``) into the job's one data folder, so batches can run in parallel (threads,
processes, Dask workers) without sharing a writer.

Exactly once, however a run dies: the shard writer never commits a key twice and marks records
done only with the shard that holds their samples (``datagen.shards``). On top of that a batch
that finished leaves a marker ``OUT/.jobs/PREFIX.done.json`` with its stats, so a rerun skips it
without opening the catalog or a writer and still reports the whole job's counts. A batch killed
half-way has no marker; rerunning it skips its done records and drops keys already committed.

Nothing heavy before it is needed: a rerun reads the batch markers first and builds a builder (and
loads its models) only for the first batch that still has work, so a finished job reruns in the
time it takes to read one small marker per batch and update the manifest (incrementally). Models
are loaded once per process: builders (and the masker / inpainter / harmonizer they hold) are
cached by their settings, so the second batch in a worker process reuses the first's models.

Counts: ``RunStats`` summed over a job's batches describe the whole job (resumed batches report
what their marker recorded); ``JobResult.new`` holds only the batches this run ran ("new this
run") and ``JobResult.in_dataset`` the samples the dataset holds after it (its manifest's
``nsamples``). ``count_summary`` gives both, for printing and reports.

This module never imports prefect (``flows/`` wraps it).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

SCENARIOS = ("understanding", "perception", "reasoning", "import")
# Backends whose name alone means "a neural network that wants a GPU".
LEARNED_BACKENDS = {"sam", "lama", "sd", "mat", "pih", "owlv2", "grounding_dino"}
MARKER_DIR = ".jobs"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,72}$")  # + "-b00000" stays within the writer's 80


@dataclass(frozen=True)
class Backend:
    """A stage backend by registry name plus the options its builder takes."""

    name: str
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "options": dict(self.options)}


@dataclass
class JobConfig:
    """Everything that determines a job's samples and where they go.

    ``scenario``: ``understanding`` | ``perception`` | ``reasoning``. ``source``: catalog spec for
    ``datagen.sources.open_catalog`` (``demo:N[:SEED]``, COCO JSON, image folder); ``images``: image
    folder of a COCO JSON. ``out``: the data folder of this dataset's shards (one dataset per
    folder: the manifest lists every shard in it). ``name``: manifest name and writer-prefix stem.
    ``backends``: stage -> ``Backend`` (``masker``, ``inpainter``, ``harmonizer``; ``editor`` for
    reasoning); missing stages take the classical defaults. ``builder_options``: extra keyword
    arguments of the builder. ``queue``: the review-queue store (reasoning; default ``OUT/queue``).
    """

    scenario: str
    source: str = "demo:24"
    out: str = "data/demo"
    name: str = "demo"
    images: str | None = None
    manifest_dir: str = "manifests"
    backends: dict[str, Backend] = field(default_factory=dict)
    builder_options: dict = field(default_factory=dict)
    limit: int | None = None
    seed: int = 0
    batch_size: int = 16
    maxcount: int = 1000
    image_format: str = "png"
    queue: str | None = None
    allow_outside_root: bool = False  # let catalog paths lead outside the catalog's folder

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if not _NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r} must be 1-72 letters, digits, '_' or '-'")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        self.backends = {stage: b if isinstance(b, Backend) else Backend(**b) for stage, b in self.backends.items()}
        from datagen.shards.encoding import ImageEncoding

        ImageEncoding.check(self.image_format)  # png | jpg[:Q] | webp[:Q]

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """Hash of what decides the samples (not where they go, not how many records)."""
        decisive = {k: v for k, v in self.to_dict().items()
                    if k not in ("out", "manifest_dir", "limit", "queue", "allow_outside_root")}
        return hashlib.sha1(json.dumps(decisive, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Batch:
    """Catalog record ids processed together by one writer prefix."""

    index: int
    ids: tuple[str, ...]
    prefix: str


# ----- per-process caches: catalogs and builders (models) are built once and reused -----

# A long-lived worker process (a Dask worker) may serve jobs with different settings: keep only the
# most recently used few, so switching models frees the old ones instead of piling up GPU memory.
CACHE_SIZE = 2
_CACHE: OrderedDict[str, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _cached(key: str, make: Callable[[], Any]) -> Any:
    with _CACHE_LOCK:  # held while building: two threads never load the same model twice
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        kind = json.loads(key)[0]
        same_kind = [k for k in _CACHE if json.loads(k)[0] == kind]
        for old in same_kind[: max(0, len(same_kind) - CACHE_SIZE + 1)]:
            del _CACHE[old]
        _CACHE[key] = value = make()
        return value


def clear_cache() -> None:
    """Forget cached catalogs and builders (frees their models)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def open_source(config: JobConfig):
    """The job's catalog, opened once per process. For ``import`` jobs it is the importer
    (``datagen.importers``: ``builder_options`` = ``{"dataset": NAME, **options}``, ``source`` =
    the dataset's folder), which is also the job's builder."""
    from datagen.sources import open_catalog

    if config.scenario == "import":
        from datagen.importers import open_importer

        key = json.dumps(["catalog", "import", config.source, config.images, config.builder_options, config.seed],
                         sort_keys=True, default=str)
        images = {"images": config.images} if config.images else {}
        return _cached(key, lambda: open_importer(root=config.source, seed=config.seed, **images,
                                                  **config.builder_options))
    detector = config.backends.get("detector")  # --detect: instances come from a detector
    options = {"images": config.images} if config.images else {}
    if config.allow_outside_root and not str(config.source).startswith("demo:"):
        options["allow_outside_root"] = True

    def make():
        if detector is not None:
            from datagen.sources.detected import detected_catalog

            return detected_catalog(config.source, detector.name, detector.options, images=config.images)
        return open_catalog(config.source, **options)

    key = ["catalog", config.source, options, detector.to_dict() if detector else None]
    return _cached(json.dumps(key, sort_keys=True, default=str), make)


def log_catalog_problems(config: JobConfig):
    """Write the catalog's problems that belong to no record (orphan annotations, unusable
    categories: ``catalog.problems``) to ``OUT/NAME-catalog.quarantine.jsonl``, once whatever the
    number of reruns; return their counts by reason (a ``Counter``)."""
    from collections import Counter

    from datagen.schema import Quarantined
    from datagen.shards.layout import quarantine_path
    from datagen.shards.quarantine import QuarantineLog

    catalog = open_source(config)
    problems = list(getattr(catalog, "problems", []))
    if problems:
        Path(config.out).mkdir(parents=True, exist_ok=True)
        log = QuarantineLog(quarantine_path(Path(config.out), f"{config.name}-catalog"))
        try:
            for p in problems:
                log.append(Quarantined(p["id"], p["reason"], p["detail"], catalog.source, level="catalog"))
        finally:
            log.close()
    return Counter(p["reason"] for p in problems)


def _stage(config: JobConfig, stage: str, default: str) -> Backend:
    return config.backends.get(stage) or Backend(default)


def _build_builder(config: JobConfig):
    options = dict(config.builder_options)
    if config.scenario == "perception":
        from datagen.perception import PerceptionBuilder

        if "masker" in config.backends:  # masks for box-only (detected) instances
            from datagen.masking import build_masker

            options["masker"] = build_masker(config.backends["masker"].name, **config.backends["masker"].options)
        return PerceptionBuilder(seed=config.seed, **options)
    if config.scenario == "understanding":
        from datagen.understanding import build_understanding

        stages = {stage: _stage(config, stage, default) for stage, default in
                  (("masker", "grabcut"), ("inpainter", "opencv"), ("harmonizer", "classical"))}
        stage_options = {stage: dict(b.options) for stage, b in stages.items()}
        stage_options["quality"] = dict(options.pop("quality", {}))
        return build_understanding(masker=stages["masker"].name, inpainter=stages["inpainter"].name,
                                   harmonizer=stages["harmonizer"].name, options=stage_options,
                                   donors=options.pop("donors", "demo"), seed=config.seed, **options)
    from datagen.masking import build_masker
    from datagen.quality import QualityChecker
    from datagen.reasoning import ReasoningBuilder

    masker_b, editor = _stage(config, "masker", "grabcut"), _stage(config, "editor", "classical")
    if "quality" in options:
        options["quality"] = QualityChecker(**options["quality"])
    return ReasoningBuilder(build_masker(masker_b.name, **masker_b.options), editor.name,
                            editor_options=dict(editor.options), seed=config.seed, **options)


def get_builder(config: JobConfig):
    """The job's builder with its models, built once per process per distinct setting."""
    if config.scenario == "import":  # an importer is its catalog and its builder
        return open_source(config)
    key = json.dumps(["builder", config.scenario, {s: b.to_dict() for s, b in sorted(config.backends.items())},
                      config.builder_options, config.seed], sort_keys=True, default=str)
    return _cached(key, lambda: _build_builder(config))


def needs_gpu(config: JobConfig) -> bool:
    """True when a chosen backend is a learned model not pinned to the CPU."""
    return any(b.name in LEARNED_BACKENDS and str(b.options.get("device", "cuda")) != "cpu"
               for b in config.backends.values())


# ----- planning -----

def plan_batches(config: JobConfig) -> list[Batch]:
    """Cut the catalog's first ``limit`` ids (stable order) into batches of ``batch_size``.

    Batch ``i`` holds the same ids whatever ``limit`` is (as long as it is full), so a job can be
    extended with a larger ``limit`` and reruns only the new batches.
    """
    ids = list(open_source(config).ids())
    if config.limit is not None:
        ids = ids[: max(int(config.limit), 0)]
    size = int(config.batch_size)
    return [Batch(i, tuple(ids[start:start + size]), f"{config.name}-b{i:05d}")
            for i, start in enumerate(range(0, len(ids), size))]


# ----- running -----

def _marker(config: JobConfig, batch: Batch) -> Path:
    return Path(config.out) / MARKER_DIR / f"{batch.prefix}.done.json"


def _batch_digest(config: JobConfig, batch: Batch, fingerprint: str | None = None) -> str:
    fingerprint = fingerprint or config.fingerprint()
    return hashlib.sha1(json.dumps([fingerprint, batch.ids]).encode()).hexdigest()[:16]


def completed(config: JobConfig, batch: Batch, *, fingerprint: str | None = None):
    """The ``RunStats`` a finished run of ``batch`` recorded, or None if it has to run.

    A marker left by different settings or ids does not count (the batch runs again; the writer
    still refuses keys that are already committed). ``fingerprint``: ``config.fingerprint()``,
    when the caller checks many batches (computing it costs more than reading a marker)."""
    recorded = _recorded_stats(config, batch, fingerprint)
    return None if recorded is None else stats_from_dict(recorded)


def _recorded_stats(config: JobConfig, batch: Batch, fingerprint: str | None) -> dict | None:
    """The stats dict of ``batch``'s marker if it is valid for ``config``."""
    try:
        with open(os.path.join(config.out, MARKER_DIR, f"{batch.prefix}.done.json"), "rb") as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("digest") != _batch_digest(config, batch, fingerprint):
        return None
    return marker.get("stats")


def stats_from_dict(data: dict):
    """Inverse of ``RunStats.to_dict()`` (counters come back as ``Counter``)."""
    from collections import Counter
    from dataclasses import fields

    from datagen.runner import RunStats

    names = {f.name for f in fields(RunStats)}
    return RunStats(**{k: Counter(v) if isinstance(v, dict) else v for k, v in data.items() if k in names})


class _StatsSum:
    """Sums ``RunStats`` in place (``a + b`` copies every counter: per batch, that is what a rerun
    of ten thousand finished batches would spend its time on). ``result()`` equals ``sum`` by ``+``."""

    def __init__(self):
        from dataclasses import fields

        from datagen.runner import RunStats

        self._total = RunStats()
        self._names = [f.name for f in fields(RunStats)]

    def add(self, stats) -> None:
        """Add a ``RunStats`` or its ``to_dict()``."""
        for name in self._names:
            value = stats.get(name, 0) if isinstance(stats, dict) else getattr(stats, name)
            if isinstance(value, dict):
                getattr(self._total, name).update(value)
            else:
                setattr(self._total, name, getattr(self._total, name) + value)

    def result(self):
        for name in self._names:
            value = getattr(self._total, name)
            if isinstance(value, dict):
                setattr(self._total, name, +value)  # as ``+`` does: drop counts that are not positive
        return self._total


def _write_marker(config: JobConfig, batch: Batch, stats, seconds: float, builder) -> None:
    path = _marker(config, batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"batch": batch.index, "prefix": batch.prefix, "digest": _batch_digest(config, batch),
            "fingerprint": config.fingerprint(),
            "records": len(batch.ids), "seconds": round(seconds, 3), "stats": stats.to_dict(),
            "builder": {"name": builder.name, "settings": builder.settings()},
            "host": socket.gethostname(), "pid": os.getpid(),  # which worker process ran it
            "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}  # its GPU, where workers are pinned to one
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body, indent=1))
    os.replace(tmp, path)  # a marker is either absent or complete


@contextmanager
def _open_writer(config: JobConfig, batch: Batch):
    """The batch's writer: a ``ShardWriter`` with the batch's prefix, or for reasoning a
    ``QueueWriter`` over the review queue (which refuses keys it already holds)."""
    if config.scenario == "reasoning":
        from datagen.reasoning.queue import QueueWriter, open_queue

        from datagen.shards.layout import quarantine_path
        from datagen.shards.quarantine import QuarantineLog

        store = open_queue(queue_location(config))
        try:
            Path(config.out).mkdir(parents=True, exist_ok=True)
            log = QuarantineLog(quarantine_path(Path(config.out), batch.prefix))
            with QueueWriter(store, quarantine_log=log) as writer:
                yield writer
        finally:
            store.close()
        return
    from datagen.shards import ShardWriter

    with ShardWriter(config.out, batch.prefix, maxcount=config.maxcount, image_format=config.image_format) as writer:
        yield writer


def queue_location(config: JobConfig) -> str:
    """Where reasoning candidates go: ``config.queue`` or ``OUT/queue`` (a folder holding
    ``queue.db``, a ``*.db`` path, or a ``postgresql://`` URL; see ``datagen.reasoning.queue``)."""
    return config.queue or str(Path(config.out) / "queue")


def run_batch(config: JobConfig, batch: Batch):
    """Build and write every sample of ``batch``; return its ``RunStats``.

    Idempotent: a batch that already finished returns its recorded stats without doing anything;
    one that was interrupted resumes (done records skipped, committed keys not written twice).
    """
    from datagen.runner import run_builder

    done = completed(config, batch)
    if done is not None:
        return done
    start = time.perf_counter()
    catalog, builder = open_source(config), get_builder(config)
    with _open_writer(config, batch) as writer:
        stats = run_builder(catalog, builder, writer, ids=list(batch.ids), progress=False)
    if not stats.quarantined.get("builder_error"):
        # A builder error may be transient (CUDA out of memory...): without a marker the next run
        # revisits this batch, and the runner retries just the records that failed.
        _write_marker(config, batch, stats, time.perf_counter() - start, builder)
    return stats


def _builder_facts(config: JobConfig) -> dict:
    """``{"name", "settings"}`` of the job's builder, preferably from a batch marker of the same
    settings: a rerun whose batches all finished earlier then writes its manifest without loading
    a single model."""
    folder, fingerprint = Path(config.out) / MARKER_DIR, config.fingerprint()
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(f"{config.name}-b") and n.endswith(".done.json"))
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            body = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if body.get("fingerprint") == fingerprint and "builder" in body:
            return body["builder"]
    builder = get_builder(config)
    return {"name": builder.name, "settings": builder.settings()}


def manifest_extra(config: JobConfig) -> dict:
    """Job facts recorded in the manifest beside the counts (as the CLI records them, plus the
    backend choices and the seed)."""
    from datagen.shards.encoding import ImageEncoding

    facts = _builder_facts(config)
    extra = {"image_encoding": ImageEncoding.parse(config.image_format).to_dict(),
             "builder": facts["name"], "settings": facts["settings"], "source": config.source,
             "backends": {s: b.to_dict() for s, b in sorted(config.backends.items())}, "seed": config.seed}
    if config.scenario == "import":  # dataset name; holdout + split for evaluation data
        extra.update(open_source(config).manifest_facts())
    return extra


def finish(config: JobConfig, stats=None) -> Path | None:
    """Write the job's manifest (understanding / perception); return its path.

    Returns None when nothing was committed (every record skipped or quarantined) and for
    reasoning, whose candidates wait in the review queue until ``publish-reviewed``.
    """
    log_catalog_problems(config)
    if config.scenario == "reasoning":
        return None
    from datagen.shards import build_manifest
    from datagen.shards.layout import committed_shards
    from datagen.shards.manifest import NoSamplesError

    if not committed_shards(config.out):
        return None
    try:
        return build_manifest(config.out, config.name, manifest_dir=config.manifest_dir, extra=manifest_extra(config))
    except NoSamplesError:  # committed shards that carry only completion markers
        return None


@dataclass
class JobResult:
    stats: Any  # RunStats of the whole job: resumed batches as their markers recorded, plus this run
    manifest: Path | None
    batches: int
    resumed: int  # batches skipped because an earlier run finished them
    seconds: float
    new: Any = None  # RunStats of the batches this run ran: what is new this run
    in_dataset: int | None = None  # samples in the dataset after this run (the manifest's nsamples)


def unfinished(config: JobConfig, batches: list[Batch]) -> list[Batch]:
    """The batches no earlier run finished (one marker read each; no catalog, no model)."""
    fingerprint = config.fingerprint()
    return [batch for batch in batches if completed(config, batch, fingerprint=fingerprint) is None]


def dataset_size(manifest: Path | str | None) -> int | None:
    """Samples in the dataset of ``manifest`` (its ``nsamples``); None without a manifest."""
    if manifest is None:
        return None
    return int(json.loads(Path(manifest).read_text())["nsamples"])


def count_summary(new, manifest: Path | str | None) -> dict:
    """``{"new_this_run": {...}, "in_dataset": {...} | None}`` for CLIs and reports.

    ``new_this_run`` (from ``new``, the ``RunStats`` of the batches this run ran): ``samples``,
    ``by_op``, ``skipped``, ``quarantined``, ``duplicates``, ``dropped_annotations``. ``in_dataset``
    (from the manifest): ``samples``, ``by_op``, ``skipped``, ``quarantined``, ``dropped_annotations``; None when no manifest was written
    (reasoning candidates wait in the review queue).
    """
    this_run = {"samples": new.samples_written, "by_op": dict(sorted(new.by_op.items())),
                "skipped": dict(sorted(new.skipped.items())), "quarantined": dict(sorted(new.quarantined.items())),
                "duplicates": new.duplicates,
                "dropped_annotations": dict(sorted(new.dropped_annotations.items()))}
    if manifest is None:
        return {"new_this_run": this_run, "in_dataset": None}
    data = json.loads(Path(manifest).read_text())
    return {"new_this_run": this_run,
            "in_dataset": {"samples": data["nsamples"], "by_op": data.get("counts", {}).get("op", {}),
                           "skipped": data.get("skipped", {}), "quarantined": data.get("quarantined", {}),
                           "dropped_annotations": data.get("dropped_annotations", {})}}


def run_job(config: JobConfig, on_batch: Callable[[Batch, Any], None] | None = None) -> JobResult:
    """Plan, run every batch in order in this process, finish: the CLI's path through a job.

    Batches an earlier run finished are skipped from their markers; the builder (and its models) is
    built only when the first unfinished batch runs.
    """
    start = time.perf_counter()
    total, new, resumed = _StatsSum(), _StatsSum(), 0
    batches, fingerprint = plan_batches(config), config.fingerprint()
    for batch in batches:
        # A finished batch is summed from its marker's dict: no RunStats per batch on a rerun.
        stats = _recorded_stats(config, batch, fingerprint)
        if stats is not None:
            resumed += 1
        else:
            stats = run_batch(config, batch)
            new.add(stats)
        total.add(stats)
        if on_batch is not None:
            on_batch(batch, stats_from_dict(stats) if isinstance(stats, dict) else stats)
    total = total.result()
    manifest = finish(config, total)
    return JobResult(total, manifest, len(batches), resumed, time.perf_counter() - start, new=new.result(),
                     in_dataset=dataset_size(manifest))
