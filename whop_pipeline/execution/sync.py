"""The sync job for one connection, run in-process through Dagster (the `sync` command, the web
app's "Sync now", cron users without a daemon): the same assets, checks and resources as the
schedules, a progress line per asset, and a final table per Twenty object."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from whop_pipeline.crm.assets import CRM_ASSETS
from whop_pipeline.execution import preflight
from whop_pipeline.execution.local import local_instance
from whop_pipeline.lib.preflight import PreflightError
from whop_pipeline.orchestration.partitions import daily_partitions, trailing_keys
from whop_pipeline.orchestration.schedules import INCREMENTAL_DAYS, connection_runs_in_flight
from whop_pipeline.orchestration.tags import CONNECTION_TAG, SYNC_MODE_TAG, range_tags
from whop_pipeline.settings import db_url_from_env
from whop_pipeline.store import connections, sync_history
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.run_connection import CHECKED_TAG_PREFIX, record_check_failure
from whop_pipeline.twenty.assets import LOAD_ASSETS

# The final table: (label, asset, metadata prefix), in load order.
TABLE_ROWS = tuple((name, asset, "") for name, asset in LOAD_ASSETS.items())
COUNTS = ("created", "updated", "unchanged", "rejected", "deferred")
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class SyncReport:
    success: bool
    run_id: str
    first_partition: str
    last_partition: str
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    connection: str = "default"

    def counts(self, asset: str, prefix: str = "") -> dict[str, int]:
        values = self.metadata.get(asset, {})
        return {c: int(values.get(f"{prefix}{c}", 0)) for c in COUNTS}

    def table(self) -> str:
        header = f"{'object':<14}" + "".join(f"{c:>11}" for c in COUNTS)
        lines = [header, "-" * len(header)]
        for label, asset, prefix in TABLE_ROWS:
            if asset in self.metadata:
                counts = self.counts(asset, prefix)
                lines.append(f"{label:<14}" + "".join(f"{counts[c]:>11}" for c in COUNTS))
        return "\n".join(lines)


def partition_range(
    mode: str, since: dt.date | None = None, now: dt.datetime | None = None
) -> tuple[str, str]:
    now = now or dt.datetime.now(dt.UTC)
    keys = daily_partitions.get_partition_keys(current_time=now)
    if mode == "full":
        return keys[0], keys[-1]
    if mode == "since":
        assert since is not None
        later = [k for k in keys if k >= since.isoformat()]
        if not later:
            raise ValueError(f"--since {since} is after the last partition {keys[-1]}")
        return later[0], keys[-1]
    return trailing_keys(now, INCREMENTAL_DAYS)


def _metadata_values(entry_metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in entry_metadata.items()}


SHOWN = (
    "fetched",
    "inserted",
    "updated",
    "dagster/row_count",
    "created",
    "changed",
    "rejected",
    "api_calls",
    "write_calls",
)


def _step_line(instance: dg.DagsterInstance, step: str, report: SyncReport) -> str:
    """One progress line: the step and the headline counts of its latest materialization."""
    latest = instance.fetch_materializations(dg.AssetKey(step), limit=1).records
    if latest:
        materialization = latest[0].asset_materialization
        report.metadata[step] = _metadata_values(materialization.metadata)  # type: ignore[union-attr]
    values = report.metadata.get(step, {})
    shown = ", ".join(f"{k}={v}" for k, v in values.items() if k in SHOWN)
    return f"  done  {step:<22} {shown}"


TRANSFORM_STEP = "crm_records"


def _transform_line(instance: dg.DagsterInstance, report: SyncReport) -> str:
    """The transform step writes five assets: one line with what each rebuilt and changed."""
    parts = []
    for name, asset in CRM_ASSETS.items():
        latest = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        if latest:
            values = _metadata_values(latest[0].asset_materialization.metadata)  # type: ignore[union-attr]
            report.metadata[asset] = values
            parts.append(f"{name} {values.get('changed', 0)}/{values.get('rebuilt', 0)}")
    return f"  done  {TRANSFORM_STEP:<22} changed/rebuilt: {', '.join(parts)}"


def _watch(
    instance: dg.DagsterInstance,
    run_id: str,
    done: threading.Event,
    report: SyncReport,
    printer: Callable[[str], None],
    asset_names: set[str],
) -> None:
    """Print a line per finished step while the run executes. Reads only step and check events
    after a cursor: a long range run records thousands of per-partition materializations."""
    cursor: str | None = None
    wanted = {
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
        dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    }
    while True:
        finished = done.wait(0.5)
        connection = instance.get_records_for_run(run_id, cursor=cursor, of_type=wanted)
        cursor = connection.cursor
        for record in connection.records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            if event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                if event.step_key in asset_names:  # check steps report through their evaluation
                    printer(_step_line(instance, event.step_key, report))
                elif event.step_key == TRANSFORM_STEP:
                    printer(_transform_line(instance, report))
            elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                verdict = "passed" if evaluation.passed else "FAILED"  # type: ignore[union-attr]
                name = evaluation.check_name  # type: ignore[union-attr]
                printer(f"  check {name:<22} {verdict}")
            else:
                printer(f"  FAIL  {event.step_key}")
        if finished and not connection.has_more:
            return


def run_sync(
    mode: str = "incremental",
    *,
    since: dt.date | None = None,
    dry_run: bool = False,
    rebuild: bool = False,
    instance: dg.DagsterInstance | None = None,
    now: dt.datetime | None = None,
    printer: Callable[[str], None] = print,
    connection: str | None = None,
    run_id: str | None = None,
) -> SyncReport:
    """Run ``whop_sync_job`` for one connection over the partitions ``mode`` selects, in this
    process. The connection is resolved and each API called once first: a connection that cannot
    work fails here, in one line, before any run starts."""
    name = connection or preflight.default_connection_name()
    first, last = partition_range(mode, since, now)
    run_id = run_id or str(uuid.uuid4())
    report = SyncReport(
        success=False, run_id=run_id, first_partition=first, last_partition=last, connection=name
    )
    settings = preflight.resolve(name)  # names a missing variable or connection
    try:
        preflight.check_connection(settings)
    except PreflightError as exc:
        record_check_failure(db_url_from_env(), name, exc)
        report.error = str(exc)
        return report
    from whop_pipeline.definitions import build_defs

    job = build_defs().resolve_job_def("whop_sync_job")
    run_config: dict[str, Any] = dict(_QUIET)
    if dry_run:
        dry = {"config": {"dry_run": True}}
        run_config["ops"] = {name: dry for name in ["twenty_schema", *LOAD_ASSETS.values()]}
    if rebuild:
        run_config.setdefault("ops", {})[TRANSFORM_STEP] = {"config": {"rebuild": True}}
    printer(
        f"sync {name} ({mode}{', dry run' if dry_run else ''}): partitions {first} … {last}, "
        f"run {run_id}"
    )
    engine = get_engine(db_url_from_env())
    started = dt.datetime.now(dt.UTC)
    done = threading.Event()
    asset_names = {key.to_user_string() for key in job.asset_layer.asset_graph.get_all_asset_keys()}
    with local_instance(instance) as instance:
        # This run bypasses the daemon's queue, so it keeps the queue's rule itself: a
        # connection's runs never overlap (same instance, i.e. the same DAGSTER_HOME).
        busy = connection_runs_in_flight(instance, name)
        if busy:
            report.error = (
                f"connection {name!r} has a run in progress ({busy[0].dagster_run.run_id}); "
                "its runs never overlap: try again when it has finished"
            )
            return report
        with engine.begin() as conn:
            connections.ensure_environment_row(conn, settings, started)
            sync_history.record_sync_start(conn, name, run_id, started)
        watcher = threading.Thread(
            target=_watch,
            args=(instance, run_id, done, report, printer, asset_names),
            daemon=True,
        )
        watcher.start()
        try:
            result = job.execute_in_process(
                instance=instance,
                run_id=run_id,
                tags={
                    **range_tags(first, last),
                    SYNC_MODE_TAG: mode,
                    CONNECTION_TAG: name,
                    # Checked just now: the run's resources need not call again.
                    CHECKED_TAG_PREFIX + "whop": started.isoformat(timespec="seconds"),
                    CHECKED_TAG_PREFIX + "twenty": started.isoformat(timespec="seconds"),
                },
                run_config=run_config,
                raise_on_error=False,
            )
            report.success = result.success
            if not result.success:
                failures = [
                    e.event_specific_data.error.message.strip()  # type: ignore[union-attr]
                    for e in result.all_events
                    if e.event_type
                    in (
                        dg.DagsterEventType.STEP_FAILURE,
                        dg.DagsterEventType.RESOURCE_INIT_FAILURE,
                    )
                ]
                report.error = "\n".join(failures) or "the run failed"
        finally:
            done.set()
            watcher.join()
            with engine.begin() as conn:
                sync_history.record_sync_end(
                    conn,
                    name,
                    run_id,
                    succeeded=report.success,
                    error=report.error,
                    now=dt.datetime.now(dt.UTC),
                )
    return report
