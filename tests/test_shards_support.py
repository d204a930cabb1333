"""Synthetic samples and writer child processes shared by the shard, runner and contact-sheet tests.

(No tests here; the ``test_`` name keeps it among the files the shard tests own.)
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from datagen.schema import EditSample, sample_key

OPS = [("perception", "mark"), ("understanding", "remove"), ("understanding", "replace")]
ATTRIBUTES = ["location", "size", "color"]
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def make_sample(i: int, *, record: str | None = None, hw: tuple[int, int] = (24, 32)) -> EditSample:
    """Deterministic sample number ``i``: noise image, a rectangle edited in tgt and marked in mask."""
    rng = np.random.default_rng(i)
    h, w = hw
    src = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    tgt = src.copy()
    y0, x0 = i % (h // 2), (3 * i) % (w // 2)
    tgt[y0:y0 + h // 3, x0:x0 + w // 3] = (255, 0, 0)
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y0 + h // 3, x0:x0 + w // 3] = True
    scenario, op = OPS[i % 3]
    record = record or f"rec{i}"
    return EditSample(
        key=sample_key(record, i), src=src, tgt=tgt, mask=mask,
        instruction=f"Mark the left cat number {i} in red",
        scenario=scenario, op=op,
        target={"category": ["cat", "cup"][i % 2], "attribute": ATTRIBUTES[i % 3], "box": [x0, y0, x0 + 5, y0 + 5]},
        provenance={"record_id": record, "seed": i},
        quality={"scores": {"psnr": 20.0 + i}, "passed": True},
        paraphrases=[f"Paint cat {i} red"],
    )


# A writer process: writes records [start, stop) of 3 samples each (record r -> samples 3r..3r+2),
# skipping done records; prints READY after `ready_after` samples and then hangs if `hang`;
# sleeps `delay` seconds after each sample so that a kill or a concurrent writer lands mid-run.
WRITER_CHILD = r"""
import sys, time
sys.path.insert(0, {tests!r})
from test_shards_support import make_sample
from datagen.shards import ShardWriter
data_dir, prefix, start, stop, maxcount, ready_after, hang, delay = sys.argv[1:9]
start, stop, maxcount, ready_after, delay = int(start), int(stop), int(maxcount), int(ready_after), float(delay)
n = 0
with ShardWriter(data_dir, prefix, maxcount=maxcount) as w:
    for r in range(start, stop):
        if str(r) in w.done_records:
            continue
        for j in range(3):
            w.write(make_sample(3 * r + j, record=str(r)))
            n += 1
            time.sleep(delay)
            if n == ready_after:
                print("READY", flush=True)
                if hang == "1":
                    time.sleep(60)
        w.mark_record_done(str(r))
print("DONE", flush=True)
"""


def start_writer(data_dir, prefix, start, stop, *, maxcount=4, ready_after=-1, hang=False,
                 delay=0.0) -> subprocess.Popen:
    code = WRITER_CHILD.format(tests=str(TESTS_DIR))
    args = [sys.executable, "-c", code, str(data_dir), prefix, str(start), str(stop), str(maxcount),
            str(ready_after), "1" if hang else "0", str(delay)]
    return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def record_keys(start: int, stop: int) -> set[str]:
    return {make_sample(3 * r + j, record=str(r)).key for r in range(start, stop) for j in range(3)}
