"""Queue semantics on both backends: enqueue, leases, decisions, agreement, skip, undo, audit."""
from __future__ import annotations

import numpy as np
import pytest

from datagen.review import QueueError
from .candidates import photo_candidate, tiny_candidate


def test_enqueue_is_idempotent_and_images_are_content_addressed(store):
    samples = [tiny_candidate(i) for i in range(6)]
    assert store.add_many(samples) == 6
    assert store.add_many(samples) == 0
    assert store.add(samples[0]) is False
    assert store.add(tiny_candidate(99)) is True
    # 7 candidates share the same pixels: src, tgt, mask and outline are stored once each.
    files = [p for p in store.blobs.root.rglob("*.png")]
    assert len(files) == 4
    assert store.progress("anyone")["total"] == 7


def test_sample_round_trips_pixels_and_metadata(store):
    original = photo_candidate(1)
    store.add(original)
    item = store.claim("ann")
    assert item["case_id"] == "coffee-saucer" and item["instruction"] == original.instruction
    store.decide(item["id"], "ann", "approve")
    back = store.sample(item["id"])
    assert np.array_equal(back.src, original.src) and np.array_equal(back.tgt, original.tgt)
    assert np.array_equal(back.mask, original.mask)
    assert back.target == original.target and back.provenance == original.provenance
    assert back.review["status"] == "approved" and back.review["reviewer"] == "ann"
    assert back.review["decisions"][0]["verdict"] == "approve"
    back.validate()


def test_a_lease_keeps_an_item_from_everyone_else_until_it_expires(store):
    now = [1_000_000.0]
    store.clock = lambda: now[0]          # a controllable clock: no sleeping, no timing flakes
    store.lease_seconds = 30
    store.add_many([tiny_candidate(i) for i in range(2)])
    first = store.claim("ann")
    now[0] += 29
    assert store.claim("ann")["id"] == first["id"]        # asking again renews, never a second item
    second = store.claim("bob")
    assert second["id"] != first["id"]
    now[0] += 29
    assert store.claim("cid") is None                      # both held (ann's renewed 29 s ago)
    now[0] += 2
    assert store.claim("cid")["id"] == first["id"]         # ann's lease ran out
    with pytest.raises(QueueError) as err:
        store.decide(first["id"], "ann", "approve")
    assert err.value.code == "lease_lost"
    now[0] += 31
    assert store.decide(second["id"], "bob", "reject")["status"] == "rejected"  # expired, but nobody took it


def test_decisions_are_idempotent_and_final(store):
    store.add_many([tiny_candidate(i) for i in range(2)])
    item = store.claim("ann")
    assert store.decide(item["id"], "ann", "reject") == {
        "item_id": item["id"], "status": "rejected", "verdict": "reject", "repeated": False}
    assert store.decide(item["id"], "ann", "reject")["repeated"] is True   # a retry changes nothing
    with pytest.raises(QueueError) as err:
        store.decide(item["id"], "ann", "approve")
    assert err.value.code == "already_decided"
    with pytest.raises(QueueError) as err:
        store.decide(item["id"], "bob", "approve")
    assert err.value.code == "closed"
    with pytest.raises(QueueError):
        store.decide(item["id"], "bob", "maybe")
    assert store.progress("ann")["mine"] == 1


def test_several_reviews_per_item_and_the_agreement_rules(store):
    store.add_many([tiny_candidate(i) for i in range(2)])
    store.configure(reviews_per_item=2, agreement="unanimous")   # also applies to unreviewed items
    a = store.claim("ann")
    store.decide(a["id"], "ann", "approve")
    # ann never sees an item twice: she gets the other one, bob gets the half-reviewed one first.
    assert store.claim("ann")["id"] != a["id"]
    b = store.claim("bob")
    assert b["id"] == a["id"] and b["reviews_done"] == 1
    assert store.decide(b["id"], "bob", "approve")["status"] == "approved"
    other = store.claim("ann")["id"]
    store.decide(other, "ann", "approve")
    assert store.claim("bob")["id"] == other
    assert store.decide(other, "bob", "reject")["status"] == "conflicted"

    store.configure(reviews_per_item=3, agreement="majority")
    store.add(tiny_candidate(10))
    votes = {"ann": "approve", "bob": "reject", "cid": "approve"}
    for name, verdict in votes.items():
        item = store.claim(name)
        status = store.decide(item["id"], name, verdict)["status"]
    assert status == "approved"


