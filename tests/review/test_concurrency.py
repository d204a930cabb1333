"""20 reviewers over HTTP on 2,000 items, with the server SIGKILLed mid-run and restarted.

Checked afterwards, from what the clients saw and what the database holds:
* zero double-claims: no item was ever handed by ``/api/next`` to two reviewers;
* zero lost decisions: every decision a client got a 200 for is in the database, exactly as sent;
* every item decided exactly once, its status matching its one verdict, one audit entry each.
Runs on SQLite and on a real PostgreSQL server.
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict

from datagen.review import open_store
from datagen.review.testing import ReviewerClient
from .candidates import tiny_candidate

ITEMS = 2000
CLIENTS = 20
KILL_AFTER = 700          # acknowledged decisions before the server is killed


def verdict_for(item_id: int) -> str:
    return "reject" if item_id % 3 == 0 else "approve"


def run_clients(clients: list[ReviewerClient]) -> tuple[list[threading.Thread], list[BaseException]]:
    errors: list[BaseException] = []

    def work(client: ReviewerClient) -> None:
        try:
            client.run()
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    return threads, errors


def test_concurrent_reviewers_survive_a_server_crash(backend_url, tmp_path, served):
    store = open_store(backend_url, blob_dir=tmp_path / "blobs")
    assert store.add_many([tiny_candidate(i) for i in range(ITEMS)]) == ITEMS
    tokens = {f"r{i:02d}": store.add_reviewer(f"r{i:02d}") for i in range(CLIENTS)}
    server = served(backend_url)
    clients = [ReviewerClient(server.url, name, token, choose=verdict_for) for name, token in tokens.items()]
    threads, errors = run_clients(clients)

    deadline = time.monotonic() + 60
    while sum(len(c.acks) for c in clients) < KILL_AFTER:
        assert not errors, errors
        assert not any(c.refused for c in clients), [c.refused[:3] for c in clients if c.refused]
        assert time.monotonic() < deadline, "clients stalled before the crash point"
        time.sleep(0.005)
    server.kill()                                   # SIGKILL, mid-request for most clients
    acked_before_crash = {(item, c.name, v) for c in clients for item, v in list(c.acks)}
    server.start()                                  # same port; clients retry until it answers
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert sum(c.transport_errors for c in clients) > 0, "the crash should have hit clients mid-run"

    holders = defaultdict(set)
    for c in clients:
        for item in c.claims:
            holders[item].add(c.name)
    assert len(holders) == ITEMS
    double_claims = {item: names for item, names in holders.items() if len(names) > 1}
    assert double_claims == {}

    acked = {(item, c.name, v) for c in clients for item, v in c.acks}
    assert [r for c in clients for r in c.refused] == []
    assert len(acked) == ITEMS and len({item for item, _, _ in acked}) == ITEMS
    assert len(acked_before_crash) >= KILL_AFTER

    rows = list(store.export_rows())
    stored = {(r["item_id"], d["reviewer"], d["verdict"]) for r in rows for d in r["decisions"]}
    assert acked_before_crash <= stored
    assert stored == acked                          # nothing lost, nothing extra
    for r in rows:
        assert len(r["decisions"]) == 1
        assert r["status"] == ("approved" if r["decisions"][0]["verdict"] == "approve" else "rejected")
    decisions_logged = [a for a in store.audit_rows() if a["action"] in ("approve", "reject")]
    assert len(decisions_logged) == ITEMS
    store.close()
