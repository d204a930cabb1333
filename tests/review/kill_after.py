"""``python tests/review/kill_after.py N ARGS...``: run ``python -m datagen ARGS`` and SIGKILL this
process right after its Nth durable step (N = 0: never), printing ``KILLED <step>`` to stderr.

Durable steps are what a crash can leave behind: a committed queue transaction and a rename into
place (a shard tar, its sidecar, a manifest). Killing after each one covers every state a real
crash can leave, since nothing else persists between two of them.
"""
from __future__ import annotations

import os
import signal
import sys

from datagen.cli import main
from datagen.review import db as review_db

LIMIT = int(sys.argv[1])
_done = 0


def _step(name: str) -> None:
    global _done
    _done += 1
    if _done == LIMIT:
        print(f"KILLED {name}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


_real_finish = review_db.Database._finish
_real_replace = os.replace


def _finish(self, tx):
    yield from _real_finish(self, tx)
    _step("queue-commit")


def _replace(src, dst, **kwargs):
    _real_replace(src, dst, **kwargs)
    _step("rename " + os.path.basename(os.fspath(dst)))


review_db.Database._finish = _finish
os.replace = _replace

if __name__ == "__main__":
    sys.exit(main(sys.argv[2:]))
