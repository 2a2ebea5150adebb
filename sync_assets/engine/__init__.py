"""The sync engine: plan and run syncs. It knows nothing of Dagster nor of a concrete
connector: every system is reached through the connector contract (connectors/base.py)."""

from .common import Progress, RunOptions
from .oneway import SyncRun
from .plan import SyncPlan, plan
from .runner import make_run, run, run_many

__all__ = ["Progress", "RunOptions", "SyncPlan", "SyncRun", "make_run", "plan", "run", "run_many"]
