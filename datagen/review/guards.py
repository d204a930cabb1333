"""What the review app checks before it acts on a request (issue: CSRF, oversized bodies, odd
ids, sign-in guessing). Each check answers with one status and one sentence:

* ``BodyLimit``: request bodies over ``MAX_BODY`` bytes get 413 before any handler reads them
  (the body is read here, once, and kept in ``scope[BODY]``).
* ``check_same_origin``: a state-changing request must come from this site's own pages (the
  ``Origin`` and ``Sec-Fetch-Site`` headers browsers send) with an ``application/json`` body; a
  page on another port of the same host is another origin. 403 / 415.
* ``csrf_token``: the per-session token a cookie-authenticated page sends in ``X-CSRF-Token``.
* ``json_body``: the JSON object in the body, at most ``MAX_DEPTH`` levels deep. 400.
* ``item_id``: ASCII digits only (``str.isdigit`` also takes ``²``, ``①``, ``١٢``). 404.
* ``SignInLimiter``: after ``limit`` failed sign-ins from one address within a minute, that
  address gets 429 for anything that presents a token until the minute has passed.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse

MAX_BODY = 64 * 1024
MAX_DEPTH = 8
MAX_TRACKED = 10_000  # client addresses with recent sign-in failures kept in memory
BODY = "review.body"
CSRF_HEADER = "x-csrf-token"
_ITEM_ID = re.compile(r"[0-9]{1,18}")
_CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


class BodyLimit:
    """Pure ASGI middleware: read the body of a state-changing request, at most ``MAX_BODY``
    bytes, else answer 413 without reading on."""

    def __init__(self, app, max_body: int = MAX_BODY):
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in _CHANGES:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body:
            return await self._too_large(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return await self._too_large(scope, receive, send)
            if not message.get("more_body"):
                break
        scope[BODY] = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": scope[BODY], "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        response = JSONResponse({"error": "too_large", "detail": f"request bodies are limited to {self.max_body} bytes"},
                                status_code=413, headers={"connection": "close"})
        await response(scope, receive, send)


def check_same_origin(request: Request) -> None:
    """403 unless a browser says the request comes from this origin; 415 unless the body is JSON.

    Scripts (no ``Origin``, no ``Sec-Fetch-Site``) pass the origin check: they carry a bearer
    token, which no other site's page can send for them.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site}); use the review page itself")
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        raise HTTPException(403, f"request from another origin ({origin}) refused; use the review page itself")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(415, "send a JSON body with Content-Type: application/json (an empty object will do)")


def csrf_token(token: str) -> str:
    """The anti-CSRF token of the session signed in with ``token`` (useless without it)."""
    return hashlib.sha256(b"review-csrf\0" + token.encode("utf-8")).hexdigest()


def json_body(request: Request) -> dict:
    """The request's JSON object (``{}`` for an empty body); 400 for anything else."""
    raw = request.scope.get(BODY, b"")
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except RecursionError:
        raise HTTPException(400, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        raise HTTPException(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise HTTPException(400, "the body must be a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise HTTPException(400, f"JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def item_id(text: str) -> int:
    if not _ITEM_ID.fullmatch(text):
        raise HTTPException(404, "no such item (item ids are whole numbers)")
    return int(text)


class SignInLimiter:
    """Failed sign-ins per client address over the last ``window_s`` seconds."""

    def __init__(self, limit: int = 20, window_s: float = 60.0):
        self.limit, self.window_s = int(limit), float(window_s)
        self._failures: dict[str, deque] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """429 while ``address`` is over the limit."""
        now = time.monotonic()
        with self._lock:
            times = self._failures.get(address)
            while times and times[0] < now - self.window_s:
                times.popleft()
            if times is not None and not times:
                del self._failures[address]
            if times and len(times) >= self.limit:
                wait = int(times[0] + self.window_s - now) + 1
                raise HTTPException(429, f"too many failed sign-ins from your address; try again in {wait} s",
                                    headers={"Retry-After": str(wait)})

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= MAX_TRACKED and address not in self._failures:
                # Many addresses at once: forget those whose failures are all older than the window.
                self._failures = {a: t for a, t in self._failures.items() if t[-1] >= now - self.window_s}
            self._failures.setdefault(address, deque()).append(now)
