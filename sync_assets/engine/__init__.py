"""The sync engine: plan and run syncs. It knows nothing of Dagster."""

from .plan import SyncPlan, plan
from .run import Progress, RunOptions, SyncRun, make_run, run, run_many

__all__ = ["Progress", "RunOptions", "SyncPlan", "SyncRun", "make_run", "plan", "run", "run_many"]
