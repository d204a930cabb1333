"""Scale-out option: run a flow's batch tasks on a Dask cluster (``execution.runner = "dask"``).

The flow plans as usual, then hands the batches to a child flow run, ``run-batches-on-dask``,
whose task runner is a prefect-dask ``DaskTaskRunner``: a local ``distributed.LocalCluster`` of
``dask_workers`` processes, or an existing cluster at ``dask_address`` (multi-node: see
docs/ORCHESTRATION.md). Each Dask worker process keeps its own model cache (``datagen.jobs``),
so models load once per worker, not once per batch.

GPU-bound batches (a learned backend not pinned to the CPU, or ``gpu_resource=True``) are
submitted inside ``dask.annotate(resources={"GPU": 1})``: the scheduler then runs at most one of
them at a time on a worker started with ``--resources GPU=1`` and never on a worker without a GPU.
For them the local cluster is ``gpu_cluster``: one worker process per GPU, each started with
``CUDA_VISIBLE_DEVICES`` set to its own GPU, so ``cuda`` (device 0) in a worker is that worker's
GPU and each worker loads its models once, onto its GPU.

(Named ``cluster``, not ``dask``: Prefect puts ``flows/`` on ``sys.path``, where a ``dask.py``
would hide the real ``dask`` package.)
"""
from __future__ import annotations

import os
from contextlib import contextmanager

from prefect import flow

from datagen import jobs
from datagen.jobs import Batch, JobConfig
from flows.params import Execution


def wants_gpu(config: JobConfig, execution: Execution) -> bool:
    return jobs.needs_gpu(config) if execution.gpu_resource is None else bool(execution.gpu_resource)


@contextmanager
def gpu_annotation(config: JobConfig, execution: Execution):
    """Tasks submitted inside carry ``resources={"GPU": 1}`` when they run on Dask and need a GPU."""
    if execution.runner != "dask" or not wants_gpu(config, execution):
        yield
        return
    import dask

    with dask.annotate(resources={"GPU": 1}):
        yield


def visible_gpus(count: int) -> list[str]:
    """The ids of the first ``count`` GPUs this process may use: from ``CUDA_VISIBLE_DEVICES`` when
    it is set, else ``0..count-1`` (on a machine without GPUs: the ids the workers would use).
    Raises ``ValueError`` when ``CUDA_VISIBLE_DEVICES`` lists fewer than ``count``."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    ids = [d.strip() for d in listed.split(",") if d.strip()]
    if len(ids) < count:
        raise ValueError(f"execution.dask_workers={count} asks for one worker per GPU but CUDA_VISIBLE_DEVICES "
                         f"lists {len(ids)} ({listed!r}); lower dask_workers or make more GPUs visible")
    return ids[:count]


def gpu_cluster(*, gpus: list[str], slots_per_gpu: int = 1, threads_per_worker: int = 1, asynchronous: bool = False):
    """A local ``SpecCluster`` with one worker process per id in ``gpus``, named ``gpu-ID``, started
    with ``CUDA_VISIBLE_DEVICES=ID`` and declaring ``slots_per_gpu`` ``GPU`` resource slots;
    scheduler and workers on 127.0.0.1, no dashboard."""
    from distributed import Nanny, Scheduler, SpecCluster

    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": None}}
    workers = {f"gpu-{gpu}": {"cls": Nanny, "options": {
        "nthreads": threads_per_worker, "host": "127.0.0.1", "resources": {"GPU": slots_per_gpu},
        "env": {"CUDA_VISIBLE_DEVICES": str(gpu)}}} for gpu in gpus}
    return SpecCluster(workers=workers, scheduler=scheduler, asynchronous=asynchronous, name="datagen-gpus")


def worker_gpu() -> str | None:
    """The GPU id this process was pinned to (``CUDA_VISIBLE_DEVICES``), None if unpinned."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def make_task_runner(config: JobConfig, execution: Execution):
    """A ``DaskTaskRunner`` for ``execution``: an existing scheduler, one local worker per GPU
    (``gpu_cluster``) for GPU-bound jobs, or a local CPU cluster."""
    from prefect_dask import DaskTaskRunner

    if execution.dask_address:
        return DaskTaskRunner(address=execution.dask_address)
    if wants_gpu(config, execution):
        # A GPU-annotated task waits forever on workers that declare no GPU: every worker
        # declares at least one slot.
        return DaskTaskRunner(cluster_class=gpu_cluster, cluster_kwargs={
            "gpus": visible_gpus(execution.dask_workers), "slots_per_gpu": max(1, execution.dask_gpus_per_worker),
            "threads_per_worker": execution.dask_threads_per_worker})
    cluster_kwargs = {
        "n_workers": execution.dask_workers,
        "threads_per_worker": execution.dask_threads_per_worker,
        "processes": True,
        "host": "127.0.0.1",  # loopback only
        "dashboard_address": None,  # no dashboard port (and no bokeh import) by default
    }
    if execution.dask_gpus_per_worker:
        cluster_kwargs["resources"] = {"GPU": execution.dask_gpus_per_worker}
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster_kwargs)


@flow(name="run-batches-on-dask", log_prints=True)
def batches_on_dask(config: JobConfig, batches: list[Batch], execution: Execution, progress_id: str, total: int,
                    done: int):
    """Child flow run whose task runner (set by ``run_on_dask``) is a ``DaskTaskRunner``."""
    from flows import reporting
    from flows.tasks import run_batches

    progress = reporting.Progress(config.name, total=total, done=done, artifact_id=progress_id)
    return run_batches(config, batches, execution, progress)


def run_on_dask(config: JobConfig, batches: list[Batch], execution: Execution, progress):
    """Run ``batches`` on Dask from inside a flow; returns ``flows.tasks.Outcome``."""
    runner = make_task_runner(config, execution)
    return batches_on_dask.with_options(task_runner=runner)(
        config, batches, execution, progress_id=str(progress.artifact_id), total=progress.total, done=progress.done)
