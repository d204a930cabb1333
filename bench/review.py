"""Latency and throughput of the review server under concurrent reviewers, on loopback.

    python bench/review.py [--items 2000] [--clients 20] [--backend sqlite|postgres|both]

For each backend: a fresh queue of ``--items`` small candidates, ``--clients`` reviewers each
with their own token, the real server (``python -m datagen review serve`` under uvicorn, its own
process) and one thread per reviewer doing ``GET /api/next`` then ``POST .../approve|reject`` with
no think time until the queue is empty. Prints p50 / p95 / p99 of "next item" and "decide" as the
clients measured them (request sent to response parsed) and decisions per second over the run.
Target: p95 < 50 ms for both. ``postgres`` starts a throwaway PostgreSQL server on 127.0.0.1
(skipped with a message when no PostgreSQL binaries are installed).

Also prints the median cost of one claim and one decide for a single in-process client (round
trips and commits, no queueing): on Postgres a claim is one statement, a decide two round trips
(BEGIN + the locking read; the writes + COMMIT as one pipeline).

Zero think time is the worst case: a human reviewer needs seconds per item, so 20 real reviewers
load the server far less than these 20 clients do.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from datagen.review import open_store  # noqa: E402
from datagen.review.testing import (  # noqa: E402
    ReviewerClient,
    ReviewServer,
    find_postgres_bin,
    temporary_postgres,
)
from datagen.schema import EditSample, sample_key  # noqa: E402


def candidates(n: int) -> list[EditSample]:
    """``n`` 64x64 candidates with their own keys and instructions (pixels shared: the bench
    measures the queue, not PNG encoding)."""
    rng = np.random.default_rng(0)
    src = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    tgt = src.copy()
    tgt[16:48, 16:48] = (30, 90, 220)
    mask = np.zeros((64, 64), bool)
    mask[14:50, 14:50] = True
    return [EditSample(key=sample_key("bench-review", i), src=src, tgt=tgt, mask=mask,
                       instruction=f"What is object {i}? Change it into blue.", scenario="reasoning",
                       op="recolor", provenance={"case_id": f"bench-{i // 4}"}) for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def run_backend(db_url: str, blob_dir: Path, items: int, clients: int) -> dict:
    store = open_store(db_url, blob_dir=blob_dir)
    store.add_many(candidates(items))
    tokens = {f"reviewer{i:02d}": store.add_reviewer(f"reviewer{i:02d}") for i in range(clients)}
    store.close()
    with ReviewServer(db_url) as server:
        workers = [ReviewerClient(server.url, name, token,
                                  choose=lambda item_id: "reject" if item_id % 5 == 0 else "approve")
                   for name, token in tokens.items()]
        threads = [threading.Thread(target=w.run) for w in workers]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    decisions = sum(len(w.acks) for w in workers)
    out = {"decisions": decisions, "seconds": elapsed, "per_second": decisions / elapsed,
           "refused": sum(len(w.refused) for w in workers)}
    for kind in ("next", "decide"):
        lat = [x for w in workers for x in w.latency[kind]]
        out[kind] = {q: percentile(lat, q) for q in (50, 95, 99)}
    return out


def one_client(db_url: str, blob_dir: Path, items: int = 300) -> dict:
    """Median store-level cost of claim and decide for one reviewer, no concurrency: what a request
    costs in round trips and commits, before any queueing (in ms)."""
    store = open_store(db_url, blob_dir=blob_dir)
    store.add_many(candidates(items))
    claim, decide = [], []
    for _ in range(items):
        start = time.perf_counter()
        item = store.claim("solo")
        middle = time.perf_counter()
        store.decide(item["id"], "solo", "approve")
        claim.append(middle - start)
        decide.append(time.perf_counter() - middle)
    store.close()
    return {"claim": percentile(claim, 50), "decide": percentile(decide, 50)}


def report(backend: str, r: dict, items: int, clients: int) -> None:
    print(f"\n{backend}: {clients} clients, {items} items, {r['decisions']} decisions in {r['seconds']:.2f} s "
          f"-> {r['per_second']:.0f} decisions/s ({r['refused']} refused)")
    for kind, label in (("next", "next item"), ("decide", "decide")):
        p = r[kind]
        verdict = "ok" if p[95] < 50 else "ABOVE TARGET"
        print(f"  {label:<10} p50 {p[50]:6.1f} ms   p95 {p[95]:6.1f} ms   p99 {p[99]:6.1f} ms   "
              f"(target p95 < 50 ms: {verdict})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        tmp = Path(tmp)
        if args.backend in ("sqlite", "both"):
            r = results["sqlite"] = run_backend(str(tmp / "sqlite" / "queue.db"), tmp / "sqlite" / "blobs",
                                                args.items, args.clients)
            report("SQLite (WAL, synchronous=FULL)", r, args.items, args.clients)
            solo = one_client(str(tmp / "solo" / "queue.db"), tmp / "solo" / "blobs")
            print(f"  one client, in process: claim {solo['claim']:.2f} ms, decide {solo['decide']:.2f} ms (median)")
        if args.backend in ("postgres", "both"):
            if find_postgres_bin() is None:
                print("\nPostgreSQL: skipped, no initdb/postgres binaries (apt-get install -y postgresql)")
            else:
                with temporary_postgres() as url:
                    r = results["postgres"] = run_backend(url, tmp / "pg-blobs", args.items, args.clients)
                    report("PostgreSQL (loopback, fsync on)", r, args.items, args.clients)
                with temporary_postgres() as url:
                    solo = one_client(url, tmp / "pg-solo-blobs")
                print(f"  one client, in process: claim {solo['claim']:.2f} ms, decide {solo['decide']:.2f} ms (median)")
    if len(results) == 2:
        # On a shared, busy machine the absolute figures swing; the ratio within one run does less.
        ratios = "   ".join(f"{kind} {results['postgres'][kind][95] / results['sqlite'][kind][95]:.2f}"
                           for kind in ("next", "decide"))
        print(f"\nPostgreSQL / SQLite p95 in this run: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
