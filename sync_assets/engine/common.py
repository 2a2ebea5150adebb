"""What every run of a sync shares, one-way or two-way: options, progress, the failure that
ends a run, the base runner (config, result, samples), where state lives, whole reads."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import filters as objectql
from ..connectors.base import (
    BatchRefused,
    ConnectorError,
    Endpoint,
    ReadRequest,
    Record,
    TransientError,
)
from ..memory import release_freed_memory
from ..project import Project
from ..spec import DataSyncConfig, SyncExecutionResult
from ..state import StateStore, project_state_host
from .result import ResultBuilder

MAPPING_CODES = {"CAST_ERROR", "EXPRESSION_ERROR"}
T = TypeVar("T")


class RunCancelled(Exception):
    """The run was asked to stop; it stops at a batch boundary, with what it committed."""


class RunBusy(Exception):
    """Another run of the same sync holds its state: this one writes nothing."""


class RunFailed(Exception):
    """The run stops: nothing more is written. The message is shown to users as is."""

    def __init__(self, message: str, code: str = "SYNC_FAILED") -> None:
        self.code = code
        super().__init__(message)


@dataclass
class Progress:
    sync_name: str
    read: int
    total: int | None
    result: ResultBuilder


@dataclass
class RunOptions:
    full_refresh: bool = False
    dry_run: bool = False
    allow_mass_delete: bool = False
    #: mirror refuses to delete more than this share of the records it created, at once...
    mass_delete_ratio: float = 0.5
    #: ...unless it is no more than this many records
    mass_delete_min: int = 10
    progress: Callable[[Progress], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    run_id: str | None = None
    sample_size: int = 5
    #: (index, count): run only the records of one static shard of the sync
    shard: tuple[int, int] | None = None
    #: set (e.g. by a signal handler) to stop the run at the next batch boundary
    cancel: threading.Event | None = None
    #: seconds to wait for another run of the same sync to finish before giving up
    lock_timeout: float = 30.0


def open_state(project: Project, dest: Endpoint, name: str, *, compress: bool = False,
               create: bool = True) -> tuple[StateStore, Any, bool]:
    """(store, host, apart). State beside the data where the destination can host it and
    the project names no `state.url`; otherwise in the project's state database, written
    around the destination's acknowledgements (intent before the write, the rest after)."""
    settings = project.state
    dest_host = dest.state_host() if dest.capabilities.hosts_state else None
    if settings.url is None and dest_host is not None:
        return StateStore(name, dest_host.schema, compress=compress), dest_host, False
    host = project_state_host(project.root,
                              settings.url.get_secret_value() if settings.url else None,
                              settings.db_schema, create=create)
    return (StateStore(name, host.schema, compress=compress), host,
            not host.same_database(dest_host))


def read_all(endpoint: Endpoint, columns: list[str], filter: Any,
             order_by: list[str]) -> Iterator[Record]:
    """Every record (within a filter), in pages, the filter applied here where the system
    cannot: for two-way syncs, which compare both sides whole."""
    request = ReadRequest(columns=columns, order_by=order_by, batch_size=5000, filter=filter)
    local = filter is not None and not endpoint.capabilities.filter_pushdown
    for page in endpoint.read_batches(request):
        for row in page:
            if not local or objectql.evaluate_filter(filter, row):
                yield row


