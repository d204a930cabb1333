"""Publishing approved candidates: shards + manifest, exactly once, re-runnable, crash-safe."""
from __future__ import annotations

import pytest

from datagen.review import QueueError
from datagen.review.publish import publish_reviewed
from datagen.shards import read_samples, verify_manifest
from .candidates import tiny_candidate


def review_all(store, reviewer: str, verdicts: list[str]) -> list[int]:
    ids = []
    for verdict in verdicts:
        item = store.claim(reviewer)
        store.decide(item["id"], reviewer, verdict)
        ids.append(item["id"])
    return ids


def test_publish_writes_each_approved_sample_once(sqlite_store, tmp_path):
    store = sqlite_store
    data, manifests = tmp_path / "data", tmp_path / "manifests"
    store.add_many([tiny_candidate(i) for i in range(8)])
    assert publish_reviewed(store, data, "reasoning-reviewed", manifests).manifest is None   # nothing approved yet

    review_all(store, "ann", ["approve", "reject", "approve", "approve"])
    first = publish_reviewed(store, data, "reasoning-reviewed", manifests)
    assert (first.written, first.already) == (3, 0)
    assert verify_manifest(first.manifest) == []
    samples = list(read_samples(first.manifest))
    assert len(samples) == 3
    for s in samples:
        assert s.review["status"] == "approved" and s.review["reviewer"] == "ann"
        assert s.review["decisions"][0]["verdict"] == "approve" and s.review["time"].endswith("Z")

    again = publish_reviewed(store, data, "reasoning-reviewed", manifests)
    assert (again.written, again.already) == (0, 0)
    review_all(store, "bob", ["approve", "approve"])
    later = publish_reviewed(store, data, "reasoning-reviewed", manifests)
    assert later.written == 2
    keys = [s.key for s in read_samples(later.manifest)]
    assert len(keys) == len(set(keys)) == 5


def test_published_items_cannot_be_undone(sqlite_store, tmp_path):
    store = sqlite_store
    store.add_many([tiny_candidate(i) for i in range(2)])
    review_all(store, "ann", ["approve"])
    publish_reviewed(store, tmp_path / "data", "r", tmp_path / "manifests")
    with pytest.raises(QueueError) as err:
        store.undo("ann")
    assert err.value.code == "published"


def test_a_crash_before_marking_published_does_not_duplicate(sqlite_store, tmp_path, monkeypatch):
    store = sqlite_store
    store.add_many([tiny_candidate(i) for i in range(4)])
    review_all(store, "ann", ["approve"] * 4)

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt("killed after the shards were committed")

    monkeypatch.setattr(store, "mark_published", crash)
    with pytest.raises(KeyboardInterrupt):
        publish_reviewed(store, tmp_path / "data", "r", tmp_path / "manifests")
    monkeypatch.undo()
    assert len(store.approved_unpublished()) == 4
    rerun = publish_reviewed(store, tmp_path / "data", "r", tmp_path / "manifests")
    assert (rerun.written, rerun.already) == (0, 4)
    assert store.approved_unpublished() == []
    assert len(list(read_samples(rerun.manifest))) == 4


def test_an_item_taken_by_a_publish_run_cannot_be_undone(store):
    """Between the claim and the mark (a publish in progress, or one killed there) undo is refused
    with a message that says why; an undo before the claim keeps the item out of the publish."""
    store.add_many([tiny_candidate(i) for i in range(3)])
    first, second, _ = (review_all(store, name, ["approve"])[0] for name in ("ann", "bob", "cy"))
    store.undo("bob")                                          # before any publish: allowed
    store.decide(second, "bob", "reject")
    assert store.claim_for_publish("run-1") == [first, first + 2]
    with pytest.raises(QueueError) as err:
        store.undo("ann")
    assert err.value.code == "published" and "publish run has taken this item" in err.value.detail
    assert store.claim_for_publish("run-2") == [first, first + 2]   # a dead run's items are taken again
    store.mark_published([first, first + 2])
    assert store.claim_for_publish("run-3") == []
