"""Shared fixtures: a real PostgreSQL cluster for the session, and database URLs per backend."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings

from sync_assets.connectors.sql import dispose_engines

import mariadb_server
from pg import postgres_cluster
from twoway_helpers import fresh_schema_urls, pg_database_pair


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """A throw-away MariaDB server on 127.0.0.1 (tests/mariadb.py), one per test session."""
    if not mariadb_server.available():
        pytest.skip("MariaDB is not installed (scripts/setup installs Debian's mariadb-server)")
    with mariadb_server.mariadb_server() as url:
        yield url


@pytest.fixture
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's MariaDB server."""
    name = f"t{next(_counter)}"
    admin = sa.create_engine(mysql_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield mysql_server_url.replace("/sync_test?", f"/{name}?")
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A throw-away PostgreSQL server on 127.0.0.1 (tests/pg.py), one per test session."""
    with postgres_cluster() as url:
        yield url


# Property tests draw the same examples on every run, so CI is repeatable; explore with
# `HYPOTHESIS_PROFILE=explore scripts/test -k ...` (random examples, more of them).
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

_counter = iter(range(1_000_000))


@contextmanager
def _fresh_database(server_url: str) -> Iterator[str]:
    name = f"t{next(_counter)}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    with _fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture
def pg_url_2(pg_server_url: str) -> Iterator[str]:
    """A second fresh database, for syncs between two PostgreSQL databases."""
    with _fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture
def pg_url_3(pg_server_url: str) -> Iterator[str]:
    """A third fresh database (Dagster's instance storage in the scale-out test)."""
    with _fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(objectstack URL, warehouse URL) on one backend: two SQLite files, or two PG databases."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/objectstack.db", f"sqlite:///{tmp_path}/warehouse.db"
        dispose_engines()
    else:
        yield request.getfixturevalue("pg_url"), request.getfixturevalue("pg_url_2")


@pytest.fixture(scope="module")
def pg_pair(pg_server_url: str) -> Iterator[tuple[str, str]]:
    """Two PostgreSQL databases shared by a test module (see `sides`)."""
    with pg_database_pair(pg_server_url) as pair:
        yield pair


@pytest.fixture(params=["sqlite", "postgres"])
def sides(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Like `backend` (side A and side B in two databases, SQLite or PostgreSQL), but on
    PostgreSQL each test gets a fresh schema in two databases shared by the module rather
    than two new databases: the two-way scenario table has 60 cases per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/objectstack.db", f"sqlite:///{tmp_path}/sheet.db"
    else:
        yield fresh_schema_urls(request.getfixturevalue("pg_pair"))
    dispose_engines()


@pytest.fixture
def lane_pages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rows of every PostgreSQL page the Arrow lane read as an Arrow table (not handed back
    to the record path because Arrow could not type it)."""
    from sync_assets.connectors.sql import arrow

    pages: list[int] = []
    read_page = arrow._read_page

    def counted(conn: Any, *args: Any, **kwargs: Any) -> Any:
        page = read_page(conn, *args, **kwargs)
        if page is not None and conn.dialect.name == "postgresql":
            pages.append(page.num_rows)
        return page

    monkeypatch.setattr(arrow, "_read_page", counted)
    return pages
