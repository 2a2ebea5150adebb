"""Killing a sync worker at a random point, for the SIGKILL tests (test_crash_safety.py over
SQL, test_objectstack_connector.py over the ObjectStack server).

A worker prints `start`, `batch <n>` after each committed batch and `done ...` at the end
(tests/crash_worker.py). `kill_one_run` learns from those reports how long a run takes to its
first batch, between batches and after the last one (`Pace`), and SIGKILLs the worker a random
fraction into the batch after a random number of committed ones. Workers are forked from a
process that has imported the engine (`fork_server.py`): a kill costs no Python start-up.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

from fork_server import spawn

LINE_TIMEOUT = 120.0  # seconds a worker may go without reporting before the test gives up


@dataclass
class Pace:
    """Seconds from start to the first batch, from one batch to the next, from the last batch
    to the end: a first guess, then what recent workers reported."""

    first: list[float] = field(default_factory=lambda: [0.15])
    step: list[float] = field(default_factory=lambda: [0.02])
    tail: list[float] = field(default_factory=lambda: [0.3])
    window: int = 30  # how many recent reports the typical value is taken from

    def typical(self, values: list[float]) -> float:
        # the lower quartile, not the median: a kill aimed a fraction into a span of the
        # median length lands after a shorter span (a run's last, partial batch; a quick
        # finish) in half the cases, and then after the worker has ended, testing nothing
        recent = sorted(values[-self.window:])
        return recent[len(recent) // 4]


def _reader(stream: Any, lines: queue.Queue[tuple[float, str | None]]) -> None:
    for line in stream:
        lines.put((time.monotonic(), line.rstrip("\n")))
    lines.put((time.monotonic(), None))


def kill_one_run(command: Sequence[str], rng: Random, batches: int, tail: bool, pace: Pace,
                 stderr_file: Path) -> tuple[str, int]:
    """Start the worker `command`, SIGKILL it at a random point; (where it landed, batches
    done). The point: after a random number of committed batches (0 .. batches-1, or up to
    `batches` when there is a tail worth hitting, like the mirror phase), plus a random
    fraction of the time a batch takes."""
    target = rng.randrange(batches + (1 if tail else 0))
    fraction = rng.random()
    proc = spawn(command, stderr_file)  # forked from a process that has imported the engine
    lines: queue.Queue[tuple[float, str | None]] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    seen: list[str] = []
    started = last = deadline = None
    done = 0
    try:
        while True:
            if deadline is None and started is not None and done >= target:
                # the kill point: a random fraction into the batch after the target-th one, or
                # into what follows the last batch
                hint = pace.first if done == 0 else pace.tail if done >= batches else pace.step
                deadline = last + fraction * pace.typical(hint)
            try:
                wait = LINE_TIMEOUT if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    break
                at, line = lines.get(timeout=wait)
            except queue.Empty:
                if deadline is None:
                    raise AssertionError(f"worker silent for {LINE_TIMEOUT} s: {seen}") from None
                break
            if line is None:
                break
            seen.append(line)
            if line == "start":
                started = last = at
            elif line.startswith("batch ") and last is not None:
                (pace.first if done == 0 else pace.step).append(at - last)
                last = at
                done += 1
            elif line.startswith("done ") and last is not None and done:
                pace.tail.append(at - last)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=LINE_TIMEOUT)
    except BaseException:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    finally:
        if proc.stdout:
            proc.stdout.close()
    if proc.returncode == -signal.SIGKILL:
        if started is None:
            return "before start", done
        # inside a batch (reading, writing or committing it), or after the last one: in the
        # mirror phase of `sync`, or finishing
        return ("mid-run" if done < batches else "after last batch"), done
    output = "\n".join(seen)
    assert proc.returncode == 0, (
        f"worker exited with {proc.returncode}:\n{output}\n{stderr_file.read_text()[-3000:]}"
    )
    return "after end", done
