"""The Dagster instance for commands that run jobs in this process (``sync``, ``inbox process``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dagster as dg

from whop_pipeline.orchestration import runtime


@contextlib.contextmanager
def local_instance(instance: dg.DagsterInstance | None = None) -> Iterator[dg.DagsterInstance]:
    """``instance`` when given (left open); else the one under ``DAGSTER_HOME``, so runs show in the
    UI, or an ephemeral one without it; either is disposed on exit. Runs started here get the
    project's Dagster run-time switches (``orchestration.runtime``)."""
    runtime.apply()
    if instance is not None:
        yield instance
        return
    owned = (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )
    try:
        yield owned
    finally:
        owned.dispose()
