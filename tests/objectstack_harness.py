"""The real ObjectStack 17.4 server (from the npm registry) as a peer for tests.

- `ensure_installed()` runs `npm ci` for `tests/objectstack_server/` into a cache outside the
  repository, `${SYNC_ASSETS_CACHE:-~/.cache/sync_assets}/objectstack/<key>/`, where `<key>` is
  the first 16 hex digits of the SHA-256 of `package-lock.json` + `package.json` (the overrides
  and `allowScripts` live in the latter). A file lock keeps two processes from installing at
  once; a finished install leaves a `.installed` marker and is not repeated.
- `ObjectStackServer` compiles `objectstack.config.ts` once per content (`objectstack compile`,
  cached in `<install>/artifacts/`), then serves it with `objectstack serve --dev` on a free port,
  with the `sqlite-wasm` driver and a database file in a temporary directory, bound to
  127.0.0.1 only by the `--require` preload `listen_localhost.cjs`. It mints an API key (sign in
  as the seeded dev admin, `POST /api/v1/keys`).
- `objectstack_server` is a session-scoped pytest fixture: it skips when Node.js/npm is missing
  and fails when the install or the start fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVER_DIR = Path(__file__).resolve().parent / "objectstack_server"
PRELOAD = SERVER_DIR / "listen_localhost.cjs"
CONFIG = SERVER_DIR / "objectstack.config.ts"
INSTALL_FILES = ("package.json", "package-lock.json")
ADMIN_EMAIL = "admin@objectos.ai"
ADMIN_PASSWORD = "admin123"
START_TIMEOUT_S = 90.0
BATCH_LIMIT = 200


class ObjectStackUnavailable(RuntimeError):
    """Node.js or npm is not installed: the tests that need the server are skipped."""


def cache_root() -> Path:
    base = os.environ.get("SYNC_ASSETS_CACHE") or str(Path.home() / ".cache" / "sync_assets")
    return Path(base).expanduser() / "objectstack"


def install_key() -> str:
    digest = hashlib.sha256()
    for name in ("package-lock.json", "package.json"):
        digest.update((SERVER_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def _require_node() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise ObjectStackUnavailable(
            "the ObjectStack server needs Node.js 20+ and npm on PATH "
            f"(node: {node or 'missing'}, npm: {npm or 'missing'})"
        )
    return node, npm


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_installed() -> Path:
    """Install the pinned server into the cache (once per lockfile) and return its directory."""
    _, npm = _require_node()
    target = cache_root() / install_key()
    marker = target / ".installed"
    if marker.is_file():
        return target
    with _file_lock(cache_root() / f"{target.name}.lock"):
        if marker.is_file():
            return target
        target.mkdir(parents=True, exist_ok=True)
        for name in INSTALL_FILES:
            shutil.copyfile(SERVER_DIR / name, target / name)
        log = target / "npm-ci.log"
        with open(log, "w") as out:
            proc = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=warn"],
                cwd=target,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(
                f"`npm ci` in {target} failed (exit {proc.returncode}):\n{_tail(log)}"
            )
        marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return target


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _node_major(node: str) -> int:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    try:
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except ValueError:
        return 0


def ensure_artifact(install_dir: Path) -> Path:
    """Compile `objectstack.config.ts` once per config content; return the JSON artifact."""
    digest = hashlib.sha256(CONFIG.read_bytes()).hexdigest()[:16]
    artifact = install_dir / "artifacts" / f"{digest}.json"
    if artifact.is_file():
        return artifact
    node, _ = _require_node()
    with _file_lock(cache_root() / f"{install_dir.name}.lock"):
        if artifact.is_file():
            return artifact
        shutil.copyfile(CONFIG, install_dir / "objectstack.config.ts")
        partial = artifact.with_suffix(".partial.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [node, str(_cli(install_dir)), "compile", "objectstack.config.ts", "-o", str(partial)],
            cwd=install_dir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0 or not partial.is_file():
            raise RuntimeError(
                f"`objectstack compile` of {CONFIG} failed (exit {proc.returncode}):\n"
                + "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            )
        partial.replace(artifact)
    return artifact


def _cli(install_dir: Path) -> Path:
    return install_dir / "node_modules" / "@objectstack" / "cli" / "bin" / "run.js"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_sockets(port: int | None = None, *, pid: int | None = None) -> list[tuple[str, int]]:
    """(local address, port) of the TCP sockets in LISTEN state (from /proc/net/tcp{,6}).

    Only those on `port` when given, and only those the process `pid` holds open when given.
    """
    inodes: set[str] | None = None
    if pid is not None:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    found: list[tuple[str, int]] = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, state, inode = parts[1], parts[3], parts[9]
            address_hex, port_hex = local.split(":")
            local_port = int(port_hex, 16)
            if state != "0A" or (port is not None and local_port != port):
                continue
            if inodes is not None and inode not in inodes:
                continue
            found.append((_decode_address(address_hex, width), local_port))
    return found


def _decode_address(hex_address: str, width: int) -> str:
    raw = bytes.fromhex(hex_address)
    if width == 8:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6 stores the address as four little-endian 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


class ObjectStackServer:
    """One `objectstack serve --dev` process on 127.0.0.1 with a throw-away SQLite database."""

    def __init__(self, install_dir: Path | None = None, *, log_level: str = "warn") -> None:
        self._install_dir = install_dir
        self._log_level = log_level
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._port: int | None = None
        self._api_key: str | None = None
        self.startup_seconds: float | None = None

    # -- properties -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the ObjectStack server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        if self._api_key is None:
            raise RuntimeError("the ObjectStack server is not started")
        return self._api_key

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the ObjectStack server is not started")
        return self._proc.pid

    @property
    def log_path(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("the ObjectStack server is not started")
        return Path(self._tmp.name) / "server.log"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        if self._proc is not None:
            raise RuntimeError("the ObjectStack server is already started")
        node, _ = _require_node()
        if _node_major(node) < 20:
            raise ObjectStackUnavailable(f"the ObjectStack server needs Node.js 20+ ({node})")
        install_dir = self._install_dir or ensure_installed()
        artifact = ensure_artifact(install_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="objectstack-")
        work = Path(self._tmp.name)
        self._port = _free_port()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OS_", "NODE_OPTIONS", "BETTER_AUTH")) and key != "PORT"
        }
        env.update(
            OS_ARTIFACT_PATH=str(artifact),
            OS_DATABASE_DRIVER="sqlite-wasm",
            OS_DATABASE_URL=f"file:{work / 'data.sqlite'}",
            OS_HOME=str(work / "home"),
            OS_STORAGE_LOCAL_ROOT=str(work / "storage"),
            OS_ENVIRONMENT_ID="env_local",
            OS_SEED_ADMIN="1",
            OS_AUTH_SECRET="sync-assets-test-secret-not-for-production",
            OS_MCP_SERVER_ENABLED="false",
            OBJECTSTACK_PARENT_PID=str(os.getpid()),
            NO_COLOR="1",
            FORCE_COLOR="0",
        )
        command = [
            node, "--require", str(PRELOAD), str(_cli(install_dir)),
            "serve", "--dev", "--port", str(self._port), "--no-console", "--no-ui",
            "--log-level", self._log_level,
        ]  # fmt: skip
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                command,
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(started, timeout)
            self.startup_seconds = time.monotonic() - started
            self._api_key = self._mint_api_key()
        except BaseException:
            self.stop()  # the errors raised above already carry the server's log tail
            raise

    def _wait_ready(self, started: float, timeout: float) -> None:
        assert self._proc is not None
        deadline = started + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"the ObjectStack server exited with {code} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            try:
                reply = httpx.get(f"{self.url}/api/v1/health", timeout=2)
                if reply.status_code == 200 and reply.json().get("data", {}).get("status") == "ok":
                    return
                last = f"HTTP {reply.status_code}: {reply.text[:200]}"
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise RuntimeError(
            f"the ObjectStack server on {self.url} was not ready after {timeout:.0f} s "
            f"(last health check: {last}); log tail:\n{self.log_tail()}"
        )

    def _mint_api_key(self) -> str:
        # Better Auth checks the Origin of a sign-in against the server's own base URL, which is
        # http://localhost:PORT (127.0.0.1 is refused with 403 INVALID_ORIGIN).
        with httpx.Client(base_url=f"{self.url}/api/v1", timeout=30) as http:
            signed_in = http.post(
                "/auth/sign-in/email",
                json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                headers={"Origin": f"http://localhost:{self.port}"},
            )
            if signed_in.status_code != 200:
                raise RuntimeError(
                    f"sign-in as {ADMIN_EMAIL} failed: HTTP {signed_in.status_code} "
                    f"{signed_in.text[:300]}"
                )
            token = signed_in.json()["token"]
            minted = http.post(
                "/keys", json={"name": "sync-assets tests"},
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            if minted.status_code not in (200, 201):
                raise RuntimeError(
                    f"POST /api/v1/keys failed: HTTP {minted.status_code} {minted.text[:300]}"
                )
            return str(minted.json()["data"]["key"])

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _kill_group(proc)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._api_key = None

    def __enter__(self) -> ObjectStackServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests ----------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def reset(self, object_name: str) -> int:
        """Delete every record of `object_name` (deleteMany, 200 ids a call); return how many."""
        deleted = 0
        with httpx.Client(base_url=f"{self.url}/api/v1", headers=self._headers(), timeout=60) as h:
            while True:
                page = h.get(
                    f"/data/{object_name}",
                    params={"fields": "id", "limit": BATCH_LIMIT, "count": "false"},
                )
                page.raise_for_status()
                ids = [record["id"] for record in page.json()["records"]]
                if not ids:
                    return deleted
                reply = h.post(f"/data/{object_name}/deleteMany", json={"ids": ids})
                reply.raise_for_status()
                body: dict[str, Any] = reply.json()
                if body.get("failed"):
                    raise RuntimeError(
                        f"reset({object_name!r}): deleteMany failed: {json.dumps(body)[:500]}"
                    )
                deleted += len(ids)


def _kill_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # The group may hold children that outlive the leader: SIGKILL whatever is left of it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)


@pytest.fixture(scope="session")
def objectstack_server() -> Iterator[ObjectStackServer]:
    """The real ObjectStack server for the whole test session (skipped without Node.js/npm)."""
    try:
        install_dir = ensure_installed()
        server = ObjectStackServer(install_dir)
        server.start()
    except ObjectStackUnavailable as exc:
        pytest.skip(str(exc))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"the ObjectStack server could not be installed or started: {exc}",
                    pytrace=False)  # fmt: skip
    try:
        yield server
    finally:
        server.stop()
