"""The SQL connector: any database SQLAlchemy reaches (`type: sql`, and the ObjectStack
datastore), with its filter compilation, the Arrow lane and PostgreSQL's COPY paths."""

from . import arrow, pgcopy
from .state_host import SqlStateHost
from .table import (
    CURSOR_COLUMN,
    SqlTable,
    SqlTransaction,
    column_type,
    describe_db_error,
    dispose_engines,
    engine_url,
    generic_type,
    get_engine,
    kind_of,
    redact,
    safe_url,
    shard_of,
    split_resource,
)

__all__ = [
    "CURSOR_COLUMN",
    "SqlStateHost",
    "SqlTable",
    "SqlTransaction",
    "arrow",
    "column_type",
    "describe_db_error",
    "dispose_engines",
    "engine_url",
    "generic_type",
    "get_engine",
    "kind_of",
    "pgcopy",
    "redact",
    "safe_url",
    "shard_of",
    "split_resource",
]
