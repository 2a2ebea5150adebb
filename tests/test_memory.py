"""A run's process gives freed large blocks back: glibc's thresholds fixed before the first
run, unless the environment chose them. Each case runs in a fresh interpreter, since the
thresholds are the process's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine_helpers import create_table, project, to_warehouse

pytestmark = pytest.mark.skipif(
    not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"), reason="glibc only")

# After a freed 4 MiB mapped block glibc's own rule raises its mmap threshold past 512 KiB;
# fixed at 128 KiB, a 512 KiB block is still mapped (mallinfo2's hblks counts mapped blocks).
PROBE = """
import ctypes, sys
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
applied = SETUP
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(512 << 10)
print(applied, libc.mallinfo2().hblks - before)
libc.free(block)
"""


def probe(setup: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", PROBE.replace("SETUP", setup)], check=True,
                         capture_output=True, text=True, env={**environ, **(env or {})},
                         cwd=cwd)
    return out.stdout.strip()


def test_glibc_raises_its_threshold_without_it() -> None:
    assert probe("None") == "None 0"


def test_fixed_thresholds_map_large_blocks() -> None:
    assert probe("__import__('sync_assets.memory').memory.release_freed_memory()") == "True 1"


@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "1048576"},
                                 {"MALLOC_MMAP_THRESHOLD_": "1048576"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}])
def test_thresholds_chosen_by_the_environment_are_kept(env: dict[str, str]) -> None:
    setup = "__import__('sync_assets.memory').memory.release_freed_memory()"
    assert probe(setup, env).split()[0] == "False"


def test_a_run_fixes_the_thresholds(tmp_path: Path) -> None:
    urls = (f"sqlite:///{tmp_path}/os.db", f"sqlite:///{tmp_path}/wh.db")
    create_table(urls[0], "item", [sa.Column("id", sa.Integer, primary_key=True)], [{"id": 1}])
    project(tmp_path, urls, to_warehouse("items", "item", "item", matchKey=["id"],
                                         mapping={"id": "id"}))
    setup = ("__import__('sync_assets.engine', fromlist=['run']).run("
             f"__import__('sync_assets').load_project({str(tmp_path / 'project.yaml')!r}, "
             "env={}), 'items').status")
    assert probe(setup, cwd=Path(__file__).parent) == "completed 1"
