"""A throw-away PostgreSQL cluster for the benchmark (the approach of tests/pg.py, tuned for
bulk loads).

initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` system user on a
data directory that user owns. The cluster listens on 127.0.0.1 only and is stopped and removed
when the context ends, whatever happened.

Settings (the same for every tool, reported in the results file): fsync off (-F, as the test
cluster), shared_buffers 512MB, max_wal_size 4GB and a 30 min checkpoint timeout (so a 1M-row
load is not dominated by checkpoints), timezone UTC.
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

SETTINGS = {
    "shared_buffers": "512MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "timezone": "UTC",
    "max_connections": "100",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries "
                       "(Debian: apt-get install postgresql)")


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster, yield a libpq URL of its `postgres` database, stop and remove it."""
    base = Path(tempfile.mkdtemp(prefix="sync-assets-bench-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    opts = " ".join(f"-c {k}={v}" for k, v in SETTINGS.items())

    def run(cmd: list[str]) -> None:
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True, cwd=base)

    try:
        run([pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync",
             "-E", "UTF8", "--locale=C"])
        run([pg_bin("pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "120",
             "-o", f"-h 127.0.0.1 -p {port} -k {base} -F {opts}", "start"])
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True, cwd=base,
        )
        shutil.rmtree(base, ignore_errors=True)
