"""Costs that must not grow with the dataset: a large job against a small one, measured in one run.

    python bench/scale.py [--samples 1000000] [--small 1000] [--per-shard 100] [--dir DIR]

For each size the bench synthesises what a finished understanding job leaves on disk, without
making a single image: shards (empty tars) of ``--per-shard`` samples with real sidecars (keys,
index rows like the builder's, counts, completion markers), one batch marker per shard, and the
key index (built the way a first writer builds it for a folder that has none, which is timed as
"index build"). Then it measures, each in a fresh process:

* writer open: opening (and closing) a ``ShardWriter`` on the folder, median of 20 after the
  first two; target: the large folder within 2x of the small one;
* manifest + Parquet build from scratch: seconds per sample and the peak memory above the
  process's baseline after imports; target: memory within 2x;
* incremental manifest: one more shard committed, manifest rebuilt;
* no-op rerun: ``run_job`` on the finished job (classical backends), wall seconds in the process
  and for the whole process; target: under 2 s for the large job.

Ratios large/small are printed at the end; the exit status is 0 when every target is met.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RECORD_SAMPLES = 10  # samples per synthetic source record (an understanding scene gives ~10)


def job_config(data_dir: Path, samples: int, per_shard: int):
    """The job whose finished state is synthesised: ``demo`` records of 10 samples, one batch
    (and one shard) per ``per_shard`` samples."""
    from datagen.jobs import JobConfig

    records = samples // RECORD_SAMPLES
    return JobConfig("understanding", source=f"demo:{records}", out=str(data_dir), name="scale",
                     manifest_dir=str(data_dir.parent / "manifests"), batch_size=per_shard // RECORD_SAMPLES)


def synthetic_meta(key: str, record: str, i: int) -> dict:
    """Metadata shaped like the understanding builder's (sizes of strings and dicts alike)."""
    ops = ("add", "remove", "replace")
    return {
        "key": key, "instruction": f"Replace the left cup number {i % 7} with a red rabbit",
        "paraphrases": [f"Swap the left cup {i % 7} for a rabbit", "Put a rabbit where the left cup is"],
        "scenario": "understanding", "op": ops[i % 3],
        "target": {"category": "cup", "attribute": ["location", "size", "color"][i % 3],
                   "box": [10, 20, 110, 140], "donor": "rabbit", "phrase": "the left cup"},
        "provenance": {"record_id": record, "source": "demo", "seed": i % 5, "pipeline": "0.3.0",
                       "backends": {"masker": "grabcut", "inpainter": "opencv", "harmonizer": "classical"}},
        "quality": {"scores": {"psnr": 28.5 + i % 10, "ssim": 0.91, "mask_fraction": 0.12}, "passed": True,
                    "checks": ["psnr", "ssim"]},
        "review": None, "size": [512, 384],
    }


def synthesise(data_dir: Path, samples: int, per_shard: int) -> None:
    """Shards, sidecars and batch markers of a finished job of ``samples`` samples (no images)."""
    import datagen
    from datagen import jobs
    from datagen.runner import RunStats
    from datagen.shards.commit import SIDECAR_FORMAT
    from datagen.shards.index import count_rows, index_row
    from datagen.shards.tario import end_of_archive

    config = job_config(data_dir, samples, per_shard)
    data_dir.mkdir(parents=True)
    empty_tar = end_of_archive(0)

    class Facts:  # what a batch marker records about the builder
        name = "understanding"

        @staticmethod
        def settings():
            return {"masker": "grabcut", "inpainter": "opencv", "harmonizer": "classical"}

    for batch in jobs.plan_batches(config):
        rows, keys = [], []
        for r, record in enumerate(batch.ids):
            for j in range(RECORD_SAMPLES):
                key = f"{record.replace(':', '_')}_{j:02d}"
                keys.append(key)
                rows.append(index_row(synthetic_meta(key, record, r * RECORD_SAMPLES + j)))
        name = f"{batch.prefix}-000000.tar"
        (data_dir / name).write_bytes(empty_tar)
        sidecar = {"format": SIDECAR_FORMAT, "shard": name, "prefix": batch.prefix, "nsamples": len(rows),
                   "filesize": len(empty_tar), "sha256": "0" * 64, "keys": keys, "counts": count_rows(rows),
                   "skipped": {"ambiguous": [f"{batch.ids[0]}:cup2"]}, "records_done": list(batch.ids),
                   "samples": rows, "pipeline_version": datagen.PIPELINE_VERSION, "created": "2026-01-01T00:00:00Z",
                   "writer": {"host": "bench", "pid": 0}}
        (data_dir / f"{name}.json").write_text(json.dumps(sidecar, indent=1))
        stats = RunStats(records=len(batch.ids), samples_written=len(rows))
        jobs._write_marker(config, batch, stats, 1.0, Facts)


# ----- measurements, each run in a child process (fresh memory, fresh caches of modules) -----

def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _warm_up(folder: Path) -> None:
    """Pay one-time costs before measuring: imports (pyarrow pulls in pandas when it is installed)
    and the first Parquet write."""
    import numpy as np

    from datagen.schema import EditSample
    from datagen.shards import ShardWriter, build_manifest

    image = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    with ShardWriter(folder, "warm") as writer:
        writer.write(EditSample(key="warm", src=image, tgt=image + 1, mask=mask, instruction="Remove the cup",
                                scenario="understanding", op="remove", target={"category": "cup"}))
    build_manifest(folder, "warm", folder)
    shutil.rmtree(folder)


