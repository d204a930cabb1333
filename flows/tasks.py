"""Batch tasks and the loop every synthesis flow shares: plan, skip finished batches, run the rest
with retries, report progress, write the manifest, publish the report.

The work itself is ``datagen.jobs`` (the same functions the CLI calls); here it only gains Prefect's
retries, task runs in the UI, artifacts and optional fan-out over Dask.

Retry policy: a batch is retried (exponential back-off with jitter) only after a *transient*
error: I/O and network trouble, timeouts, memory pressure, CUDA out-of-memory. Bad records never
get here (sources and builders quarantine them), and configuration or programming errors
(unavailable backend, invalid sample) fail at once instead of burning retries.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from datagen import jobs
from datagen.jobs import Batch, JobConfig
from flows import reporting
from flows.params import Execution

# "The input is wrong", not "try again later".
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def serial_runner() -> ThreadPoolTaskRunner:
    """The default runner: one batch at a time in the flow-run process. Batches reuse the process's
    cached models, which are not made to be shared between threads (torch on one GPU, OpenCV
    state); parallelism comes from ``execution.runner = "dask"`` (processes, one model set each)."""
    return ThreadPoolTaskRunner(max_workers=1)


def is_transient(exc: BaseException) -> bool:
    """True for errors that may pass on a second try."""
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(exc, (OSError, TimeoutError, ConnectionError, MemoryError)):
        return True
    text = str(exc)
    # torch.cuda.OutOfMemoryError is a RuntimeError; so are CUDA launch failures and NCCL timeouts.
    return isinstance(exc, RuntimeError) and any(s in text for s in ("CUDA out of memory", "CUDA error", "NCCL"))


def retry_transient(task, task_run, state) -> bool:
    """``retry_condition_fn`` for batch tasks: retry transient errors only."""
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)


def backoff(execution: Execution) -> list[float]:
    """Delays before retry 1, 2, ...: ``retry_delay_seconds`` doubled each time."""
    return [execution.retry_delay_seconds * 2**i for i in range(execution.retries)]


@task(name="plan-batches", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def plan_batches(config: JobConfig) -> list[Batch]:
    """Open the catalog and cut its ids into batches (retried: the catalog may sit on a network
    file system)."""
    return jobs.plan_batches(config)


@task(name="run-batch", task_run_name="{batch.prefix}", retries=3, retry_delay_seconds=[2, 4, 8],
      retry_jitter_factor=0.5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def run_batch(config: JobConfig, batch: Batch):
    """One batch through ``datagen.jobs.run_batch`` (idempotent, so a retry or a rerun is safe)."""
    return jobs.run_batch(config, batch)


@task(name="write-manifest", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def write_manifest(config: JobConfig, stats) -> str | None:
    path = jobs.finish(config, stats)
    return str(path) if path is not None else None


@dataclass
class Outcome:
    """What running the batches gave: merged stats and the batches that failed for good."""

    stats: Any
    ran: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0  # wall time from the first submission to the last result


def run_batches(config: JobConfig, batches: list[Batch], execution: Execution,
                progress: reporting.Progress) -> Outcome:
    """Submit every batch to the current flow's task runner and gather results as they finish.

    The task runner bounds the parallelism: the default flow runner has one thread (models are
    not shared between threads), a Dask runner as many slots as its cluster. A batch that still
    fails after its retries is recorded and the others go on, so one run does all the work it can.
    """
    from datagen.runner import RunStats
    from flows.cluster import gpu_annotation

    logger = get_run_logger()
    batch_task = run_batch.with_options(retries=execution.retries, retry_delay_seconds=backoff(execution),
                                        timeout_seconds=execution.batch_timeout_seconds)
    started = time.perf_counter()
    futures = {}
    with gpu_annotation(config, execution):
        for batch in batches:
            futures[batch_task.submit(config, batch)] = batch
    outcome = Outcome(stats=RunStats())
    for future in as_completed(list(futures)):
        batch = futures[future]
        try:
            stats = future.result()
        except Exception as exc:  # the task's own retries are over
            outcome.failed[batch.index] = f"{type(exc).__name__}: {exc}"
            logger.error("batch %s failed for good: %s", batch.prefix, outcome.failed[batch.index])
        else:
            outcome.stats = outcome.stats + stats
            outcome.ran += 1
        progress.advance()
    outcome.seconds = time.perf_counter() - started
    return outcome


def with_absolute_paths(config: JobConfig) -> JobConfig:
    """Relative paths resolved against the flow run's working directory, so that tasks running in
    other processes or on other machines (Dask) write to the same places."""
    from dataclasses import replace
    from pathlib import Path

    def local(value: str | None) -> str | None:
        return str(Path(value).resolve()) if value and Path(value).exists() else value

    queue = config.queue
    if queue and "://" not in queue:
        queue = str(Path(queue).resolve())
    return replace(config, out=str(Path(config.out).resolve()), manifest_dir=str(Path(config.manifest_dir).resolve()),
                   source=local(config.source), images=local(config.images), queue=queue)


def synthesize(config: JobConfig, execution: Execution) -> dict:
    """The body of ``synth-understanding`` / ``synth-perception`` / ``synth-reasoning``."""
    from datagen.runner import RunStats

    logger = get_run_logger()
    start = time.perf_counter()
    config = with_absolute_paths(config)
    batches = plan_batches(config)
    fingerprint = config.fingerprint()  # once: it hashes the whole config
    resumed = {b.index: s for b in batches if (s := jobs.completed(config, b, fingerprint=fingerprint)) is not None}
    todo = [b for b in batches if b.index not in resumed]
    logger.info("%d batches of up to %d records: %d finished earlier, %d to run",
                len(batches), config.batch_size, len(resumed), len(todo))
    progress = reporting.Progress(config.name, total=len(batches), done=len(resumed))
    if execution.runner == "dask" and todo:
        from flows.cluster import run_on_dask

        outcome = run_on_dask(config, todo, execution, progress)
    else:
        outcome = run_batches(config, todo, execution, progress)
    stats = sum(resumed.values(), RunStats()) + outcome.stats
    manifest = None
    if not outcome.failed:
        manifest = write_manifest(config, stats)
    summary = {
        "name": config.name,
        "scenario": config.scenario,
        "out": config.out,
        "manifest": manifest,
        "queue": jobs.queue_location(config) if config.scenario == "reasoning" else None,
        "batches": len(batches),
        "batches_run": outcome.ran,
        "batches_resumed": len(resumed),
        "batches_failed": len(outcome.failed),
        "seconds": round(time.perf_counter() - start, 1),
        "batch_seconds": round(outcome.seconds, 1),
        "stats": stats.to_dict(),  # every batch of the job, resumed ones included
        "run_stats": outcome.stats.to_dict(),  # the batches this run did
    }
    reporting.publish_report(config.name, config.out, summary, manifest)
    if outcome.failed:
        failed = ", ".join(f"#{i}" for i in sorted(outcome.failed))
        raise RuntimeError(f"{len(outcome.failed)} of {len(batches)} batches failed ({failed}); no manifest was "
                           "written. Fix the cause and run again with the same parameters: finished batches are skipped.")
    logger.info("done: %s", {k: v for k, v in summary.items() if k != "stats"})
    return summary
