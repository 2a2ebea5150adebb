"""The Google Sheets connector as a peer of the contract suite (tests/test_contract.py): a tab of
a spreadsheet in the validating fake (tests/fake_sheets.py), reached with a service account
whose key the test generates.

- The record set `people` is a tab; a missing one is created by the connector (addSheet and
  a header row), as the engine asks.
- A refusal is a strict data-validation rule (a number at least 0) on the column
  `refuse_negative` names: the API refuses a write breaking it, whole.
- Transient faults are 500 INTERNAL answers to the next writing calls, which the client does
  not resend (an append may have been applied): the engine retries the batch. Google sends
  no Retry-After with them, so the engine waits its own backoff (`retry_after` is not used).
- As a source the tab is read whole and sorted here (`orderedReads`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sync_assets.connectors.google_sheets.connector import cell

from contract_peers import FIELDS
from fake_sheets import FakeSheets

PEER_NAME = "google_sheets"
SPREADSHEET = "contract-spreadsheet"


class SheetsPeer:
    transactional = False
    people = "people"

    def __init__(self, fake: FakeSheets) -> None:
        self.name = PEER_NAME
        self.fake = fake
        fake.add_spreadsheet(SPREADSHEET)

    def settings(self) -> dict[str, Any]:
        return self.fake.settings(SPREADSHEET, orderedReads=True)

    def create(self, resource: str, fields: Mapping[str, str], key: Sequence[str],
               rows: Sequence[Mapping[str, Any]] = (), refuse_negative: str | None = None
               ) -> None:
        header = list(fields)
        tab = self.fake.add_tab(SPREADSHEET, resource, header,
                                [[cell(r.get(f)) for f in header] for r in rows])
        if refuse_negative:
            tab.at_least[header.index(refuse_negative)] = (0.0, 1)  # below the header

    def rows(self, resource: str, fields: Sequence[str] = FIELDS, key: str = "email"
             ) -> list[dict[str, Any]]:
        spreadsheet = self.fake.spreadsheets[SPREADSHEET]
        if spreadsheet.tab(resource) is None:
            return []
        return sorted(({f: r.get(f) for f in fields}
                       for r in self.fake.records(SPREADSHEET, resource)),
                      key=lambda r: r[key])

    def change(self, resource: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        with self.fake.lock:
            tab = self.fake.tab(SPREADSHEET, resource)
            header = tab.rows[0]
            for i, row in enumerate(tab.rows[1:], start=1):
                if all(header.index(k) < len(row) and row[header.index(k)] == cell(v)
                       for k, v in key.items()):
                    for name, value in values.items():
                        tab.put(i, header.index(name), cell(value))

    @contextmanager
    def faults(self, count: int, retry_after: float | None = None) -> Iterator[None]:
        self.fake.fail_writes(count)
        try:
            yield
        finally:
            with self.fake.lock:
                self.fake._write_faults.clear()


@contextmanager
def make_peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SheetsPeer]:
    with FakeSheets() as fake:
        yield SheetsPeer(fake)
        fake.assert_clean()
