"""Real servers for the review tests and the bench: a throwaway PostgreSQL on loopback and the
review web app as a separate process (so a test can SIGKILL it and start it again).

Nothing here is mocked: ``temporary_postgres`` runs Debian's ``initdb`` / ``postgres`` binaries in
a temporary folder; ``ReviewServer`` runs ``python -m datagen review serve`` under uvicorn.
"""
from __future__ import annotations

import glob
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_postgres_bin() -> Path | None:
    """Folder holding ``initdb`` and ``postgres``: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _postgres_user() -> dict:
    """``initdb`` and ``postgres`` refuse to run as root: run them as the ``postgres`` account then."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root and there is no 'postgres' user to run PostgreSQL as") from exc
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


@contextmanager
def temporary_postgres(bin_dir: Path | None = None) -> Iterator[str]:
    """Start a private PostgreSQL server on 127.0.0.1 and yield its URL; stop and delete it after."""
    bin_dir = bin_dir or find_postgres_bin()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL binaries found (apt-get install -y postgresql)")
    as_user = _postgres_user()
    root = Path(tempfile.mkdtemp(prefix="review-pg-"))
    if as_user:
        os.chown(root, as_user["user"], as_user["group"])
    data, port = root / "data", free_port()
    log = open(root / "server.log", "wb")
    proc = None
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(data), "-U", "review", "--auth=trust",
                        "-E", "UTF8", "--no-sync", "--locale=C"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **as_user)
        proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(root), "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
            stdout=log, stderr=subprocess.STDOUT, **as_user)
        url = f"postgresql://review@127.0.0.1:{port}/postgres"
        _wait_for_postgres(url, proc, root / "server.log")
        yield url
    finally:
        if proc is not None and proc.poll() is None:
            # "Immediate" shutdown: no final checkpoint, which would only flush pages of a data
            # folder we are about to delete.
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_postgres(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections in {timeout:.0f}s")
            time.sleep(0.1)


class ReviewServer:
    """``python -m datagen review serve`` as a child process on a loopback port."""

    def __init__(self, db_url: str, *, port: int | None = None, lease_seconds: float = 300.0,
                 blob_dir: str | Path | None = None, log_path: Path | None = None,
                 sign_in_failures: int = 20):
        self.db_url = db_url
        self.sign_in_failures = sign_in_failures
        self.port = port or free_port()
        self.lease_seconds = lease_seconds
        self.blob_dir = blob_dir
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> "ReviewServer":
        cmd = [sys.executable, "-m", "datagen", "review", "serve", "--db", self.db_url,
               "--host", "127.0.0.1", "--port", str(self.port), "--lease-seconds", str(self.lease_seconds),
               "--sign-in-failures", str(self.sign_in_failures)]
        if self.blob_dir:
            cmd += ["--blobs", str(self.blob_dir)]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        if self.log_path:
            out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"review server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"review server did not answer on {self.url} in {timeout:.0f}s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, exactly like a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "ReviewServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class ReviewerClient:
    """One reviewer working through the queue over HTTP (``GET /api/next`` then approve / reject)
    until nothing is left for them, as the concurrency test and the bench drive it.

    A transport error (server killed, restarting) is retried: ``next`` simply again, a decision
    on the same item again (deciding is idempotent for the same verdict), so a decision counts
    as acknowledged only when a 200 came back. Records what it saw for the caller to check.
    Uses the standard library's ``http.client`` over one keep-alive connection: it costs the
    client a fraction of the CPU of a full-featured client, which matters when 20 clients and the
    server share two cores.
    """

    def __init__(self, base_url: str, name: str, token: str, *, choose=None, outage_s: float = 60.0):
        self.name = name
        self.choose = choose or (lambda item_id: "approve")
        self.outage_s = outage_s
        parts = urlsplit(base_url)
        self._address = (parts.hostname, parts.port)
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                         "Content-Type": "application/json"}
        self._conn: http.client.HTTPConnection | None = None
        self.claims: list[int] = []                  # item ids /api/next handed to us
        self.acks: list[tuple[int, str]] = []        # (item id, verdict) answered 200
        self.refused: list[tuple[int, int, str]] = []  # (item id, status, error code)
        self.transport_errors = 0
        self.latency: dict[str, list[float]] = {"next": [], "decide": []}

    def _send(self, method: str, path: str) -> tuple[int, dict]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(*self._address, timeout=30)
        self._conn.request(method, path, body=b"{}" if method == "POST" else None, headers=self._headers)
        response = self._conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")

    def _request(self, kind: str, method: str, path: str) -> tuple[int, dict]:
        deadline = time.monotonic() + self.outage_s
        while True:
            start = time.perf_counter()
            try:
                result = self._send(method, path)
            except (OSError, http.client.HTTPException):
                self.transport_errors += 1
                self._close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            self.latency[kind].append(time.perf_counter() - start)
            return result

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self) -> "ReviewerClient":
        try:
            while True:
                status, body = self._request("next", "GET", "/api/next")
                if status != 200:
                    raise RuntimeError(f"{self.name}: /api/next answered {status}: {body}")
                item = body["item"]
                if item is None:
                    return self
                self.claims.append(item["id"])
                verdict = self.choose(item["id"])
                status, body = self._request("decide", "POST", f"/api/items/{item['id']}/{verdict}")
                if status == 200:
                    self.acks.append((item["id"], verdict))
                else:
                    self.refused.append((item["id"], status, body.get("error")))
        finally:
            self._close()