class RunBase:
    """What every run of a sync has: its config, options, result and samples, and the rule
    that an expected failure ends the run with a failed result rather than an exception."""

    def __init__(self, project: Project, sync_name: str, options: RunOptions | None = None):
        self.project = project
        self.definition = project.sync(sync_name)
        self.config: DataSyncConfig = self.definition.config
        self.options = options or RunOptions()
        self.result = ResultBuilder(
            run_id=self.options.run_id or uuid.uuid4().hex,
            sync_name=self.config.name,
            log_level=self.config.effective_audit.logLevel,
        )
        self.samples: dict[str, list[Record]] = {}
        self._held = contextlib.ExitStack()  # the run's lock, released when it ends

    def execute(self) -> SyncExecutionResult:
        release_freed_memory()
        try:
            with self._held:
                try:
                    self._execute()
                finally:
                    self._report_usage()
        except RunBusy as exc:
            self.result.error(str(exc), code="ALREADY_RUNNING")
            self.result.log("warn", str(exc))
            return self.result.finish("cancelled")
        except RunCancelled:
            self.result.log("warn", "cancelled at a batch boundary: every batch before it is "
                                    "committed, and the next run resumes here")
            return self.result.finish("cancelled")
        except (RunFailed, ConnectorError) as exc:
            code = exc.code if isinstance(exc, RunFailed) else "CONNECTOR_ERROR"
            self.result.error(str(exc), code=code)
            self.result.log("error", f"run failed: {exc}")
            return self.result.finish("failed")
        return self.result.finish("partial" if self.result.errored else "completed")

    def _execute(self) -> None:
        raise NotImplementedError

    def _report_usage(self) -> None:
        """The API calls each metered endpoint of the run made, and what its system said
        of its limits, into the result's logs (and `api_calls`, for Dagster's metadata)."""
        seen: set[int] = set()
        for name in ("source", "dest", "src", "dst"):
            endpoint = getattr(self, name, None)
            if endpoint is None or id(endpoint) in seen:
                continue
            seen.add(id(endpoint))
            usage = endpoint.usage()
            if usage is None:
                continue
            self.result.api_calls[endpoint.display] = usage.calls
            self.result.log("info", f"{endpoint.display}: {usage.calls} API "
                                    f"call{'' if usage.calls == 1 else 's'}")
            for note in usage.notes:
                self.result.log("info", f"{endpoint.display}: {note}")

    def take_lock(self, name: str) -> None:
        """One run of a sync at a time, whatever started it: hold the lock of its state for
        the whole run (a plan writes nothing and takes none)."""
        lock = getattr(self.state_host, "lock", None)
        if self.options.dry_run or lock is None:
            return
        timeout = self.options.lock_timeout
        if not self._held.enter_context(lock(name, timeout)):
            raise RunBusy(f"another run of {self.config.name} is in progress (waited "
                          f"{timeout:g} s); this run wrote nothing")

    def check_cancelled(self) -> None:
        """Between batches: stop here when the run was asked to."""
        if self.options.cancel is not None and self.options.cancel.is_set():
            raise RunCancelled()

    def write_with_policy(self, attempt: Callable[[], T], *, size: int,
                          one_by_one: Callable[[], None], refuse_one: Callable[[str], None],
                          failure: str) -> T | None:
        """Run one batch write under the sync's `retry` and `errorHandling.onSyncError`, the
        same way in every direction. A passing fault (TransientError) is retried whatever
        onSyncError says, waiting `retry.backoffMs` or the Retry-After the system asked for;
        a refused batch is retried (`retry`), written record by record so only the bad ones
        are errored (`skip`), or fails the run (`fail`, and any policy out of attempts).
        Returns what `attempt` returned, or None when the records were handled otherwise."""
        handling = self.config.effective_error_handling
        retry = self.config.effective_retry
        tries = 0
        while True:
            try:
                return attempt()
            except (BatchRefused, TransientError) as exc:  # refused, or a passing fault
                transient = isinstance(exc, TransientError)
                if (handling.onSyncError == "retry" or transient) and tries < retry.maxAttempts:
                    tries += 1
                    wait_ms = retry.backoffMs
                    if isinstance(exc, TransientError) and exc.retry_after is not None:
                        wait_ms = max(wait_ms, round(exc.retry_after * 1000))  # as asked
                    self.result.log("warn", f"batch failed ({exc}); retry {tries} of "
                                            f"{retry.maxAttempts} in {wait_ms} ms")
                    self.options.sleep(wait_ms / 1000)
                    continue
                if handling.onSyncError == "skip" and not transient:
                    if size > 1:
                        self.result.log("warn", f"batch failed ({exc}); writing its records "
                                                "one by one to skip the bad ones")
                        one_by_one()
                    else:
                        refuse_one(str(exc))
                    return None
                raise RunFailed(f"{failure}: {exc}", code="WRITE_ERROR") from None
