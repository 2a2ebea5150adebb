"""The values a run reads: Arrow tables handed over by the Dagster layer for one run.

`provide({"analytics/churn_scores": table})` is a context manager: inside it (in this thread
and context only) opening a `dagster_asset` source with that key reads `table`; when the
block ends the table is gone. Nothing is kept in a process-wide dictionary, so two runs in
one process (or threads) never see each other's values, and nothing outlives its run.
Open the source inside the block (the engine opens endpoints when a run starts, in the
calling thread; its worker threads only read endpoints already opened).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from .settings import asset_path

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_TABLES: ContextVar[Mapping[str, Any]] = ContextVar("sync_assets_asset_tables", default=_EMPTY)


@contextmanager
def provide(tables: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, the `dagster_asset` sources named by these asset key paths read
    these Arrow tables (outer blocks' tables stay visible unless replaced)."""
    merged = {**_TABLES.get(), **{asset_path(k): v for k, v in tables.items()}}
    token = _TABLES.set(MappingProxyType(merged))
    try:
        yield
    finally:
        _TABLES.reset(token)


def provided(resource: str) -> Any | None:
    """The table provided for this asset key path in the current context, or None."""
    return _TABLES.get().get(asset_path(resource))
