"""Freshness per connection: has it reached Twenty lately?

A connection is stale when its last successful sync is older than twice the incremental interval
(one missed tick is noise, two are a problem). The check fails naming every stale connection and
its last error; its metadata has one entry per connection. The ``connection_freshness_sensor``
evaluates it every few minutes, and it can be run from the UI.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from whop_pipeline.orchestration.partitions import INCREMENTAL_INTERVAL_MINUTES
from whop_pipeline.store import connections
from whop_pipeline.store.resource import PipelineDatabase

MAX_AGE = 2 * dt.timedelta(minutes=INCREMENTAL_INTERVAL_MINUTES)
CHECK_NAME = "connections_fresh"


@dataclass(frozen=True)
class Freshness:
    connection: str
    fresh: bool
    last_success_at: dt.datetime | None
    last_error: str | None

    def describe(self) -> str:
        when = (
            f"last synced {self.last_success_at:%Y-%m-%d %H:%M} UTC"
            if self.last_success_at
            else "never synced"
        )
        error = f"; last error: {self.last_error}" if self.last_error else ""
        return f"{self.connection}: {when}{error}"


def freshness_of(
    row: connections.Connection, now: dt.datetime, max_age: dt.timedelta = MAX_AGE
) -> Freshness:
    # A connection younger than the allowance has not had its chance yet.
    since = row.last_success_at or row.connected_at or row.created_at
    return Freshness(row.name, now - since <= max_age, row.last_success_at, row.last_error)


def evaluate(
    pipeline_db: PipelineDatabase, now: dt.datetime | None = None
) -> dg.AssetCheckEvaluation:
    now = now or dt.datetime.now(dt.UTC)
    with pipeline_db.engine().connect() as conn:
        rows = connections.list_all(conn, statuses=("active", "needs_reauth"))
    results = [freshness_of(row, now) for row in rows]
    stale = [r for r in results if not r.fresh]
    return dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("twenty_people"),
        check_name=CHECK_NAME,
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{len(stale)} of {len(results)} connections have not synced in "
            f"{int(MAX_AGE.total_seconds() // 60)} minutes: "
            + " | ".join(r.describe() for r in stale)
            if stale
            else None
        ),
        metadata={
            "connections": len(results),
            "stale": len(stale),
            **{
                f"connection/{r.connection}": dg.MetadataValue.text(
                    ("fresh" if r.fresh else "STALE") + " - " + r.describe()
                )
                for r in results
            },
        },
    )


@dg.asset_check(
    asset="twenty_people",
    name=CHECK_NAME,
    description="Every active connection synced successfully within twice the incremental interval.",
)
def connections_fresh(pipeline_db: PipelineDatabase) -> dg.AssetCheckResult:
    evaluation = evaluate(pipeline_db)
    return dg.AssetCheckResult(
        passed=evaluation.passed,
        severity=evaluation.severity,
        description=evaluation.description,
        metadata=evaluation.metadata,
    )
