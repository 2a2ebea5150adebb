"""Run one sync of a project in its own process, for the SIGKILL tests of
tests/test_objectstack_connector.py (an ObjectStack server on one side).

    python tests/objectstack_crash_worker.py PROJECT_FILE SYNC_NAME

Prints `start` once the project is loaded, `batch <records read>` after each batch the engine
has written and recorded (through the engine's public `progress` option), and finally
`done <stats JSON>`. Every line is flushed at once, so the test can tell how far a run got
before it killed it. Nothing in the engine or the connector is patched.
"""

from __future__ import annotations

import json
import sys

from sync_assets import load_project
from sync_assets.engine import Progress, run


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: objectstack_crash_worker.py PROJECT_FILE SYNC_NAME\n")
        return 2
    project = load_project(argv[0])
    _say("start")

    def progress(p: Progress) -> None:
        _say(f"batch {p.read}")

    result = run(project, argv[1], progress=progress).to_spec()
    _say("done " + json.dumps({"status": result["status"], "stats": result["stats"],
                               "errors": result.get("errors", [])}))
    return 0 if result["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
