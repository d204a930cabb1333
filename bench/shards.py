"""Shard-writer throughput as a ratio to plain ``tarfile`` writing the same pre-encoded bytes.

    python bench/shards.py [--samples 80] [--size 512] [--maxcount 20] [--reps 7] [--dir DIR]

Every side writes the same members into shards of ``--maxcount`` samples. Repetitions are
interleaved (A B C, C B A, ...) and medians are compared, because the machines are noisy.
``ShardWriter`` frames the tar itself, hashes every byte (sha256), writes a sidecar and renames
each shard into place, and by default fsyncs it. Plain ``tarfile`` does none of that, so three
ratios are printed: the durable writer against plain tarfile (what durability costs on this
disk), the writer with ``fsync=False`` against plain tarfile (the writer's own overhead; target
>= 0.9, the exit status), and the durable writer against tarfile + fsync (like for like).
CPU time (all threads) is printed beside each rate: on a busy machine it shows which part of a
gap is work (hashing) and which is waiting (fsync). Finally the end-to-end rate including PNG
encoding, for information.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from datagen.imageio import encode_image, encode_mask  # noqa: E402
from datagen.schema import EditSample, sample_key  # noqa: E402
from datagen.shards import ShardWriter  # noqa: E402


def synthetic_sample(i: int, size: int) -> EditSample:
    """Photo-like image (smooth gradients + sensor-like noise) so PNG sizes are realistic."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([np.sin(6 * xx + i), np.cos(5 * yy - i), np.sin(4 * (xx + yy))], axis=2)
    src = np.clip(127 + 90 * base + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
    tgt = src.copy()
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 4:size // 2, size // 3:2 * size // 3] = True
    tgt[mask] = (200, 40, 40)
    return EditSample(key=sample_key("bench", i), src=src, tgt=tgt, mask=mask,
                      instruction=f"Replace the left cup number {i} with a red box", scenario="understanding",
                      op="replace", target={"category": "cup", "attribute": "location"},
                      provenance={"record_id": f"bench:{i}"}, quality={"scores": {"psnr": 31.5}})


def encode(sample: EditSample) -> tuple[str, dict[str, bytes], dict]:
    members = {"src.png": encode_image(sample.src), "tgt.png": encode_image(sample.tgt),
               "mask.png": encode_mask(sample.mask)}
    return sample.key, members, sample.metadata()


def run_tarfile(encoded, out: Path, maxcount: int, fsync: bool) -> int:
    """Plain tarfile: the same members (json encoded beforehand), same shard boundaries."""
    import json

    prepared = [(key, list(members.items()) + [("json", json.dumps(meta).encode())])
                for key, members, meta in encoded]
    nbytes = 0
    for start in range(0, len(prepared), maxcount):
        path = out / f"plain-{start // maxcount:06d}.tar"
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, members in prepared[start:start + maxcount]:
                for ext, data in members:
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            if fsync:
                tar.fileobj.flush()
                os.fsync(tar.fileobj.fileno())
        nbytes += path.stat().st_size
    return nbytes


def run_writer(encoded, out: Path, maxcount: int, fsync: bool) -> int:
    with ShardWriter(out, "bench", maxcount=maxcount, fsync=fsync) as writer:
        for key, members, meta in encoded:
            writer.write_encoded(key, members, meta)
    return sum(p.stat().st_size for p in writer.shards)


def timed(fn, out: Path) -> tuple[float, float, int]:
    """``(wall seconds, CPU seconds of all threads, bytes written)`` of ``fn(out)``."""
    out.mkdir(parents=True)
    c0, t0 = time.process_time(), time.perf_counter()
    nbytes = fn(out)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    shutil.rmtree(out)
    return elapsed, cpu, nbytes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=80)
    parser.add_argument("--size", type=int, default=512, help="image side in pixels")
    parser.add_argument("--maxcount", type=int, default=20)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        samples = [synthetic_sample(i, args.size) for i in range(args.samples)]
        encoded = [encode(s) for s in samples]
        print(f"{args.samples} samples of {args.size}x{args.size}, encoded in {time.perf_counter() - t0:.1f} s")
        sides = {
            "tarfile": lambda out: run_tarfile(encoded, out, args.maxcount, fsync=False),
            "tarfile+fsync": lambda out: run_tarfile(encoded, out, args.maxcount, fsync=True),
            "ShardWriter": lambda out: run_writer(encoded, out, args.maxcount, fsync=True),
            "ShardWriter-nofsync": lambda out: run_writer(encoded, out, args.maxcount, fsync=False),
        }
        names = list(sides)
        times = {name: [] for name in names}
        cpus = {name: [] for name in names}
        nbytes = {}
        for name in names:  # warm-up: page cache, imports, thread start
            timed(sides[name], root / f"warm-{name}")
        for rep in range(args.reps):
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                elapsed, cpu, nbytes[name] = timed(sides[name], root / f"{rep}-{name}")
                times[name].append(elapsed)
                cpus[name].append(cpu)
        med = {name: statistics.median(v) for name, v in times.items()}
        for name in names:
            print(f"  {name:<20} {nbytes[name] / med[name] / 1e6:8.1f} MB/s  {args.samples / med[name]:8.1f} samples/s"
                  f"  CPU {statistics.median(cpus[name]) * 1e3:6.0f} ms  (median of {args.reps}, {nbytes[name] / 1e6:.1f} MB)")
        ratio = med["tarfile"] / med["ShardWriter-nofsync"]
        print(f"ratio ShardWriter (durable) / tarfile:         {med['tarfile'] / med['ShardWriter']:.2f}")
        print(f"ratio ShardWriter (fsync=False) / tarfile:     {ratio:.2f}  (target >= 0.9)")
        print(f"ratio ShardWriter (durable) / tarfile+fsync:   {med['tarfile+fsync'] / med['ShardWriter']:.2f}")

        n = min(args.samples, 30)
        elapsed, _, size = timed(lambda out: _write_samples(samples[:n], out, args.maxcount), root / "e2e")
        print(f"end to end with PNG encoding: {n / elapsed:.1f} samples/s, {size / elapsed / 1e6:.1f} MB/s"
              " (one core; encoding dominates)")
        return 0 if ratio >= 0.9 else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write_samples(samples, out: Path, maxcount: int) -> int:
    with ShardWriter(out, "e2e", maxcount=maxcount) as writer:
        for sample in samples:
            writer.write(sample)
    return sum(p.stat().st_size for p in writer.shards)


if __name__ == "__main__":
    sys.exit(main())
