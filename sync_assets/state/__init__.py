"""Sync state behind its own interface: where it lives (a state host) and what it holds.

State lives in the destination's own database when the destination is transactional SQL, so
a batch's rows, their fingerprints and the cursor commit together; for every other system it
lives in the project's state database (`state.url`, by default an embedded SQLite file,
`.sync_assets/state.db` beside the project), written around the system's acknowledgements.
"""

from __future__ import annotations

from pathlib import Path

from ..connectors.sql import SqlStateHost
from .held import HeldFingerprints
from .store import FailedRecord, PairState, StateStore

DEFAULT_STATE_FILE = Path(".sync_assets") / "state.db"


def project_state_host(root: Path, url: str | None, schema: str | None, *,
                       create: bool = True) -> SqlStateHost:
    """The project's state database: `state.url`, or the embedded file beside the project
    (its folder made unless `create` is false: a plan leaves no trace)."""
    if url is None:
        path = root / DEFAULT_STATE_FILE
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
    return SqlStateHost(url, schema)


__all__ = ["DEFAULT_STATE_FILE", "FailedRecord", "HeldFingerprints", "PairState", "SqlStateHost",
           "StateStore",
           "project_state_host"]
