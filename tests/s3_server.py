"""A real S3 API for tests: moto's threaded server on 127.0.0.1 and a free port, one per test
session (the `s3_server` fixture), reached over HTTP by s3fs like any S3 endpoint; nothing
of the client is mocked. Buckets are made per test (`S3.bucket`)."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

_buckets = itertools.count()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3:
    """Where the server listens and the (made-up) credentials it takes."""

    endpoint: str
    key: str = "testing-key"
    secret: str = "testing-secret-value"
    region: str = "us-east-1"

    def storage_options(self) -> dict[str, Any]:
        """fsspec/s3fs options for this server, as a project's `storageOptions` says them."""
        return {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret,
                "client_kwargs": {"region_name": self.region}}

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem on this server (no listing cache shared with others)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False,
                                 **self.storage_options())

    def bucket(self, prefix: str = "test") -> str:
        """A new, empty bucket; its name."""
        import boto3

        name = f"{prefix}-{next(_buckets)}"
        # boto3, not s3fs.mkdir: s3fs sends a LocationConstraint, which us-east-1 refuses
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key,
                     aws_secret_access_key=self.secret, region_name=self.region,
                     ).create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@contextmanager
def s3_checking_credentials() -> Iterator[str]:
    """A second moto server, in its own process, that checks every request's credentials
    as S3 does (moto's IAM enforcement: no request without a known access key): its
    endpoint. Started per use (about a second)."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