def test_skip_passes_an_item_to_others_and_can_be_revisited(store):
    store.add_many([tiny_candidate(i) for i in range(2)])
    first = store.claim("ann")
    store.skip(first["id"], "ann")
    assert store.claim("ann")["id"] != first["id"]
    assert store.claim("bob")["id"] == first["id"]       # released at once for everyone else
    store.decide(store.claim("ann")["id"], "ann", "approve")
    assert store.claim("ann") is None                     # only the skipped one is left, held by bob
    assert store.progress("ann")["skipped"] == 1
    assert store.clear_skips("ann") == 1


def test_undo_reopens_the_latest_decision_and_hands_it_back(store):
    store.add_many([tiny_candidate(i) for i in range(3)])
    done = []
    for verdict in ("approve", "reject"):
        item = store.claim("ann")
        store.decide(item["id"], "ann", verdict)
        done.append(item["id"])
    holding = store.claim("ann")["id"]
    undone = store.undo("ann")
    assert undone == {"item_id": done[1], "undone": "reject", "returned_to_you": True}
    assert store.claim("ann")["id"] == done[1]            # the re-opened item, not the one she held
    assert store.claim("bob")["id"] == holding            # which went back to the pool
    assert store.undo("ann")["item_id"] == done[0]        # further back
    progress = store.progress("ann")
    assert progress["mine"] == 0 and progress["by_status"]["pending"] == 3
    history = store.history("ann")
    assert [h["undone"] for h in history] == [True, True]
    store.decide(done[1], "ann", "approve")               # decide again after undo
    assert store.history("ann")[0]["verdict"] == "approve"


def test_audit_log_records_everything_and_cannot_be_rewritten(store):
    store.add_many([tiny_candidate(i) for i in range(2)])
    item = store.claim("ann")
    store.decide(item["id"], "ann", "approve")
    store.undo("ann")
    store.skip(item["id"], "ann")
    actions = [(r["actor"], r["action"], r["item_id"]) for r in store.audit_rows()]
    assert actions == [("ann", "approve", item["id"]), ("ann", "undo", item["id"]), ("ann", "skip", item["id"])]
    for sql in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"):
            with store.db.write() as tx:
                tx.run(sql)
    assert len(list(store.audit_rows())) == 3


def test_an_admin_resolves_conflicts(store):
    store.configure(reviews_per_item=2)
    store.add(tiny_candidate(0))
    for name, verdict in (("ann", "approve"), ("bob", "reject")):
        store.decide(store.claim(name)["id"], name, verdict)
    with pytest.raises(QueueError):
        store.resolve(1 + 10_000, "boss", "approve")
    item_id = store.export_rows().__next__()["item_id"]
    assert store.resolve(item_id, "boss", "approve")["status"] == "approved"
    assert store.sample(item_id).review["resolved_by"] == "boss"
    with pytest.raises(QueueError) as err:
        store.resolve(item_id, "boss", "reject")
    assert err.value.code == "not_conflicted"


def test_tokens_are_stored_hashed_and_checked(store):
    token = store.add_reviewer("ann")
    assert store.authenticate(token).name == "ann"
    assert store.authenticate(token + "x") is None and store.authenticate("") is None
    with store.db.read() as tx:
        stored = [r[0] for r in tx.all("SELECT token_hash FROM reviewers")]
    assert token not in stored
    renewed = store.add_reviewer("ann", admin=True)
    assert store.authenticate(token) is None and store.authenticate(renewed).is_admin
    with pytest.raises(ValueError):
        store.add_reviewer("<script>")


