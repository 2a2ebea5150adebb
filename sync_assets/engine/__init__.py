"""The sync engine: plan and run syncs. It knows nothing of Dagster."""

from .plan import SyncPlan, plan
from .run import Progress, RunOptions, SyncRun, run, run_many

__all__ = ["Progress", "RunOptions", "SyncPlan", "SyncRun", "plan", "run", "run_many"]
