"""Throughput of the SmartEdit trainer's phases in the tiny configuration (CPU by default).

``python bench/trainer.py [--phases stage1,stage2a,stage2b] [--shards manifests/] [--steps 30]
[--batch-size 4] [--resolution 256]``

Runs each phase once (stage 1 on img2dataset-style caption shards; stage 2a without BIM; stage 2b
with BIM), drops the first ``--warmup`` steps, and prints for each, from its one run: optimizer
steps/s, samples/s, and the share of step time spent waiting for data (target < 5 %). Without
``--shards`` it writes a small synthetic shard set in the project's format to a temporary folder
first. The figures describe the machine it ran on; nothing here is a fixed claim.
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


def run_phase(phase: str, tmp: Path, shards: str, captions: str, args) -> list[dict]:
    """Train one phase in ``tmp/phase`` and return its loss-log rows."""
    from trainer import stage1, stage2

    out = tmp / phase
    common = ["--output", str(out), "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
              "--workers", str(args.workers), "--checkpoint-every", str(10 ** 9), "--no-progress", "--mix-report", "0"]
    if phase == "stage1":
        stage1.train(stage1.parse_args(["--shards", captions, *common]))
    else:
        extra = ["--no-bim"] if phase == "stage2a" else []
        stage2.train(stage2.parse_args(["--shards", shards, "--resolution", str(args.resolution), *common, *extra]))
    return [json.loads(x) for x in (out / "loss_log.jsonl").read_text().splitlines()]


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phases", default="stage1,stage2a,stage2b")
    p.add_argument("--shards", default="", help="manifest file/folder (default: synthetic shards)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from trainer.testdata import write_dataset, write_img2dataset_shard

    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shards = args.shards
        if not shards:
            for i, name in enumerate(("synthetic", "perception")):
                write_dataset(tmp, name, 32, samples_per_shard=8, seed=i)
            shards = str(tmp / "manifests")
        words = ["red", "blue", "cat", "cup", "left", "right", "bigger", "clock", "mirror", "box"]
        for shard in range(4):
            write_img2dataset_shard(tmp / "captions", [f"a {words[(shard + i) % 10]} {words[(3 * i) % 10]} on a table"
                                                       for i in range(16)], shard=shard)
        for phase in args.phases.split(","):
            rows = run_phase(phase, tmp, shards, str(tmp / "captions"), args)
            results[phase] = {"device": device, "config": "tiny", "batch_size": args.batch_size,
                              "workers": args.workers, **measure(rows, args.warmup, args.batch_size)}
            f = results[phase]
            print(f"{phase}: steps/s {f['steps_per_s']:.2f} | samples/s {f['samples_per_s']:.2f} | "
                  f"step {f['mean_step_s'] * 1000:.0f} ms | data wait {100 * f['data_wait_share']:.1f} % "
                  f"(target < 5 %) | {f['steps']} steps measured on {device}")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
