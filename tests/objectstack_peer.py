"""The real ObjectStack server as a peer of the contract suite (tests/contract_peers.py), and the
fault-injecting HTTP proxy its tests put in front of the server.

`FaultProxy` forwards every request to the server unchanged, except that it can be told to
answer the next N writing requests (POST, PATCH, PUT, DELETE) itself with HTTP 429 and a
`Retry-After`, as a rate-limiting gateway does: nothing of those reaches the server.

`ObjectStackPeer` makes the suite's record sets out of objects the stack defines (objects
cannot be created through the data API): `create` checks the object has the suite's fields,
empties it and seeds the rows (the server stamps `updated_at`: values given for it are
ignored); `rows` reads them back in the suite's types (an integer `id` the suite chose is
stored as text, the form ObjectStack ids take, and read back as an integer). Objects for the
suite: `person` (email unique, name, score, status; a validation rule refuses a negative
score, so `refuse_negative="score"`).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from sync_assets.connectors.objectstack_rest import NotFoundError, ObjectStackClient
from sync_assets.connectors.objectstack_rest.connector import wire

from objectstack_harness import ObjectStackServer

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length",
                         "proxy-connection", "te", "trailer", "upgrade"})
#: fields each object of the stack refuses negative values of (its validation rules)
REFUSES_NEGATIVE: dict[str, frozenset[str]] = {"person": frozenset({"score"})}
SYSTEM_FIELDS = frozenset({"id", "created_at", "updated_at", "created_by", "updated_by",
                           "organization_id", "owner_id", "owning_business_unit_id"})


class FaultProxy:
    """A forwarding HTTP proxy on 127.0.0.1 in front of `upstream` that can fail writes."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.lock = threading.Lock()
        self.faults_left = 0
        self.retry_after: float | None = 0
        self.refused = 0  # requests answered 429 here
        self.writes = 0  # writing requests forwarded to the server
        self.forwarded = 0  # all requests forwarded
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._take_fault(self.command):
                    payload = json.dumps({"error": "rate limited (test proxy)",
                                          "code": "RATE_LIMITED"}).encode()
                    self.send_response(429)
                    if proxy.retry_after is not None:
                        self.send_header("Retry-After", f"{proxy.retry_after:g}")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status, headers, data = proxy._forward(self.command, self.path,
                                                       dict(self.headers), body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _take_fault(self, method: str) -> bool:
        with self.lock:
            if method in WRITE_METHODS and self.faults_left > 0:
                self.faults_left -= 1
                self.refused += 1
                return True
            self.forwarded += 1
            if method in WRITE_METHODS:
                self.writes += 1
            return False

    def _forward(self, method: str, path: str, headers: Mapping[str, str],
                 body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            conn.request(method, path, body=body or None, headers=sent)
            reply = conn.getresponse()
            return reply.status, reply.getheaders(), reply.read()
        finally:
            conn.close()

    @contextmanager
    def faults(self, count: int, retry_after: float | None = 0) -> Iterator[FaultProxy]:
        """The next `count` writing requests are answered 429 (with this Retry-After)."""
        with self.lock:
            self.faults_left, self.retry_after = count, retry_after
        try:
            yield self
        finally:
            with self.lock:
                self.faults_left = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _as_kind(value: Any, kind: str) -> Any:
    """A value read from the server in the suite's type."""
    if value is None:
        return None
    if kind in ("integer", "float"):
        try:
            return int(value) if kind == "integer" else float(value)
        except ValueError:  # an id the server chose
            return value
    if kind == "boolean":
        return bool(value)
    if kind == "datetime" and isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    if kind == "date" and isinstance(value, str):
        return date.fromisoformat(value[:10])
    if kind == "text":
        return str(value)
    return value


class ObjectStackPeer:
    """The contract suite's interface over objects of the real server (through FaultProxy)."""

    transactional = False
    #: the object the contract suite's tests call `people`
    people = "person"

    def __init__(self, server: ObjectStackServer, name: str = "objectstack") -> None:
        self.name = name
        self.server = server
        self.proxy = FaultProxy(server.url)
        self.client = ObjectStackClient(server.url, server.api_key)
        self._kinds: dict[str, dict[str, str]] = {}

    def settings(self) -> dict[str, Any]:
        """A connector instance of `type: objectstack`, reached through the fault proxy."""
        return {"type": "objectstack", "url": self.proxy.url, "apiKey": self.server.api_key}

    def _meta(self, resource: str) -> dict[str, dict[str, Any]]:
        try:
            return self.client.describe(resource)
        except NotFoundError:
            raise ValueError(
                f"ObjectStack has no object '{resource}': the contract suite can only use "
                "objects of tests/objectstack_server/objectstack.config.ts"
            ) from None

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        meta = self._meta(resource)
        missing = [f for f in fields if f not in meta and f != "id"]
        if missing:
            raise ValueError(f"object '{resource}' has no field {', '.join(missing)}; "
                             f"fields: id, {', '.join(meta)}")
        if refuse_negative and refuse_negative not in REFUSES_NEGATIVE.get(resource, ()):
            raise ValueError(f"object '{resource}' has no rule refusing a negative "
                             f"'{refuse_negative}'")
        self._kinds[resource] = dict(fields)
        self.server.reset(resource)
        records = []
        for row in rows:
            record = {k: wire(v) for k, v in row.items()
                      if k in fields and (k == "id" or k not in SYSTEM_FIELDS)}
            if record.get("id") is not None:
                record["id"] = str(record["id"])
            records.append(record)
        if records:
            failed = [r for r in self.client.batch(resource, "create", records) if not r.ok]
            if failed:
                raise ValueError(f"seeding '{resource}' failed: {failed[:3]}")

    def rows(self, resource: str, fields: Sequence[str] | None = None, key: str = "id"
             ) -> list[dict[str, Any]]:
        kinds = self._kinds.get(resource) or {f: "text" for f in self._meta(resource)}
        if fields is not None:
            kinds = {f: kinds.get(f, "text") for f in fields}
        records = self.client.list(resource, fields=list(kinds), limit=None)
        out = [{f: _as_kind(r.get(f), kind) for f, kind in kinds.items()} for r in records]
        return sorted(out, key=lambda r: (r.get(key) is not None, r.get(key)))

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        where = {k: (str(v) if k == "id" else wire(v)) for k, v in key.items()}
        found = self.client.list(resource, filter=where, fields=["id"], limit=None)
        data = {k: wire(v) for k, v in values.items() if k not in SYSTEM_FIELDS}
        results = self.client.batch(resource, "update", [{"id": r["id"], **data} for r in found])
        failed = [r for r in results if not r.ok]
        if failed:
            raise ValueError(f"changing {dict(key)} in '{resource}' failed: {failed[:3]}")

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` writing requests through the proxy are answered 429, with this
        Retry-After (None: none, so the client backs off on its own)."""
        with self.proxy.faults(count, retry_after):
            yield

    def close(self) -> None:
        self.proxy.close()
        self.client.close()
