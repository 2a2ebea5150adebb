"""Sync workers for the SIGKILL tests forked from a process that has imported the engine.

Each of those tests starts a worker a kill, a few hundred in a suite, and a fresh Python
spends most of a short run importing. This server imports the engine and every connector
once, then forks a worker per request: the child is a process of its own, with its own
pid, memory and file descriptors, killed by the test with SIGKILL as a spawned one would be.
Each request carries the argv, environment and working directory the test would have given
`subprocess.Popen`, and the worker's stdout and stderr as file descriptors (SCM_RIGHTS), so
the test reads the worker's lines from its own pipe and sees end of file when it dies.

    server = ForkServer.shared()
    proc = server.spawn([sys.executable, "tests/crash_worker.py", ...], stderr_file)
    # proc.stdout, proc.pid, proc.poll(), proc.wait(timeout), proc.returncode

`SYNC_ASSETS_TEST_SPAWN=1` makes `spawn` start each worker with `subprocess.Popen` instead.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import pkgutil
import runpy
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

_MESSAGE = 1 << 16


class Forked:
    """A forked worker, with what `kill_one_run` uses of `subprocess.Popen`."""

    def __init__(self, server: ForkServer, pid: int, stdout: IO[str]) -> None:
        self._server = server
        self.pid = pid
        self.stdout: IO[str] | None = stdout
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.ask({"op": "poll", "pid": self.pid})["code"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.002)
        return code


class ForkServer:
    """The client side: one server process for the test session, started on first use."""

    _shared: ForkServer | None = None
    _shared_lock = threading.Lock()

    @classmethod
    def shared(cls) -> ForkServer:
        with cls._shared_lock:
            if cls._shared is None or cls._shared._proc.poll() is not None:
                cls._shared = cls()
                atexit.register(cls._shared.close)
            return cls._shared

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._proc = subprocess.Popen([sys.executable, __file__, str(theirs.fileno())],
                                      pass_fds=[theirs.fileno()])
        theirs.close()
        self._sock = ours
        self._lock = threading.Lock()

    def ask(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self._lock:
            socket.send_fds(self._sock, [json.dumps(request).encode()], list(fds))
            reply = self._sock.recv(_MESSAGE)
        if not reply:
            raise RuntimeError("the fork server is gone")
        return json.loads(reply)

    def spawn(self, command: Sequence[str], stderr_file: Path) -> Forked:
        read, write = os.pipe()
        with stderr_file.open("w") as err:
            try:
                pid = self.ask({"op": "spawn", "argv": list(command), "cwd": os.getcwd(),
                                "env": dict(os.environ)}, [write, err.fileno()])["pid"]
            finally:
                os.close(write)
        return Forked(self, pid, os.fdopen(read, "r"))

    def close(self) -> None:
        self._sock.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def spawn(command: Sequence[str], stderr_file: Path) -> Forked | subprocess.Popen[str]:
    """A worker running `command`: forked where it is a Python script run by this Python,
    else (or with SYNC_ASSETS_TEST_SPAWN=1) spawned."""
    if (os.environ.get("SYNC_ASSETS_TEST_SPAWN") == "1" or len(command) < 2
            or command[0] != sys.executable):
        with stderr_file.open("w") as err:
            return subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=err,
                                    text=True, bufsize=1)
    return ForkServer.shared().spawn(command, stderr_file)


# -- the server ------------------------------------------------------------------------------
def _preload() -> None:
    """The engine and every connector, as a worker's run would import them."""
    import sync_assets.connectors as connectors
    import sync_assets.engine
    import sync_assets.project  # noqa: F401

    for info in pkgutil.walk_packages(connectors.__path__, "sync_assets.connectors."):
        importlib.import_module(info.name)


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """The forked worker: the request's stdio, environment and script; never returns."""
    code = 1
    try:
        out, err = fds
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        script, *args = request["argv"][1:]
        sys.argv = [script, *args]
        sys.path[0] = str(Path(script).resolve().parent)
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _serve(sock: socket.socket) -> None:
    codes: dict[int, int] = {}
    while True:
        message, fds, _flags, _addr = socket.recv_fds(sock, _MESSAGE, 2)
        if not message:
            return
        request = json.loads(message)
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                sock.close()
                _child(request, fds)
            for fd in fds:
                os.close(fd)
            reply: dict[str, Any] = {"pid": pid}
        else:  # poll
            pid = request["pid"]
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
            reply = {"code": codes.get(pid)}
        sock.send(json.dumps(reply).encode())


if __name__ == "__main__":
    _preload()
    _serve(socket.socket(fileno=int(sys.argv[1])))
