"""Shard-writer throughput against the floor: the same bytes written raw, on wall and CPU time.

    python bench/shards.py [--samples 80] [--size 512] [--maxcount 20] [--reps 7] [--dir DIR]

Every side writes the same members into shards of ``--maxcount`` samples. Repetitions are
interleaved (A B C, C B A, ...) and medians are compared, because the machines are noisy.
``ShardWriter`` frames the tar itself, hashes every byte (sha256, on a helper thread), writes a
sidecar, records the keys in the key index and renames each shard into place, and by default
fsyncs it. The floor is ``raw``: the identical tar bytes (same headers, padding, shard
boundaries) written with one ``os.writev`` per sample, no hashing, no sidecar, no index; ``raw+fsync``
adds one fsync per shard. Plain ``tarfile`` is shown for reference. Ratios (floor / writer, so 1.0
means no overhead) are printed for wall time and for CPU time of all threads; CPU time shows the
work the writer adds even where a second core hides it from the wall clock. The exit status is
0 when the writer with ``fsync=False`` reaches at least 0.9 of plain tarfile's wall rate (the
earlier target, kept so a regression is noticed). Finally the end-to-end rate including PNG
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


def run_raw(encoded, out: Path, maxcount: int, fsync: bool) -> int:
    """The floor: the writer's exact tar bytes, one ``os.writev`` per sample, nothing else."""
    import json

    from datagen.shards.tario import end_of_archive, member_header, padding

    prepared = [(key, list(members.items()) + [("json", json.dumps(dict(meta, key=key)).encode())])
                for key, members, meta in encoded]
    nbytes = 0
    for start in range(0, len(prepared), maxcount):
        path = out / f"raw-{start // maxcount:06d}.tar"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            offset = 0
            for key, members in prepared[start:start + maxcount]:
                buffers = []
                for ext, data in members:
                    buffers += (member_header(f"{key}.{ext}", len(data), 0), data, padding(len(data)))
                offset += os.writev(fd, buffers)
            offset += os.write(fd, end_of_archive(offset))
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        nbytes += offset
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
            "raw": lambda out: run_raw(encoded, out, args.maxcount, fsync=False),
            "raw+fsync": lambda out: run_raw(encoded, out, args.maxcount, fsync=True),
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
        cpu = {name: statistics.median(v) for name, v in cpus.items()}
        for name in names:
            print(f"  {name:<20} {nbytes[name] / med[name] / 1e6:8.1f} MB/s  {args.samples / med[name]:8.1f} samples/s"
                  f"  CPU {statistics.median(cpus[name]) * 1e3:6.0f} ms  (median of {args.reps}, {nbytes[name] / 1e6:.1f} MB)")
        ratio = med["tarfile"] / med["ShardWriter-nofsync"]
        for floor, writer in (("raw", "ShardWriter-nofsync"), ("raw+fsync", "ShardWriter")):
            print(f"ratio {floor} / {writer}:{' ' * (30 - len(floor) - len(writer))}"
                  f"wall {med[floor] / med[writer]:.2f}  CPU {cpu[floor] / cpu[writer]:.2f}  (1.0 = no overhead)")
        print(f"ratio tarfile / ShardWriter-nofsync:          wall {ratio:.2f}  CPU "
              f"{cpu['tarfile'] / cpu['ShardWriter-nofsync']:.2f}  (target wall >= 0.9)")
        print(f"ratio tarfile+fsync / ShardWriter:            wall {med['tarfile+fsync'] / med['ShardWriter']:.2f}  CPU "
              f"{cpu['tarfile+fsync'] / cpu['ShardWriter']:.2f}")

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
