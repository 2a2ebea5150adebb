"""Shared fixtures: a real PostgreSQL cluster for the session, and database URLs per backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pg import postgres_cluster
from sync_assets.connectors.sql import dispose_engines


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (tests/pg.py), one per test session."""
    with postgres_cluster() as url:
        yield url


_counter = iter(range(1_000_000))


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    name = f"t{next(_counter)}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(objectstack URL, warehouse URL) on one backend: two SQLite files, or two PG databases."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/objectstack.db", f"sqlite:///{tmp_path}/warehouse.db"
        dispose_engines()
    else:
        pg = request.getfixturevalue("pg_url")
        second = request.getfixturevalue("pg_url_2")
        yield pg, second


@pytest.fixture
def pg_url_2(pg_server_url: str) -> Iterator[str]:
    name = f"t{next(_counter)}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield pg_server_url.rsplit("/", 1)[0] + f"/{name}"
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
