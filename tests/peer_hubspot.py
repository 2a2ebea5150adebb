"""HubSpot (`type: hubspot`) as a peer of the contract suite, through the validating fake of
tests/fake_hubspot.py: the suite's record set is the `contacts` object type, whose properties
`name`, `score` (a number) and `updated_at` (a datetime) the peer defines as custom properties
beside HubSpot's own `email` (unique for contacts). A refusal of negative scores is a
property validation rule (minimum 0), answered per record in a 207; transient faults are 429s
with Retry-After on the next batch writes, which the connector's client waits out itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sync_assets.connectors.hubspot.connector import close_clients, wire

from fake_hubspot import TOKEN, FakeHubSpot, Prop

PEER_NAME = "hubspot"

#: the suite's portable kinds as HubSpot property types
_TYPES = {"text": ("string", "text"), "integer": ("number", "number"),
          "float": ("number", "number"), "datetime": ("datetime", "date"),
          "date": ("date", "date"), "boolean": ("bool", "booleancheckbox")}


def _as_kind(text: str | None, kind: str) -> Any:
    if text is None:
        return None
    if kind == "integer":
        return int(float(text))
    if kind == "float":
        return float(text)
    if kind == "datetime":
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(
            tzinfo=None)
    if kind == "boolean":
        return text == "true"
    return text


class HubSpotPeer:
    transactional = False
    people = "contacts"
    #: the connector's client retries 429s itself, honouring Retry-After, before the engine
    #: sees a failure (test_hubspot_connector.py shows the waits)
    client_waits = True

    def __init__(self, fake: FakeHubSpot) -> None:
        self.name = PEER_NAME
        self.fake = fake
        self._kinds: dict[str, dict[str, str]] = {}

    def settings(self) -> dict[str, Any]:
        # no pacing in the suite: the fake has no ten-second limit (pacing is tested alone)
        return {"type": "hubspot", "token": TOKEN, "baseUrl": self.fake.url,
                "requestsPer10s": 100_000,
            "searchesPerSecond": 100_000}

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        own = {"email"} if resource == "contacts" else set()
        props = []
        for name, kind in fields.items():
            if name in own:
                continue
            kind_type, field_type = _TYPES[kind]
            props.append(Prop(name, kind_type, field_type,
                              unique=list(key) == [name],
                              minimum=0 if name == refuse_negative else None))
        self.fake.define(resource, props)
        self._kinds[resource] = dict(fields)
        self.fake.seed(resource, [{k: v for k, v in r.items() if k in fields} for r in rows])

    def rows(self, resource: str, fields: Sequence[str] = ("email", "name", "score"),
             key: str = "email") -> list[dict[str, Any]]:
        kinds = self._kinds.get(resource, {})
        out = [{f: _as_kind(r.properties.get(f), kinds.get(f, "text")) for f in fields}
               for r in self.fake.live(resource)]
        return sorted(out, key=lambda r: (r[key] is not None, r[key]))

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        for record in self.fake.live(resource):
            if all(record.properties.get(k) == wire(v) for k, v in key.items()):
                self.fake.change(resource, record.id, values)

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        """The next `count` batch writes are answered 429 with this Retry-After."""
        with self.fake.failing_writes(count, retry_after):
            yield


@contextmanager
def make_peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HubSpotPeer]:
    with FakeHubSpot() as fake:
        peer = HubSpotPeer(fake)
        peer.create(peer.people, {"email": "text", "name": "text", "score": "integer",
                                  "updated_at": "datetime"}, ["email"])
        try:
            yield peer
        finally:
            close_clients()
        fake.api.assert_clean()