def test_stats_report_agreement_between_reviewers(store):
    from datagen.review.stats import queue_stats

    store.configure(reviews_per_item=2)
    store.add_many([tiny_candidate(i) for i in range(5)])
    votes = {"ann": ["approve", "approve", "reject", "approve"], "bob": ["approve", "approve", "reject", "reject"]}
    for name, verdicts in votes.items():
        for verdict in verdicts:
            store.decide(store.claim(name)["id"], name, verdict)
    stats = queue_stats(store)
    assert stats["by_status"] == {"pending": 1, "approved": 2, "rejected": 1, "conflicted": 1}
    # 4 doubly-reviewed items, 3 unanimous; ratings 5 approve / 3 reject -> chance agreement 34/64.
    assert stats["agreement"] == {"items": 4, "unanimous": 0.75, "pairwise": 0.75,
                                  "kappa": round((0.75 - 34 / 64) / (1 - 34 / 64), 4)}
    table = {r["reviewer"]: r for r in stats["reviewers"]}
    assert table["ann"]["decisions"] == 4 and table["ann"]["approve_rate"] == 0.75
    assert table["bob"]["agreement"] == 0.75
    assert stats["conflicted"][0]["votes"] == [{"reviewer": "ann", "verdict": "approve"},
                                               {"reviewer": "bob", "verdict": "reject"}]


def test_reject_reasons_notes_and_struck_paraphrases_are_recorded(store):
    from .candidates import photo_candidate

    store.add_many([photo_candidate(i) for i in range(3)])
    first = store.claim("ann")
    assert first["paraphrases"] and len(first["paraphrases"]) == 3
    store.decide(first["id"], "ann", "approve", struck=[2, 0, 2])
    second = store.claim("ann")
    store.decide(second["id"], "ann", "reject", reason="artifact", note="  smear on the left  ")
    third = store.claim("ann")
    for bad in ({"verdict": "reject", "reason": "ugly"}, {"verdict": "approve", "reason": "artifact"},
                {"verdict": "approve", "struck": [3]}, {"verdict": "approve", "struck": [-1]},
                {"verdict": "approve", "struck": ["0"]}, {"verdict": "reject", "note": "x" * 501}):
        with pytest.raises(QueueError) as err:
            store.decide(third["id"], "ann", bad.pop("verdict"), **bad)
        assert err.value.code == "bad_decision"
    rows = {r["item_id"]: r["decisions"][0] for r in store.export_rows() if r["decisions"]}
    assert rows[first["id"]]["struck"] == [0, 2] and rows[first["id"]]["reason"] is None
    assert (rows[second["id"]]["reason"], rows[second["id"]]["note"]) == ("artifact", "smear on the left")
    assert [e["reason"] for e in store.history("ann")] == ["artifact", None]
    rejected = store.sample(second["id"]).review["decisions"][0]              # what a publish would write
    assert (rejected["reason"], rejected["note"], rejected["time"].endswith("Z")) == ("artifact", "smear on the left", True)
    approved = store.sample(first["id"])
    assert approved.paraphrases == [first["paraphrases"][1]]
    assert approved.review["struck_paraphrases"] == [first["paraphrases"][0], first["paraphrases"][2]]


def test_deciding_with_require_lease_needs_the_lease(store):
    now = [1000.0]
    store.clock = lambda: now[0]
    store.add_many([tiny_candidate(i) for i in range(3)])
    held = store.claim("ann")["id"]
    with pytest.raises(QueueError) as err:
        store.decide(held + 1, "ann", "approve", require_lease=True)      # never handed to ann
    assert err.value.code == "not_leased"
    with pytest.raises(QueueError) as err:
        store.decide(held, "bob", "approve", require_lease=True)          # ann holds it
    assert err.value.code == "lease_lost" and "held by another reviewer" in err.value.detail
    now[0] += store.lease_seconds + 1                                    # expired, nobody took it:
    assert store.decide(held, "ann", "approve", require_lease=True)["status"] == "approved"  # still ann's
    assert store.decide(held + 1, "cy", "reject")["status"] == "rejected"  # rules and scripts need none
