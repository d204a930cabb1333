"""Throughput of the SmartEdit stage-2 trainer in its tiny configuration (CPU by default).

``python bench/trainer.py [--shards manifests/] [--steps 30] [--batch-size 4] [--resolution 256]``

Runs ``trainer.stage2`` once, drops the first ``--warmup`` steps, and prints, from that one run:
optimizer steps/s, samples/s, and the share of step time spent waiting for data (target < 5 %).
Without ``--shards`` it writes a small synthetic shard set in the project's format to a temporary
folder first. The figures describe the machine it ran on; nothing here is a fixed claim.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(rows: list[dict], warmup: int, batch_size: int) -> dict:
    """Figures over the loss-log rows after ``warmup`` steps."""
    rows = rows[warmup:]
    step_s = sum(r["step_time_s"] for r in rows)
    wait_s = sum(r["data_wait_s"] for r in rows)
    return {"steps": len(rows), "steps_per_s": len(rows) / step_s, "samples_per_s": len(rows) * batch_size / step_s,
            "mean_step_s": step_s / len(rows), "data_wait_share": wait_s / step_s}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", default="", help="manifest file/folder (default: synthetic shards)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from trainer.stage2 import parse_args, train
    from trainer.testdata import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        shards = args.shards
        if not shards:
            for i, name in enumerate(("synthetic", "perception")):
                write_dataset(tmp, name, 32, samples_per_shard=8, seed=i)
            shards = str(Path(tmp) / "manifests")
        train(parse_args(["--shards", shards, "--output", str(Path(tmp) / "run"), "--max-steps", str(args.steps),
                          "--batch-size", str(args.batch_size), "--resolution", str(args.resolution),
                          "--workers", str(args.workers), "--checkpoint-every", str(10 ** 9), "--no-progress"]))
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "loss_log.jsonl").read_text().splitlines()]
    import torch

    figures = {"device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
               "config": "tiny", "batch_size": args.batch_size, "resolution": args.resolution,
               "workers": args.workers, **measure(rows, args.warmup, args.batch_size)}
    print(f"steps/s {figures['steps_per_s']:.2f} | samples/s {figures['samples_per_s']:.2f} | "
          f"step {figures['mean_step_s'] * 1000:.0f} ms | data wait {100 * figures['data_wait_share']:.1f} % "
          f"(target < 5 %) | {figures['steps']} steps measured on {figures['device']}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
