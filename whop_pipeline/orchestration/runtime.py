"""Dagster's run-time switches this project sets, in one place.

A sync writes one materialization per daily partition of memberships and payments (about 1,400
events for two years). Two environment variables of Dagster 1.13 cut that bookkeeping:

- ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1``: one "planned" event per asset holding
  the run's whole partition range, instead of one per partition (dagster-io/dagster#29288,
  recommended in dagster-io/dagster#32242). Read by the process that creates a run. Caveat: a run
  that fails part-way does not mark its partitions failed in the partition view (the run itself
  shows the failure).
- ``DAGSTER_EVENT_BATCH_SIZE``: per-partition materializations are written in batches of this many
  events; the Postgres event log writes each batch in one statement (SQLite writes them one by
  one). Read by the process that executes the steps.

They are not in ``dagster.yaml``'s schema and not a public API: both are checked when Dagster is
upgraded (``benchmarks/bench_extract.py`` shows the difference). Commands that run jobs in this
process apply them (``apply``); the daemon and the webserver get them from their environment
(``make dev`` exports them; see the README's deployment section).
"""

from __future__ import annotations

import os

DAGSTER_RUNTIME_ENV = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply() -> None:
    """Set the switches in this process, unless the environment already chose otherwise."""
    for name, value in DAGSTER_RUNTIME_ENV.items():
        os.environ.setdefault(name, value)
