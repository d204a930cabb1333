"""How busy the model stages of the understanding job are: the best-case GPU busy share.

    python bench/model_busy.py [--records 12] [--call-ms 120] [--stand-in torch|accelerator]
                               [--modes sequential,overlapped,overlapped:2]

Runs the understanding job (demo catalog -> ``UnderstandingBuilder`` -> ``ShardWriter``) through
``datagen.runner.run_builder`` once per mode, with the learned backends replaced by stand-ins of
fixed per-call cost: each masker / inpainter / harmonizer call runs a real torch module (a stack of
1024x1024 linear layers, its depth calibrated at start-up to take ``--call-ms`` on one thread) and
returns what the classical backend (``annotation`` / ``opencv`` / ``classical``) returned for the
same inputs in an unmeasured warm-up run, so the rest of the job (referring expressions, quality
checks, compositing, encoding, tar writing) does its full work on real outputs, and a stand-in
call costs its forward and nothing else, as a learned backend's call is mostly its forward. The
model time is the time inside these calls.

``--stand-in accelerator`` replaces the torch forward by a wait of the same length that holds no
CPU, as the host thread waits for a GPU kernel: on a small or shared CPU the torch stand-in competes
with the CPU stages for cores (its calls slow down and the share rises for the wrong reason), the
accelerator stand-in shows what the pipeline's overlap gives when the model runs elsewhere.

Prints, per mode, the share of wall time spent inside model calls, over the whole run and at
steady state (from the start of the first model call to the end of the last: without the start-up
load and the final drain), the samples/s and process CPU time, and the ratio overlapped /
sequential of both. ``overlapped:N`` adds N threads that encode images ahead of the writer. Target: steady-state share >= 0.9 in overlapped mode. Every mode
writes the same shards (checked).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


class ModelClock:
    """Intervals spent inside stand-in model calls, from any thread."""

    def __init__(self):
        self.intervals: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def record(self, start: float, end: float) -> None:
        with self._lock:
            self.intervals.append((start, end))

    def busy(self) -> float:
        return sum(end - start for start, end in self.intervals)

    def span(self) -> float:
        return max(e for _, e in self.intervals) - min(s for s, _ in self.intervals)


class FixedCostModel(torch.nn.Module):
    """``depth`` Linear(1024, 1024) + GELU layers over a 256x1024 input derived from the image."""

    def __init__(self, depth: int):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.Sequential(*[m for _ in range(depth) for m in (torch.nn.Linear(1024, 1024),
                                                                             torch.nn.GELU())])

    @torch.inference_mode()
    def forward(self, image) -> float:
        """image HxWx3 uint8 -> a scalar (the stand-in's output is not used, its cost is)."""
        x = torch.from_numpy(image[:64, :64].reshape(-1)[:1024].astype("float32")).repeat(256, 1) / 255.0
        return float(self.layers(x).mean())


class AcceleratorModel:
    """``--stand-in accelerator``: a call holds no CPU for ``call_ms`` (it waits, as the host
    thread waits for a GPU kernel), so CPU stages compete with nothing but each other; on a busy
    shared CPU this isolates the pipeline's overlap from the CPU cost of the torch stand-in."""

    def __init__(self, call_ms: float):
        self.seconds = call_ms / 1000.0
        self.layers = ()

    def __call__(self, image) -> None:
        time.sleep(self.seconds)


def calibrate(call_ms: float) -> FixedCostModel:
    """A ``FixedCostModel`` whose forward takes about ``call_ms`` on this thread count."""
    image = np.zeros((64, 64, 3), np.uint8)
    probe = FixedCostModel(4)
    probe(image)
    timings = []
    for _ in range(7):  # the fastest call: the layer's own cost, without other processes' load
        start = time.perf_counter()
        probe(image)
        timings.append(time.perf_counter() - start)
    per_layer = min(timings) / 4
    return FixedCostModel(max(1, round(call_ms / 1000 / per_layer)))


class StandIn:
    """A classical backend's outputs at a learned model's cost: a call runs ``model`` (timed by
    ``clock``) and returns the inner backend's output for the same inputs, computed once by a
    warm-up run (``model=None``) and remembered by input digest."""

    def __init__(self, inner, memo: dict):
        self.inner, self.memo = inner, memo
        self.model: FixedCostModel | None = None
        self.clock: ModelClock | None = None
        self.misses = 0  # calls whose inputs the warm-up run never saw (should stay 0)
        self.name = f"standin-{inner.name}"

    def _call(self, method: str, arrays: tuple, compute):
        start = time.perf_counter()
        key = (method, *(hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest() for a in arrays))
        if self.model is not None:
            self.model(arrays[0])
        out = self.memo.get(key)
        if out is None:
            self.misses += self.model is not None
            out = self.memo[key] = compute()
        if self.clock is not None:
            self.clock.record(start, time.perf_counter())
        return out.copy()

    def masks(self, image, boxes, annotated=None):
        return self._call("masks", (image, np.asarray(boxes)), lambda: self.inner.masks(image, boxes, annotated))

    def inpaint(self, image, hole, **kwargs):
        return self._call("inpaint", (image, hole), lambda: self.inner.inpaint(image, hole, **kwargs))

    def harmonize(self, composite, fg_mask, **kwargs):
        return self._call("harmonize", (composite, fg_mask), lambda: self.inner.harmonize(composite, fg_mask, **kwargs))

    def settings(self) -> dict:
        return {"backend": self.name, "inner": self.inner.settings()}


def build(seed: int):
    """The understanding builder over the three stand-ins (not yet given a model)."""
    from datagen.harmonization import build_harmonizer
    from datagen.inpainting import build_inpainter
    from datagen.masking import build_masker
    from datagen.sources.demo import donor_objects
    from datagen.understanding import UnderstandingBuilder

    memo: dict = {}
    return UnderstandingBuilder(StandIn(build_masker("annotation"), memo), StandIn(build_inpainter("opencv"), memo),
                                StandIn(build_harmonizer("classical"), memo), donor_objects(), seed=seed)


def _stand_ins(builder) -> list[StandIn]:
    return [builder.masker, builder.inpainter, builder.harmonizer]


def run_mode(spec: str, builder, records: int, seed: int, folder: Path, image_format: str) -> dict:
    """``spec``: ``sequential``, ``overlapped`` or ``overlapped:N`` (N encode-ahead threads; plain
    ``overlapped``: the runner's default)."""
    from datagen.runner import run_builder
    from datagen.shards import ShardWriter
    from datagen.sources import open_catalog

    mode, _, workers = spec.partition(":")
    options = {"encode_workers": int(workers)} if workers else {}
    clock = ModelClock()
    for stand_in in _stand_ins(builder):
        stand_in.clock = clock
    catalog = open_catalog(f"demo:{records}:{seed}")
    cpu = time.process_time()
    with ShardWriter(folder / spec.replace(":", "-"), "busy", image_format=image_format, fsync=False) as writer:
        stats = run_builder(catalog, builder, writer, progress=False, mode=mode, **options)
        encoder = writer.encoder
    return {"mode": spec, "wall": stats.seconds, "cpu": time.process_time() - cpu, "busy": clock.busy(), "span": clock.span(),
            "calls": len(clock.intervals), "samples": stats.samples_written,
            "encoded": encoder.encoded, "requested": encoder.requested, "keys": _keys(folder / spec.replace(":", "-"))}


def _keys(data_dir: Path) -> list[str]:
    from datagen.shards.layout import committed_shards

    return sorted(k for s in committed_shards(data_dir) for k in s.load_sidecar().get("keys", []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=12, help="demo scenes (~3.4 instances each)")
    parser.add_argument("--call-ms", type=float, default=120.0, help="cost of one stand-in model call")
    parser.add_argument("--modes", default="sequential,overlapped",
                        help="sequential | overlapped[:N encode-ahead threads; default 0: the writer encodes]")
    parser.add_argument("--image-format", default="png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stand-in", choices=("torch", "accelerator"), default="torch",
                        help="torch: a 1-thread torch forward (uses a core); accelerator: a wait that uses none")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the model on one thread, as a GPU stream would be one busy resource
    model = calibrate(args.call_ms) if args.stand_in == "torch" else AcceleratorModel(args.call_ms)
    builder = build(args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        run_mode("sequential", builder, args.records, args.seed, Path(tmp) / "warm-up", args.image_format)
        for stand_in in _stand_ins(builder):
            stand_in.model = model
        for mode in args.modes.split(","):
            results.append(run_mode(mode, builder, args.records, args.seed, Path(tmp), args.image_format))
    misses = sum(s.misses for s in _stand_ins(builder))
    print(f"records: {args.records}, stand-in: {args.stand_in}, {args.call_ms:.0f} ms per call target "
          f"({len(model.layers) // 2} torch layers), torch threads 1, cpu_count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    for r in results:
        print(f"{r['mode']:>12}: wall {r['wall']:.2f} s, cpu {r['cpu']:.2f} s, model {r['busy']:.2f} s in {r['calls']} calls "
              f"({1000 * r['busy'] / r['calls']:.0f} ms each); busy share {r['busy'] / r['wall']:.3f} whole run, "
              f"{r['busy'] / r['span']:.3f} steady state; {r['samples'] / r['wall']:.2f} samples/s; "
              f"images requested {r['requested']}, encoded {r['encoded']}")
    if len({tuple(r["keys"]) for r in results}) != 1 or misses:
        print(f"ERROR: the modes wrote different samples, or {misses} stand-in calls missed the warm-up outputs")
        return 2
    by_mode = {r["mode"]: r for r in results}
    if {"sequential", "overlapped"} <= set(by_mode):
        seq, ovl = by_mode["sequential"], by_mode["overlapped"]
        print(f"overlapped / sequential: samples/s x{seq['wall'] / ovl['wall']:.2f}, steady busy share "
              f"{seq['busy'] / seq['span']:.3f} -> {ovl['busy'] / ovl['span']:.3f} (target >= 0.9)")
    final = results[-1]
    return 0 if final["busy"] / final["span"] >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
