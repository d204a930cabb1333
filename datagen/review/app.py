"""The reviewers' web app (FastAPI). ``create_app(store)``; ``datagen review serve`` runs it.

Access rules (DESIGN.md: nothing shown to, or changed by, anyone not signed in):

* Every ``/api`` route except sign-in, every image and every page with data requires a reviewer
  token: the ``review_token`` cookie set by ``POST /api/login`` or an ``Authorization: Bearer``
  header (scripts, the bench). Without a valid one: 401 (pages redirect to ``/login``).
* ``/blobs/NAME`` serves only content-addressed queue images; any other name is a 404.
* Pages are static files filled in by script through ``textContent``, never HTML built from
  data, and a strict Content-Security-Policy forbids inline script.
* Every state-changing request passes ``guards``: same origin only, JSON bodies only, a per-session
  CSRF token with the cookie, bodies capped (413), nesting capped (400), ASCII item ids (404),
  and failed sign-ins rate-limited per address (429).
* Deciding requires the reviewer's lease on the item (409 ``lease_lost`` / ``not_leased``).

Handlers are plain ``def`` functions: Starlette runs them on its thread pool, and the store keeps
one database connection per thread.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from . import guards
from .auth import Reviewer
from .records import REJECT_REASONS
from .stats import queue_stats
from .store import QueueError, ReviewStore

STATIC = Path(__file__).parent / "static"
COOKIE = "review_token"
COOKIE_MAX_AGE = 30 * 24 * 3600
ACTIONS = ("approve", "reject", "skip")

_CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_HEADERS = [(b"content-security-policy", _CSP.encode()), (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]


class SecurityHeaders:
    """Pure ASGI middleware (cheaper per request than ``BaseHTTPMiddleware``): security headers on
    every response, and ``no-store`` on API answers so no shared cache keeps queue data."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        api = scope["path"].startswith("/api/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + _HEADERS
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _token(request: Request) -> tuple[str | None, bool]:
    """(token, whether it came from the cookie): the bearer header wins."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), False
    return request.cookies.get(COOKIE), True


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((STATIC / name).read_text(encoding="utf-8"), headers={"cache-control": "no-store"})


def create_app(store: ReviewStore, *, secure_cookie: bool = False, sign_in_failures: int = 20) -> FastAPI:
    """The review web app over ``store``. ``secure_cookie``: mark the sign-in cookie HTTPS-only
    (set it when a TLS proxy sits in front). ``sign_in_failures``: failed sign-ins per address
    and minute before that address is answered 429."""
    app = FastAPI(title="SmartEdit review", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(guards.BodyLimit)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.store = store
    limiter = guards.SignInLimiter(sign_in_failures)

    def reviewer_of(request: Request, token: str | None) -> Reviewer | None:
        """The token's reviewer; a presented token that fails counts against the address."""
        if not token:
            return None
        address = request.client.host if request.client else "?"
        limiter.check(address)
        reviewer = store.authenticate(token)
        if reviewer is None:
            limiter.failed(address)
        return reviewer

    # Handlers call this first, before looking at any parameter, so a request without a valid
    # token gets 401 whatever else is wrong with it (path parameters are parsed by hand for that).
    def signed_in(request: Request) -> Reviewer:
        reviewer = reviewer_of(request, _token(request)[0])
        if reviewer is None:
            raise HTTPException(401, "sign in with your reviewer token", headers={"WWW-Authenticate": "Bearer"})
        return reviewer

    def acting(request: Request) -> tuple[Reviewer, dict]:
        """``signed_in`` for a request that changes state: plus the origin, JSON and CSRF checks;
        returns the reviewer and the body's JSON object."""
        reviewer = signed_in(request)
        guards.check_same_origin(request)
        token, from_cookie = _token(request)
        if from_cookie and request.headers.get(guards.CSRF_HEADER) != guards.csrf_token(token):
            raise HTTPException(403, "missing or wrong X-CSRF-Token header; reload the review page")
        return reviewer, guards.json_body(request)

    @app.exception_handler(QueueError)
    def queue_error(_request: Request, exc: QueueError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    # -- pages --------------------------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/login", include_in_schema=False)
    def login_page() -> HTMLResponse:
        return _page("login.html")

    @app.get("/", include_in_schema=False)
    def review_page(request: Request) -> Response:
        if reviewer_of(request, _token(request)[0]) is None:
            return RedirectResponse("/login", status_code=303)
        return _page("review.html")

    @app.get("/stats", include_in_schema=False)
    def stats_page(request: Request) -> Response:
        if reviewer_of(request, _token(request)[0]) is None:
            return RedirectResponse("/login", status_code=303)
        return _page("stats.html")

    # -- session ------------------------------------------------------------------------------
    @app.post("/api/login")
    def login(request: Request) -> JSONResponse:
        guards.check_same_origin(request)
        token = guards.json_body(request).get("token")
        reviewer = reviewer_of(request, token if isinstance(token, str) else None)
        if reviewer is None:
            return JSONResponse({"error": "bad_token", "detail": "that token is not valid"}, status_code=401)
        response = JSONResponse({"name": reviewer.name, "admin": reviewer.is_admin,
                                 "csrf": guards.csrf_token(token)})
        response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True, samesite="strict",
                            secure=secure_cookie, path="/")
        return response

    @app.post("/api/logout")
    def logout(request: Request) -> JSONResponse:
        guards.check_same_origin(request)
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/api/me")
    def me(request: Request) -> JSONResponse:
        reviewer = signed_in(request)
        token, from_cookie = _token(request)
        return JSONResponse({"name": reviewer.name, "admin": reviewer.is_admin,
                             "lease_seconds": store.lease_seconds, "reject_reasons": REJECT_REASONS,
                             "csrf": guards.csrf_token(token) if from_cookie else None})

    # -- reviewing ----------------------------------------------------------------------------
    @app.get("/api/next")
    def next_item(request: Request) -> JSONResponse:
        """The item to review now (leased to the caller), or ``{"item": null}`` when none is left.
        Calling it again returns the same item and renews its lease (a heartbeat)."""
        reviewer = signed_in(request)
        return JSONResponse({"item": store.claim(reviewer.name)})

    @app.post("/api/items/{item_id}/{action}")
    def act(item_id: str, action: str, request: Request) -> JSONResponse:
        """approve / reject / skip, with an optional JSON body ``{"reason": KEY, "note": TEXT,
        "struck": [paraphrase index, ...]}``. Answered only after the change is committed to disk."""
        reviewer, body = acting(request)
        item_id = guards.item_id(item_id)
        if action not in ACTIONS:
            raise HTTPException(404, f"unknown action {action!r}; use one of {ACTIONS}")
        if action == "skip":
            store.skip(item_id, reviewer.name)
            return JSONResponse({"item_id": item_id, "skipped": True})
        return JSONResponse(store.decide(item_id, reviewer.name, action, reason=body.get("reason"),
                                         note=body.get("note"), struck=body.get("struck") or (),
                                         require_lease=True))

    @app.post("/api/undo")
    def undo(request: Request) -> JSONResponse:
        """Withdraw the caller's latest decision, or ``{"decision_id": N}`` from their history."""
        reviewer, body = acting(request)
        decision = body.get("decision_id")
        if decision is not None and type(decision) is not int:
            raise HTTPException(400, "decision_id must be a whole number from /api/history")
        return JSONResponse({"undone": store.undo(reviewer.name, decision)})

    @app.post("/api/skips/clear")
    def clear_skips(request: Request) -> JSONResponse:
        reviewer, _ = acting(request)
        return JSONResponse({"cleared": store.clear_skips(reviewer.name)})

    @app.post("/api/items/{item_id}/resolve/{verdict}")
    def resolve(item_id: str, verdict: str, request: Request) -> JSONResponse:
        reviewer, _ = acting(request)
        if not reviewer.is_admin:
            raise HTTPException(403, "only an admin reviewer resolves conflicts")
        return JSONResponse(store.resolve(guards.item_id(item_id), reviewer.name, verdict))

    # -- reading ------------------------------------------------------------------------------
    @app.get("/api/progress")
    def progress(request: Request) -> JSONResponse:
        reviewer = signed_in(request)
        return JSONResponse(store.progress(reviewer.name))

    @app.get("/api/history")
    def history(request: Request) -> JSONResponse:
        reviewer = signed_in(request)
        try:
            limit = max(1, min(int(request.query_params.get("limit", 10)), 100))
        except ValueError:
            raise HTTPException(422, "limit must be a whole number") from None
        return JSONResponse({"history": store.history(reviewer.name, limit)})

    @app.get("/api/stats")
    def stats(request: Request) -> JSONResponse:
        signed_in(request)
        return JSONResponse(queue_stats(store))

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown_api(rest: str, request: Request) -> JSONResponse:
        """Anything else under /api: still 401 before 404, so no route is probed without a token."""
        signed_in(request)
        raise HTTPException(404, f"no API route /api/{rest}")

    @app.get("/blobs/{name}")
    def blob(name: str, request: Request) -> FileResponse:
        signed_in(request)
        path = store.blobs.path(name)
        if path is None:
            raise HTTPException(404, "no such image in the review queue")
        # Content-addressed: a name always means the same bytes, so the browser may keep it.
        return FileResponse(path, media_type=store.blobs.media_type(name),
                            headers={"cache-control": "private, max-age=86400, immutable"})

    return app

