"""The web app over real HTTP (uvicorn in its own process): sign-in, 401s, 404s, headers."""
from __future__ import annotations

import socket

import httpx
import pytest

from datagen.review import open_store
from .candidates import photo_candidate, tiny_candidate

API_ROUTES = [("GET", "/api/me"), ("GET", "/api/next"), ("GET", "/api/progress"), ("GET", "/api/history"),
              ("GET", "/api/stats"), ("POST", "/api/items/1/approve"), ("POST", "/api/items/1/reject"),
              ("POST", "/api/items/1/skip"), ("POST", "/api/undo"), ("POST", "/api/skips/clear"),
              ("POST", "/api/items/1/resolve/approve"), ("POST", "/api/items/not-a-number/approve"),
              ("GET", "/api/history?limit=lots"), ("POST", "/api/login-not"), ("GET", "/api/")]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One server for the module: a queue with two candidates and a reviewer."""
    from datagen.review.testing import ReviewServer

    root = tmp_path_factory.mktemp("app")
    db = str(root / "queue" / "queue.db")
    store = open_store(db)
    store.add_many([photo_candidate(0), tiny_candidate(1)])
    token = store.add_reviewer("ann")
    blob = store.claim("nobody")["images"]["src"]
    store.close()
    # Every test here sends bad tokens on purpose: a high sign-in failure limit (test_guards checks it).
    server = ReviewServer(db, log_path=root / "server.log", sign_in_failures=10_000).start()
    yield {"url": server.url, "token": token, "blob": blob, "root": root}
    server.stop()


def raw_get(url: str, path: str, headers: dict) -> bytes:
    """Send ``path`` byte-for-byte (httpx would normalise ``..`` segments away)."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close"] + [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("method,path", API_ROUTES)
def test_every_api_call_needs_a_valid_token(site, method, path):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Cookie": "review_token=forged"}):
        response = httpx.request(method, site["url"] + path, headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
    assert httpx.get(site["url"] + "/blobs/" + site["blob"]).status_code == 401


def test_pages_with_data_redirect_to_sign_in(site):
    for path in ("/", "/stats"):
        response = httpx.get(site["url"] + path)
        assert response.status_code == 303 and response.headers["location"] == "/login"
    assert httpx.get(site["url"] + "/login").status_code == 200


def test_sign_in_sets_an_http_only_cookie_that_works(site):
    assert httpx.post(site["url"] + "/api/login", json={"token": "wrong"}).status_code == 401
    assert httpx.post(site["url"] + "/api/login", content=b"not json").status_code == 415
    assert httpx.post(site["url"] + "/api/login", content=b"not json",
                      headers={"Content-Type": "application/json"}).status_code == 400
    response = httpx.post(site["url"] + "/api/login", json={"token": site["token"]})
    assert response.status_code == 200 and response.json()["name"] == "ann"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    with httpx.Client(base_url=site["url"], cookies=response.cookies) as client:
        assert client.get("/api/me").json()["name"] == "ann"
        assert client.get("/").status_code == 200
        assert client.get("/blobs/" + site["blob"]).headers["content-type"] == "image/png"


def test_image_route_serves_only_queue_blobs(site):
    auth = {"Authorization": f"Bearer {site['token']}"}
    secret = site["root"] / "queue" / "queue.db"
    assert secret.exists()
    with httpx.Client(base_url=site["url"], headers=auth) as client:
        assert client.get("/blobs/" + site["blob"]).status_code == 200
        for name in ("../queue.db", "..%2Fqueue.db", "..%2F..%2Fqueue%2Fqueue.db", "%2Fetc%2Fpasswd",
                     "queue.db", "0" * 64 + ".png", site["blob"].replace(".png", ".jpg"),
                     site["blob"][:2] + "%2F" + site["blob"], site["blob"] + "%00.png"):
            assert client.get("/blobs/" + name).status_code == 404, name
    for path in ("/blobs/../queue/queue.db", "/blobs/..%2F..%2Fqueue%2Fqueue.db", "/static/../store.py",
                 "/static/..%2Fstore.py", "/static/%2e%2e/store.py", "/blobs/%2e%2e%2fqueue.db"):
        head = raw_get(site["url"], path, auth).split(b"\r\n", 1)[0]
        assert b" 404 " in head, (path, head)


def test_responses_carry_security_headers_and_escape_nothing_server_side(site):
    auth = {"Authorization": f"Bearer {site['token']}"}
    response = httpx.get(site["url"] + "/api/next", headers=auth)
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"


def test_decide_and_undo_over_http(site):
    auth = {"Authorization": f"Bearer {site['token']}"}
    with httpx.Client(base_url=site["url"], headers=auth) as client:
        item = client.get("/api/next").json()["item"]
        assert client.get("/api/next").json()["item"]["id"] == item["id"]
        assert client.post(f"/api/items/{item['id']}/approve", json={}).json()["status"] == "approved"
        assert client.post(f"/api/items/{item['id']}/reject", json={}).status_code == 409
        assert client.post(f"/api/items/{item['id']}/frobnicate", json={}).status_code == 404
        assert client.post("/api/items/999999/approve", json={}).status_code == 404
        assert client.post("/api/items/1/resolve/approve", json={}).status_code == 403   # ann is no admin
        assert client.get("/api/progress").json()["mine"] == 1
        assert client.post("/api/undo", json={}).json()["undone"]["item_id"] == item["id"]
        assert client.get("/api/next").json()["item"]["id"] == item["id"]
        assert client.get("/api/history").json()["history"][0]["undone"] is True
        stats = client.get("/api/stats").json()
        assert stats["total"] == 2 and stats["reviewers"][0]["undos"] == 1
