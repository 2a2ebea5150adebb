"""The Salesforce connector as a peer of the contract suite (tests/test_contract.py): a custom
sObject `Person__c` of the validating fake org (tests/fake_salesforce.py), reached with the
client-credentials grant.

- The match key (`email`) is a unique External ID field, as Salesforce upserts need.
- A refusal is a validation rule on the field `refuse_negative` names: the org refuses that
  record (FIELD_CUSTOM_VALIDATION_EXCEPTION) and writes the others of the call.
- Transient faults are 429 answers to the next writing calls, with the Retry-After asked:
  the shared client waits it and sends the call again (every write here is idempotent: upsert
  by External ID, update and delete by Id), so the engine sees no failure unless the client's
  retries run out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sync_assets.connectors.salesforce.connector import close_clients

from contract_peers import FIELDS
from fake_salesforce import FakeSalesforce

PEER_NAME = "salesforce"
CLIENT_SECRET = "contract-client-secret-5bd1"


class SalesforcePeer:
    transactional = False
    people = "Person__c"
    # the shared client waits out 429s (Retry-After) itself: the engine sleeps none
    # (tests/test_salesforce_connector.py shows the client's waits)
    client_waits = True

    def __init__(self, fake: FakeSalesforce) -> None:
        self.name = PEER_NAME
        self.fake = fake

    def settings(self) -> dict[str, Any]:
        return {"type": "salesforce", "auth": "client_credentials",
                "clientId": self.fake.client_id, "clientSecret": CLIENT_SECRET,
                "loginUrl": self.fake.url, "maxRetries": 2, "bulkPollSeconds": 0.01}

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        self.fake.define(resource, fields, key, rows, refuse_negative=refuse_negative)

    def rows(self, resource: str, fields: Sequence[str] = FIELDS, key: str = "email"
             ) -> list[dict[str, Any]]:
        if resource not in self.fake.objects:
            return []
        return self.fake.rows(resource, fields, key)

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        self.fake.change(resource, key, values)

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        self.fake.fail_writes(count, retry_after)
        try:
            yield
        finally:
            self.fake.fail_writes(0, None)


@contextmanager
def make_peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SalesforcePeer]:
    with FakeSalesforce(client_secret=CLIENT_SECRET, bulk_delay=0.01) as fake:
        peer = SalesforcePeer(fake)
        # the suite writes `people` without creating it first: the org has the object
        fake.define(peer.people, {"email": "text", "name": "text", "score": "integer",
                                  "updated_at": "datetime"}, ["email"])
        try:
            yield peer
        finally:
            close_clients()
        fake.api.assert_clean()
