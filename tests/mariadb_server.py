"""A throw-away MariaDB server on 127.0.0.1 for tests (Debian's mariadb-server, installed by
scripts/setup), one per test session: a data directory in /tmp, root without a password,
LOAD DATA LOCAL INFILE allowed. Use `SYNC_ASSETS_TEST_MYSQL_URL` to point the tests at an
existing server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return bool(os.environ.get("SYNC_ASSETS_TEST_MYSQL_URL")) or (
        shutil.which("mariadbd") is not None and shutil.which("mariadb-install-db") is not None)


@contextmanager
def mariadb_server() -> Iterator[str]:
    """Start a server, yield a URL of its (empty) database `sync_test`, stop and remove it."""
    if url := os.environ.get("SYNC_ASSETS_TEST_MYSQL_URL"):
        yield url
        return
    import pymysql

    base = Path(tempfile.mkdtemp(prefix="sync-assets-mariadb-"))
    data, port = base / "data", _free_port()
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", *user,
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True)
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={base}/sock",
         f"--port={port}", "--bind-address=127.0.0.1", *user, "--local-infile=1",
         "--skip-log-bin", "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=2",
         f"--log-error={base}/error.log", f"--pid-file={base}/pid"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = pymysql.connect(host="127.0.0.1", port=port, user="root")
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("MariaDB did not start: "
                                       + (base / "error.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE sync_test CHARACTER SET utf8mb4")
        conn.close()
        yield f"mysql+pymysql://root@127.0.0.1:{port}/sync_test?charset=utf8mb4"
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(base, ignore_errors=True)
