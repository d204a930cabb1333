"""SIGKILL a real ``publish-reviewed`` process after each of its durable steps, let reviewers undo
and reject in between, publish again: the queue and the published data always agree, no rejected
sample is ever published and every approved one is published exactly once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from datagen.review import QueueError, open_store
from datagen.shards import read_samples
from test_shards_resume import tar_keys  # keys counted from the tar members themselves
from .candidates import tiny_candidate

ROOT = Path(__file__).resolve().parents[2]
KILLER = Path(__file__).with_name("kill_after.py")
VERDICTS = ["approve", "approve", "approve", "reject", "approve", "reject"]


def queue_state(db: str) -> dict[str, tuple]:
    """key -> (status, claimed, published) straight from the queue database."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT key, status, publish_claimed_at IS NOT NULL, published_at IS NOT NULL "
                            "FROM items").fetchall()
    return {key: (status, bool(claimed), bool(published)) for key, status, claimed, published in rows}


def publish(db: str, root: Path, kill_after: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(KILLER), str(kill_after), "publish-reviewed", "--db", db, "--out",
           str(root / "data"), "--name", "reviewed", "--manifests", str(root / "manifests"), "--maxcount", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def fresh_queue(root: Path) -> str:
    """Six candidates, each decided by its own reviewer (r0 approves item 0, ...), so each undo
    below targets one known item."""
    db = str(root / "queue" / "queue.db")
    store = open_store(db)
    store.add_many([tiny_candidate(i) for i in range(len(VERDICTS))])
    for i, verdict in enumerate(VERDICTS):
        store.decide(store.claim(f"r{i}")["id"], f"r{i}", verdict)
    store.close()
    return db


def undo_and_reject_everything(db: str) -> tuple[int, int]:
    """Every reviewer tries to undo their approval and reject instead; (refused, flipped)."""
    store = open_store(db, create=False)
    refused = flipped = 0
    try:
        for i, verdict in enumerate(VERDICTS):
            if verdict != "approve":
                continue
            try:
                undone = store.undo(f"r{i}")
            except QueueError as exc:
                assert exc.code == "published" and "publish" in exc.detail
                refused += 1
                continue
            store.decide(undone["item_id"], f"r{i}", "reject")
            flipped += 1
    finally:
        store.close()
    return refused, flipped


def assert_agreement(db: str, root: Path, *, finished: bool) -> None:
    """What is in the shards was approved and claimed, and stays so; once a publish finished, the
    shards hold exactly the approved items, each once, and the manifest says approved for each."""
    state, keys = queue_state(db), tar_keys(root / "data")
    assert all(n == 1 for n in keys.values()), keys
    for key in keys:
        status, claimed, _ = state[key]
        assert status == "approved" and claimed, (key, state[key])
    if finished:
        approved = {k for k, (status, _, _) in state.items() if status == "approved"}
        assert set(keys) == approved == {k for k, (_, _, published) in state.items() if published}
        manifest = root / "manifests" / "reviewed.json"
        if approved:
            assert {s.key: s.review["status"] for s in read_samples(manifest)} == dict.fromkeys(approved, "approved")


def test_kill_at_every_step_of_publish_with_undo_in_between(tmp_path):
    kills, outcomes = [], Counter()
    for step in range(1, 60):
        root = tmp_path / f"kill{step}"
        db = fresh_queue(root)
        killed = publish(db, root, kill_after=step)
        if killed.returncode == 0:
            break                                               # the run has fewer steps than this
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        kills.append(killed.stderr.strip().splitlines()[-1].removeprefix("KILLED "))
        assert_agreement(db, root, finished=False)
        refused, flipped = undo_and_reject_everything(db)
        outcomes["undo refused"] += refused
        outcomes["undone and rejected"] += flipped
        rerun = publish(db, root, kill_after=0)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert_agreement(db, root, finished=True)
        assert refused + flipped == VERDICTS.count("approve")
    print(f"\n{len(kills)} kill points, all consistent: {kills}; {dict(outcomes)}")
    kinds = Counter(k.split(" ")[0] for k in kills)
    assert kinds["queue-commit"] >= 3                        # schema, claim, mark published
    assert any(k.endswith(".tar") for k in kills) and any(k.endswith("reviewed.json") for k in kills)
    # Kills before the claim let every undo through; kills after it refuse every one.
    assert outcomes["undo refused"] and outcomes["undone and rejected"]
