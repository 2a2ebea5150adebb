"""The contract suite's generic HTTP/JSON peer: record sets of tests/fake_http.py (the
project's example JSON API, checked against tests/apis/example_http.openapi.json), through
OAuth2 client credentials, cursor pagination with a change-time parameter, lookups by `ids`,
a batch upsert endpoint of 100 records with per-record errors, and single-record deletes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fake_http import FakeHttp, plain

PEER_NAME = "http"
CLIENT_SECRET = "cs-contract-7c1f9e0b2a44"
PERSON = {"email": "text", "name": "text", "score": "integer", "updated_at": "datetime"}


def http_settings(url: str, secret: str = CLIENT_SECRET) -> dict[str, Any]:
    """The connector's settings for the fake's `{resource}` sets (tests reuse them)."""
    return {
        "type": "http", "baseUrl": url,
        "auth": {"type": "oauth2", "tokenUrl": "/oauth/token", "clientId": "app",
                 "clientSecret": secret},
        "key": ["email"], "fields": PERSON,
        "read": {"path": "/v1/cursor/{resource}", "recordPath": "data.items",
                 "pagination": {"type": "cursor", "pageSize": 500, "cursorPath": "next_cursor",
                                "cursorParam": "cursor", "limitParam": "limit"},
                 "incremental": {"param": "updated_since", "field": "updated_at"},
                 "lookup": {"param": "ids", "maxKeys": 100}},
        "write": {"upsert": {"method": "POST", "path": "/v1/records/{resource}/batch",
                             "batch": 100, "bodyPath": "records", "errorsPath": "errors"},
                  "delete": {"method": "DELETE", "path": "/v1/records/{resource}/{email}"}},
    }


class HttpPeer:
    transactional = False
    people = "people"
    cannot: dict[str, str] = {}
    client_waits = True  # connectors/web.py waits the Retry-After, not the engine

    def __init__(self, api: FakeHttp) -> None:
        self.api = api

    def settings(self) -> dict[str, Any]:
        return http_settings(self.api.url)

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        self.api.define(resource, fields, key[0], rows, refuse_negative)

    def rows(self, resource: str, fields: Sequence[str], key: str = "email"
             ) -> list[dict[str, Any]]:
        held = [{f: r.get(f) for f in fields} for r in self.api.records(resource)]
        return sorted(held, key=lambda r: r[key])

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        with self.api.lock:
            for row in self.api.sets[resource].rows.values():
                if all(row.get(k) == v for k, v in key.items()):
                    row.update({k: plain(v) for k, v in values.items()})

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` calls answer 429 (with this Retry-After)."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        self.api.fail_next(count, 429, {"code": "RATE_LIMITED", "message": "slow down"},
                           headers)
        try:
            yield
        finally:
            with self.api.lock:
                self.api._fail.clear()


@contextmanager
def make_peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HttpPeer]:
    with FakeHttp(client_secret=CLIENT_SECRET) as api:
        api.define("people", PERSON, "email")
        yield HttpPeer(api)
        api.assert_clean()
