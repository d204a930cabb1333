"""Local Prefect stack in one command: server on 127.0.0.1, `process` work pool, deployments, worker.

    python scripts/stack.py up [--port 4200]   # server + pool + `prefect deploy --all` + worker
    python scripts/stack.py status
    python scripts/stack.py env                # export lines for your shell (PREFECT_API_URL ...)
    python scripts/stack.py down               # stop worker and server (SIGTERM, then SIGKILL)

Then, in a shell that ran ``eval "$(.venv/bin/python scripts/stack.py env)"``::

    prefect deployment run synth-understanding/demo --watch

State (SQLite database, logs, pid files) lives under ``$PREFECT_HOME`` (default ``.prefect/`` in
the project), so nothing leaks into ``~/.prefect``. Telemetry and analytics are off. Every process
is started in its own session, so stopping it also stops what it spawned (uvicorn workers, the
worker's flow-run subprocesses). The tests drive the same ``Stack`` class against a throwaway home.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POOL = "datagen"  # must match work_pool.name in prefect.yaml

# Offline, quiet and project-local: set for every process the stack starts.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc; empty where that is not available)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task_dir in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task_dir / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            out += kids
            todo += kids
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@dataclass
class Stack:
    """A Prefect server + worker pair whose files live in ``home`` (``$PREFECT_HOME``)."""

    home: Path = field(default_factory=lambda: Path(os.environ.get("PREFECT_HOME") or ROOT / ".prefect"))
    port: int = 4200
    pool: str = DEFAULT_POOL
    root: Path = ROOT  # where prefect.yaml is and where flow runs start
    python: str = sys.executable
    worker_query_seconds: float = 2.0  # Prefect's default is 10 s: slow for local use

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def state_dir(self) -> Path:
        return self.home / "stack"

    def env(self) -> dict[str, str]:
        """Environment for every process of the stack (and for clients that talk to it)."""
        env = dict(os.environ)
        env.update(OFFLINE_ENV)
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_WORKER_QUERY_SECONDS=str(self.worker_query_seconds),
            PREFECT_WORKER_PREFETCH_SECONDS="1",
        )
        return env

    # -- processes -------------------------------------------------------------------------
    def _prefect(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        cmd = [self.python, "-m", "prefect", "--no-prompt", *args]
        done = subprocess.run(cmd, cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"`prefect {' '.join(args)}` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def _spawn(self, name: str, args: list[str]) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.state_dir / f"{name}.log", "ab")
        proc = subprocess.Popen(
            [self.python, "-m", "prefect", *args],
            cwd=self.root, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # own process group: stop() takes its children too
        )
        log.close()
        (self.state_dir / f"{name}.pid").write_text(str(proc.pid))
        self._children[name] = proc
        return proc.pid

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self._children: dict[str, subprocess.Popen] = {}

    def pid(self, name: str) -> int | None:
        f = self.state_dir / f"{name}.pid"
        if not f.exists():
            return None
        pid = int(f.read_text().strip() or 0)
        return pid if pid and _alive(pid) else None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start_server(self, timeout: float = 90) -> None:
        if self.pid("server") and self.healthy():
            return
        self._spawn("server", ["server", "start", "--host", "127.0.0.1", "--port", str(self.port)])
        (self.state_dir / "stack.json").write_text(json.dumps({"port": self.port, "pool": self.pool}))
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.pid("server"):
                raise RuntimeError(f"the Prefect server exited; see {self.state_dir / 'server.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Prefect server was not healthy after {timeout:.0f} s; see {self.state_dir / 'server.log'}")
            time.sleep(0.25)

    def create_pool(self) -> None:
        # --overwrite makes `up` idempotent (a second `up` must not fail on "already exists").
        self._prefect("work-pool", "create", self.pool, "--type", "process", "--overwrite")

    def deploy(self) -> str:
        """``prefect deploy --all`` from prefect.yaml; returns its output."""
        return self._prefect("deploy", "--all").stdout

    def start_worker(self, name: str = "worker") -> int:
        if self.pid(name):
            return self.pid(name)  # type: ignore[return-value]
        return self._spawn(name, ["worker", "start", "--pool", self.pool, "--type", "process", "--name", f"datagen-{name}"])

    def stop(self, name: str, timeout: float = 20, sig: int = signal.SIGTERM) -> None:
        """Signal the process group of ``name``; SIGKILL whatever is left after ``timeout``.

        Processes that left the group (Prefect starts each flow run in a session of its own) are
        collected first and get the same treatment, so `down` leaves nothing running."""
        pid = self.pid(name)
        strays = _descendants(pid) if pid is not None else []
        if pid is not None:
            for s in (sig, signal.SIGKILL):
                try:
                    os.killpg(pid, s)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + timeout
                while _alive(pid) and time.monotonic() < deadline:
                    proc = self._children.get(name)
                    if proc is not None:
                        proc.poll()  # reap our own child so it does not linger as a zombie
                    time.sleep(0.1)
                if not _alive(pid):
                    break
        for s in (signal.SIGTERM, signal.SIGKILL):
            left = [p for p in strays if _alive(p)]
            _signal_all(left, s)
            deadline = time.monotonic() + timeout
            while any(_alive(p) for p in left) and time.monotonic() < deadline:
                time.sleep(0.1)
        (self.state_dir / f"{name}.pid").unlink(missing_ok=True)
        self._children.pop(name, None)

    def up(self, deploy: bool = True, worker: bool = True) -> None:
        self.start_server()
        self.create_pool()
        if deploy:
            self.deploy()
        if worker:
            self.start_worker()

    def down(self) -> None:
        # Worker first: its flow runs are told to stop while the server can still record it.
        self.stop("worker")
        self.stop("server")


def _saved(stack: Stack) -> Stack:
    """The stack described by ``stack.json`` (the port `up` used) when there is one."""
    f = stack.state_dir / "stack.json"
    if f.exists():
        saved = json.loads(f.read_text())
        stack.port, stack.pool = int(saved["port"]), saved["pool"]
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/stack.py", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--port", type=int, default=None, help="server port on 127.0.0.1 (default 4200, or the running stack's)")
    parser.add_argument("--pool", default=DEFAULT_POOL, help="process work pool name (must match prefect.yaml)")
    parser.add_argument("--no-deploy", action="store_true", help="up: skip `prefect deploy --all`")
    parser.add_argument("--no-worker", action="store_true", help="up: do not start a worker")
    args = parser.parse_args(argv)

    stack = _saved(Stack(pool=args.pool))
    if args.port is not None:
        stack.port = args.port
    if args.command == "up":
        stack.up(deploy=not args.no_deploy, worker=not args.no_worker)
        print(f"Prefect server  {stack.api_url.removesuffix('/api')}  (state in {stack.home})")
        print(f"work pool       {stack.pool}  worker pid {stack.pid('worker')}  logs in {stack.state_dir}")
        print("next:           eval \"$(.venv/bin/python scripts/stack.py env)\"")
        print("                prefect deployment run synth-understanding/demo --watch")
    elif args.command == "down":
        stack.down()
        print("stack stopped")
    elif args.command == "status":
        print(json.dumps({"api_url": stack.api_url, "healthy": stack.healthy(), "server_pid": stack.pid("server"),
                          "worker_pid": stack.pid("worker"), "pool": stack.pool, "home": str(stack.home)}, indent=2))
        return 0 if stack.healthy() else 1
    elif args.command == "env":
        for k in ("PREFECT_HOME", "PREFECT_API_URL", *OFFLINE_ENV):
            print(f"export {k}={stack.env()[k]}")
        # `prefect` (and `python`) from the project's venv, which a fresh shell does not have on PATH.
        print(f'export PATH="{Path(stack.python).parent}:$PATH"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
