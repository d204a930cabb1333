"""Scale-out option: run a flow's batch tasks on a Dask cluster (``execution.runner = "dask"``).

The flow plans as usual, then hands the batches to a child flow run, ``run-batches-on-dask``,
whose task runner is a prefect-dask ``DaskTaskRunner``: a local ``distributed.LocalCluster`` of
``dask_workers`` processes, or an existing cluster at ``dask_address`` (multi-node: see
docs/ORCHESTRATION.md). Each Dask worker process keeps its own model cache (``datagen.jobs``),
so models load once per worker, not once per batch.

GPU-bound batches (a learned backend not pinned to the CPU, or ``gpu_resource=True``) are
submitted inside ``dask.annotate(resources={"GPU": 1})``: the scheduler then runs at most one of
them at a time on a worker started with ``--resources GPU=1`` and never on a worker without a GPU.
"""
from __future__ import annotations

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


def make_task_runner(config: JobConfig, execution: Execution):
    """A ``DaskTaskRunner`` for ``execution``: an existing scheduler or a local cluster."""
    from prefect_dask import DaskTaskRunner

    if execution.dask_address:
        return DaskTaskRunner(address=execution.dask_address)
    gpus = execution.dask_gpus_per_worker
    if wants_gpu(config, execution) and not gpus:
        # A GPU-annotated task waits forever on workers that declare no GPU: on a local cluster
        # every worker gets one slot. (Workers of a LocalCluster all see the same GPUs; for one
        # worker per GPU start the cluster with dask-cuda and pass its dask_address.)
        gpus = 1
    cluster_kwargs = {
        "n_workers": execution.dask_workers,
        "threads_per_worker": execution.dask_threads_per_worker,
        "processes": True,
        "host": "127.0.0.1",  # loopback only
        "dashboard_address": None,  # no dashboard port (and no bokeh import) by default
    }
    if gpus:
        cluster_kwargs["resources"] = {"GPU": gpus}
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