def child(what: str, data_dir: Path, samples: int, per_shard: int) -> dict:
    from datagen.shards import ShardWriter, build_manifest

    config = job_config(data_dir, samples, per_shard)
    manifests = Path(config.manifest_dir)
    if what == "open":
        times = []
        for _ in range(22):
            t0 = time.perf_counter()
            ShardWriter(data_dir, "bench-open").close()
            times.append(time.perf_counter() - t0)
        # The first open of a folder builds the index; the second notices the quarantine log the
        # first one created (the folder changed) and lists it once. The rest are the steady state.
        return {"first": times[0], "median": statistics.median(times[2:])}
    if what == "manifest":
        _warm_up(data_dir.parent / "warm-up")
        baseline = _rss_mb()
        t0 = time.perf_counter()
        build_manifest(data_dir, "scale", manifests)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"seconds": seconds, "peak_mb": peak, "above_baseline_mb": peak - baseline}
    if what == "add-shard":
        import numpy as np

        from datagen.schema import EditSample

        with ShardWriter(data_dir, "extra") as writer:
            for i in range(per_shard):
                image = np.full((8, 8, 3), i % 255, np.uint8)
                mask = np.zeros((8, 8), bool)
                mask[2:5, 2:5] = True
                writer.write(EditSample(key=f"extra_{writer.written:06d}_{i}", src=image, tgt=255 - image,
                                        mask=mask, instruction="Remove the cup", scenario="understanding",
                                        op="remove", target={"category": "cup"}))
        _warm_up(data_dir.parent / "warm-up")
        t0 = time.perf_counter()
        build_manifest(data_dir, "scale", manifests)
        return {"seconds": time.perf_counter() - t0}
    if what == "rerun":
        from datagen.jobs import run_job

        t0 = time.perf_counter()
        result = run_job(config)
        return {"seconds": time.perf_counter() - t0, "resumed": result.resumed, "batches": result.batches}
    raise ValueError(f"unknown measurement {what!r}")


def measure(what: str, data_dir: Path, samples: int, per_shard: int) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--child", what, str(data_dir), str(samples), str(per_shard)],
                          capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} on {samples} samples failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


def run_size(root: Path, samples: int, per_shard: int) -> dict:
    data_dir = root / f"n{samples}" / "data"
    t0 = time.perf_counter()
    synthesise(data_dir, samples, per_shard)
    out = {"synthesise_s": time.perf_counter() - t0}
    print(f"{samples} samples in {samples // per_shard} shards synthesised in {out['synthesise_s']:.1f} s", flush=True)
    out["index_build"] = measure("open", data_dir, samples, per_shard)["first"]  # the first open builds it
    out["open"] = measure("open", data_dir, samples, per_shard)
    out["manifest"] = measure("manifest", data_dir, samples, per_shard)
    out["incremental"] = measure("add-shard", data_dir, samples, per_shard)
    out["rerun"] = measure("rerun", data_dir, samples, per_shard)
    print(f"  index build (first open) {out['index_build']:.3f} s; writer open {out['open']['median'] * 1e3:.2f} ms; "
          f"manifest {out['manifest']['seconds']:.2f} s ({out['manifest']['seconds'] / samples * 1e6:.1f} us/sample, "
          f"+{out['manifest']['above_baseline_mb']:.0f} MB, peak {out['manifest']['peak_mb']:.0f} MB); "
          f"incremental manifest {out['incremental']['seconds']:.3f} s; "
          f"no-op rerun {out['rerun']['seconds']:.2f} s ({out['rerun']['process_seconds']:.2f} s with the process)",
          flush=True)
    shutil.rmtree(data_dir.parent)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--per-shard", type=int, default=100, help="samples per shard (and per batch)")
    parser.add_argument("--dir", default=None, help="where to synthesise (default: a temporary folder)")
    parser.add_argument("--child", nargs=4, metavar=("WHAT", "DIR", "SAMPLES", "PER_SHARD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        what, data_dir, samples, per_shard = args.child
        print(json.dumps(child(what, Path(data_dir), int(samples), int(per_shard))))
        return 0
    if args.per_shard % RECORD_SAMPLES or args.small % args.per_shard or args.samples % args.per_shard:
        parser.error(f"--per-shard must be a multiple of {RECORD_SAMPLES} dividing --small and --samples")

    root = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=args.dir))
    try:
        small = run_size(root, args.small, args.per_shard)
        large = run_size(root, args.samples, args.per_shard)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio_open = large["open"]["median"] / small["open"]["median"]
    per_sample = [r["manifest"]["seconds"] / n for r, n in ((small, args.small), (large, args.samples))]
    # Memory: the growth above the post-import baseline, floored at 1 MB so noise cannot divide by ~0.
    mem = [max(r["manifest"]["above_baseline_mb"], 1.0) for r in (small, large)]
    ratio_mem = mem[1] / mem[0]
    print(f"ratio writer open large/small:                {ratio_open:.2f}  (target <= 2)")
    print(f"ratio manifest seconds per sample large/small: {per_sample[1] / per_sample[0]:.2f}")
    print(f"ratio manifest memory (above baseline) l/s:    {ratio_mem:.2f}  (target <= 2; "
          f"{mem[0]:.0f} MB vs {mem[1]:.0f} MB)")
    print(f"ratio incremental manifest large/small:        "
          f"{large['incremental']['seconds'] / small['incremental']['seconds']:.2f}")
    print(f"no-op rerun of {args.samples} samples:          {large['rerun']['seconds']:.2f} s  (target < 2 s)")
    ok = ratio_open <= 2 and ratio_mem <= 2 and large["rerun"]["seconds"] < 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
