"""A throw-away PostgreSQL cluster on 127.0.0.1 for tests and benchmarks.

initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` system user on a
data directory that user owns. Use `SYNC_ASSETS_TEST_PG_URL` to point at an existing server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found: install PostgreSQL (Debian: postgresql)")


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster, yield a SQLAlchemy URL to an empty database, stop and remove it."""
    if url := os.environ.get("SYNC_ASSETS_TEST_PG_URL"):
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="sync-assets-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    run = lambda cmd: subprocess.run(  # noqa: E731
        _as_postgres(cmd), check=True, capture_output=True, text=True, cwd=base
    )
    try:
        run([_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync",
             "-E", "UTF8", "--locale=C"])
        run([_bin("pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
             f"-h 127.0.0.1 -p {port} -k {base} -F -c max_connections=200",
             "start"])
        run([_bin("psql") if shutil.which("psql") else "psql", "-h", "127.0.0.1", "-p",
             str(port), "-U", "postgres", "-c", "CREATE DATABASE sync_test"])
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/sync_test"
    finally:
        subprocess.run(
            _as_postgres([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True, cwd=base,
        )
        shutil.rmtree(base, ignore_errors=True)
