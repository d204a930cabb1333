"""Hostile and careless requests over real HTTP (issue 10, items 9-14): cross-origin changes,
oversized and deeply nested bodies, odd item ids, deciding without the lease, sign-in guessing."""
from __future__ import annotations

import httpx
import pytest

from datagen.review import open_store
from datagen.review.testing import ReviewServer
from .candidates import tiny_candidate


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("guards")
    db = str(root / "queue" / "queue.db")
    store = open_store(db)
    store.add_many([tiny_candidate(i) for i in range(6)])
    tokens = {name: store.add_reviewer(name) for name in ("ann", "bob")}
    store.close()
    server = ReviewServer(db, log_path=root / "server.log", sign_in_failures=10_000).start()
    yield {"url": server.url, "tokens": tokens, "db": db}
    server.stop()


def bearer(site, name="ann") -> dict:
    return {"Authorization": f"Bearer {site['tokens'][name]}"}


def decisions(db: str) -> int:
    store = open_store(db, create=False)
    try:
        return sum(len(row["decisions"]) for row in store.export_rows())
    finally:
        store.close()


def test_state_changes_need_the_same_origin_a_json_body_and_the_csrf_token(site):
    url = site["url"]
    login = httpx.post(url + "/api/login", json={"token": site["tokens"]["ann"]})
    csrf = login.json()["csrf"]
    other = url.rsplit(":", 1)[0] + ":1"                       # another port of the same host
    before = decisions(site["db"])
    with httpx.Client(base_url=url, cookies=login.cookies) as client:
        item = client.get("/api/next").json()["item"]["id"]
        path = f"/api/items/{item}/approve"
        refused = [
            ({"Origin": other, "X-CSRF-Token": csrf}, {"json": {}}, 403),            # cross-origin fetch
            ({"Sec-Fetch-Site": "same-site", "X-CSRF-Token": csrf}, {"json": {}}, 403),
            ({"X-CSRF-Token": csrf, "Content-Type": "text/plain"}, {"content": b"{}"}, 415),
            ({"X-CSRF-Token": csrf}, {"data": {"a": "1"}}, 415),                     # a form post
            ({"X-CSRF-Token": csrf}, {}, 415),                                       # no body at all
            ({}, {"json": {}}, 403),                                                 # cookie, no token
            ({"X-CSRF-Token": "0" * 64}, {"json": {}}, 403),
        ]
        for headers, body, status in refused:
            response = client.post(path, headers=headers, **body)
            assert response.status_code == status, (headers, body, response.text)
            assert response.json()["detail"].endswith(("page itself", "will do)", "review page"))
        assert decisions(site["db"]) == before
        assert client.post(path, headers={"X-CSRF-Token": csrf, "Origin": url, "Sec-Fetch-Site": "same-origin"},
                           json={}).json()["status"] == "approved"
    assert httpx.post(url + "/api/login", json={"token": "x"}, headers={"Origin": other}).status_code == 403


def test_bodies_are_capped_in_size_and_depth(site):
    url = site["url"]
    json_type = {"Content-Type": "application/json"}
    big = httpx.post(url + "/api/login", content=b"{" + b" " * 3_000_000 + b"}", headers=json_type)
    assert big.status_code == 413 and "limited to" in big.json()["detail"]

    def chunks():
        for _ in range(200):
            yield b" " * 10_000                                   # no Content-Length: chunked
    assert httpx.post(url + "/api/login", content=chunks(), headers=json_type).status_code == 413
    for depth in (100_000, 20_000, 9):
        body = b"[" * depth + b"]" * depth
        response = httpx.post(url + "/api/undo", content=b'{"a":' + body + b"}",
                              headers={**json_type, **bearer(site)})
        assert response.status_code == (413 if depth == 100_000 else 400), (depth, response.text)
    assert httpx.get(url + "/healthz").status_code == 200         # and the server is fine


@pytest.mark.parametrize("raw", ["²", "①", "١٢", "12a", "-1", "1" * 19, " 1", "1.0"])
def test_item_ids_are_ascii_digits_only(site, raw):
    for method in ("approve", "skip"):
        response = httpx.post(f"{site['url']}/api/items/{raw}/{method}", json={}, headers=bearer(site))
        assert response.status_code == 404, (raw, response.text)


def test_deciding_requires_the_lease_and_409s_say_what_happened(site):
    url = site["url"]
    ann = httpx.Client(base_url=url, headers=bearer(site, "ann"))
    bob = httpx.Client(base_url=url, headers=bearer(site, "bob"))
    held = ann.get("/api/next").json()["item"]["id"]
    response = bob.post(f"/api/items/{held}/reject", json={})
    assert response.status_code == 409 and response.json()["error"] == "lease_lost"
    assert "held by another reviewer" in response.json()["detail"]
    free = bob.get("/api/next").json()["item"]["id"] + 1             # an item nobody was handed
    response = bob.post(f"/api/items/{free}/approve", json={})
    assert response.status_code == 409 and response.json()["error"] == "not_leased"
    assert "not leased to you" in response.json()["detail"]
    assert ann.post(f"/api/items/{held}/approve", json={}).json()["status"] == "approved"
    ann.close(), bob.close()


def test_sign_in_failures_are_rate_limited_per_address(tmp_path):
    db = str(tmp_path / "queue" / "queue.db")
    store = open_store(db)
    token = store.add_reviewer("ann")
    store.close()
    with ReviewServer(db, log_path=tmp_path / "server.log", sign_in_failures=5) as server:
        for _ in range(5):
            assert httpx.post(server.url + "/api/login", json={"token": "guess"}).status_code == 401
        assert httpx.get(server.url + "/api/me", headers={"Authorization": "Bearer guess"}).status_code == 429
        limited = httpx.post(server.url + "/api/login", json={"token": token})   # even the right one
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "too many failed sign-ins" in limited.json()["detail"]
        assert httpx.get(server.url + "/api/me").status_code == 401              # no token: not a guess

