"""The code location of the scale-out test (tests/test_shards.py): the project named by
$SHARD_TEST_PROJECT with its sync `contacts` in two shards. The multiprocess executor loads
this module again in every step's process."""

from __future__ import annotations

import os

import dagster as dg

from sync_assets import build_definitions, load_project

defs = build_definitions(load_project(os.environ["SHARD_TEST_PROJECT"]),
                         shards={"contacts": 2})


def contacts_job() -> dg.JobDefinition:
    return defs.resolve_job_def("sync__contacts__job")
