"""A throw-away PostgreSQL cluster on 127.0.0.1 for tests and benchmarks.

initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` system user on a
data directory that user owns. Use `SYNC_ASSETS_TEST_PG_URL` to point the tests at an existing
server. The benchmark (bench/pgcluster.py) starts its clusters here too, with its own settings.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
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


def pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found: install PostgreSQL's server binaries "
                       "(Debian: apt-get install postgresql)")


_DATA_DIRS: dict[int, Path] = {}  # port -> data directory of the clusters started here


def restart(url: str) -> None:
    """Restart the cluster serving `url` (started here), as an operator would: every
    connection to it is cut, and it is back when this returns."""
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    data = _DATA_DIRS[port]
    subprocess.run(_as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                                 "-t", "60", "-l", str(data.parent / "log"), "restart"]),
                   check=True, capture_output=True, cwd=data.parent)


@contextmanager
def postgres_cluster(
    settings: Mapping[str, str] | None = None,
    database: str | None = "sync_test",
    scheme: str = "postgresql",
) -> Iterator[str]:
    """Start a cluster, yield a URL of `database` (created empty; None: the `postgres`
    database), stop and remove the cluster, whatever happened."""
    if (url := os.environ.get("SYNC_ASSETS_TEST_PG_URL")) and database == "sync_test":
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="sync-assets-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    options = {"max_connections": "200", **(settings or {})}
    opts = " ".join(f"-c {k}={v}" for k, v in options.items())

    def run(cmd: list[str]) -> None:
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True, text=True, cwd=base)

    try:
        run([pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync",
             "-E", "UTF8", "--locale=C"])
        run([pg_bin("pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-t", "120",
             "-o", f"-h 127.0.0.1 -p {port} -k {base} -F {opts}", "start"])
        _DATA_DIRS[port] = data
        if database is not None:
            run([pg_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                 "-c", f'CREATE DATABASE "{database}"'])
        yield f"{scheme}://postgres@127.0.0.1:{port}/{database or 'postgres'}"
    finally:
        subprocess.run(
            _as_postgres([pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True, cwd=base,
        )
        shutil.rmtree(base, ignore_errors=True)
