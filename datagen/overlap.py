"""Thread plumbing of the overlapped runner (``datagen.runner``, ``mode="overlapped"``).

Three stages run at once so that the builder, which holds the model calls, never waits for CPU
work around it:

    load pool (``load_workers`` threads, ``prefetch`` records ahead)
        -> builder thread (the ``events`` generator: builder calls, in record order)
        -> bounded queue (``write_ahead`` events)
        -> the caller's thread (encode + write, markers; the writer is only touched here)

``prefetched`` starts loading the next records while the current one is built; ``background``
runs a generator on its own thread behind a bounded queue. Both keep the order of their input:
the runner's exactly-once rule (a record is marked done only after everything it yielded is
written) needs nothing more than that order.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Executor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")

_POLL_S = 0.1  # how often a blocked producer checks whether the consumer gave up


class _Stop(Exception):
    """The consumer stopped reading: the producer thread ends quietly."""


def prefetched(work: Iterable[tuple[str, Callable]], skip: Callable[[str], bool], pool: Executor,
               depth: int) -> Iterator[tuple[str, Callable]]:
    """``(id, load)`` pairs as ``work`` gives them, with ``load()`` of the next ``depth`` ids already
    running on ``pool``; ids for which ``skip(id)`` is true are never loaded (their ``load`` stays
    as given, unused by the runner). A load's exception is raised by the returned ``load()``."""
    window: deque[tuple[str, Callable]] = deque()
    for item_id, load in work:
        if not skip(item_id):
            load = pool.submit(load).result  # noqa: PLW2901 - the future's result is the new load()
        window.append((item_id, load))
        if len(window) > depth:
            yield window.popleft()
    while window:
        yield window.popleft()


def background(make: Callable[[], Iterable[T]], maxsize: int, name: str) -> Iterator[T]:
    """Iterate ``make()`` on a thread of its own, ``maxsize`` items ahead of the caller.

    An exception inside ``make()``'s iteration is re-raised in the caller, after the items produced
    before it. When the caller stops early (an exception, ``close()``), the producer is told to
    stop at its next item and the thread is joined before this generator returns, so no stage
    outlives the run.
    """
    items: queue.Queue = queue.Queue(maxsize=max(1, int(maxsize)))
    stop = threading.Event()
    end = object()

    def put(entry) -> None:
        while not stop.is_set():
            try:
                items.put(entry, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stop

    def produce() -> None:
        try:
            for item in make():
                put((item, None))
            put((end, None))
        except _Stop:
            return
        except BaseException as exc:  # handed to the consumer, which raises it with its traceback
            try:
                put((end, exc))
            except _Stop:
                return

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
