"""Run one sync of a project in its own process, for tests/test_crash_safety.py to SIGKILL.

    python tests/crash_worker.py PROJECT_FILE SYNC_NAME [--kill-between-commits N]

Prints `start` once the project is loaded, `batch <records read>` after each batch the engine
has committed (through the engine's public `progress` option: no hook inside the engine), and
finally `done <stats JSON>`. Every line is flushed at once, so the test can tell how far a run
got before it killed it.

With `--kill-between-commits N` (for a project whose `state.url` keeps the state apart from the
destination) the worker SIGKILLs itself after the N-th commit of data and before the commit of
the state that goes with it: with state apart the engine commits a batch's data first and its
state second, so this lands exactly between the two. It listens to SQLAlchemy's public `commit`
event (fired as a transaction is about to commit); nothing in the engine is patched.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import sqlalchemy as sa

from sync_assets import load_project
from sync_assets.connectors.sql import engine_url
from sync_assets.engine import Progress, run


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def kill_between_commits(state_url: str, n: int) -> None:
    """SIGKILL this process when the state database is about to commit the n-th time right
    after a commit on another database (the destination's data)."""
    url = sa.make_url(engine_url(state_url))  # as the engine spells it (its driver named)
    data_committed = False
    pairs = 0

    def on_commit(conn: sa.Connection) -> None:  # runs before the database commits
        nonlocal data_committed, pairs
        if conn.engine.url != url:  # the source is only read: this is the destination
            data_committed = True
            return
        if data_committed:
            pairs += 1
            if pairs == n:
                os.kill(os.getpid(), signal.SIGKILL)
        data_committed = False

    sa.event.listen(sa.Engine, "commit", on_commit)


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--kill-between-commits"):
        sys.stderr.write(
            "usage: crash_worker.py PROJECT_FILE SYNC_NAME [--kill-between-commits N]\n"
        )
        return 2
    project_file, sync_name = argv[:2]
    project = load_project(project_file)
    if len(argv) == 4:
        if project.state.url is None:
            sys.stderr.write("--kill-between-commits needs a project with state.url\n")
            return 2
        kill_between_commits(project.state.url.get_secret_value(), int(argv[3]))
    _say("start")

    def progress(p: Progress) -> None:
        _say(f"batch {p.read}")

    result = run(project, sync_name, progress=progress).to_spec()
    _say("done " + json.dumps({"status": result["status"], "stats": result["stats"],
                               "errors": result.get("errors", [])}))
    return 0 if result["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
