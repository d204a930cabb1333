"""Fixtures for the review tests: queues on SQLite and on a real PostgreSQL server, and the
review web app as a real uvicorn process."""
from __future__ import annotations

import itertools

import pytest

from datagen.review import open_store
from datagen.review.testing import ReviewServer, find_postgres_bin, temporary_postgres

_schema_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    """URL of a throwaway PostgreSQL server on 127.0.0.1 for the whole session."""
    if find_postgres_bin() is None:
        pytest.skip("no PostgreSQL binaries (initdb/postgres) on PATH or under /usr/lib/postgresql; "
                    "install them with scripts/install_system_deps.sh")
    with temporary_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty schema on the session's server, selected through the URL's search_path
    (cheaper than a database per test; tests never see each other's queues)."""
    import psycopg

    name = f"review_test_{next(_schema_names)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{postgres_server}?options=-csearch_path%3D{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_url(request, tmp_path):
    """The queue URL for each backend: a SQLite file, then a Postgres database."""
    if request.param == "sqlite":
        return str(tmp_path / "queue" / "queue.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(backend_url, tmp_path):
    """An empty queue on each backend, with a short lease so expiry can be tested quickly."""
    s = open_store(backend_url, blob_dir=tmp_path / "blobs", lease_seconds=30)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path):
    s = open_store(tmp_path / "queue" / "queue.db")
    yield s
    s.close()


@pytest.fixture
def served(tmp_path):
    """Start ``review serve`` on a queue and stop it after the test: ``served(db_url) -> server``."""
    servers = []

    def start(db_url: str, **kwargs) -> ReviewServer:
        server = ReviewServer(db_url, log_path=tmp_path / f"server-{len(servers)}.log", **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
