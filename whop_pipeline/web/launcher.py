"""Sync runs started from the web: launched at once, watched through the Dagster instance.

A run executes ``whop_sync_job`` for one connection in a worker thread of this process, on the
instance under ``DAGSTER_HOME`` (so it shows in the Dagster UI like any other run; without
``DAGSTER_HOME`` on an instance that lives as long as the app). ``run_sync`` keeps the rule of the
daemon's queue: it will not start while a run of the same connection is in progress. What a run
reports (status, times, counts) is read back from the instance, never kept on the side.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg

from whop_pipeline.execution.local import local_instance
from whop_pipeline.execution.sync import TABLE_ROWS, run_sync
from whop_pipeline.orchestration.tags import CONNECTION_TAG

log = logging.getLogger(__name__)
COUNTS = ("created", "updated", "unchanged", "rejected")
# What the product this replaces called each count, by the asset that produces it.
SYNC_COUNTS = {
    "productsSync": "twenty_products",
    "usersSync": "twenty_people",
    "membershipsSync": "twenty_opportunities",
}


@dataclass(frozen=True)
class RunView:
    id: str
    connection: str
    status: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCESS", "FAILURE", "CANCELED")

    def written(self, asset: str) -> int:
        values = self.counts.get(asset, {})
        return values.get("created", 0) + values.get("updated", 0)


class SyncLauncher:
    """Starts syncs in worker threads and reads runs back from the Dagster instance."""

    def __init__(self, instance: dg.DagsterInstance | None = None, workers: int = 4) -> None:
        self._instance_cm = local_instance(instance)
        self.instance = self._instance_cm.__enter__()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sync")
        self._futures: dict[str, Future] = {}
        self._errors: dict[str, str] = {}
        self._owners: dict[str, str] = {}
        self._lock = threading.Lock()

    def launch(self, connection: str, *, full: bool = False) -> str:
        """Start a sync of ``connection``; returns its run id at once."""
        run_id = str(uuid.uuid4())

        def work() -> None:
            try:
                report = run_sync(
                    "full" if full else "incremental",
                    connection=connection,
                    instance=self.instance,
                    run_id=run_id,
                    printer=lambda line: log.info("%s: %s", connection, line),
                )
                if not report.success:
                    with self._lock:
                        self._errors[run_id] = (report.error or "the sync failed").strip()
            except Exception as exc:  # reported through run(), never lost
                log.exception("sync of %s failed to start", connection)
                with self._lock:
                    self._errors[run_id] = str(exc)

        with self._lock:
            self._owners[run_id] = connection
            self._futures[run_id] = self._pool.submit(work)
        return run_id

    def launched(self, connection: str) -> list[str]:
        """Run ids this app launched for ``connection``, oldest first."""
        with self._lock:
            return [run_id for run_id, owner in self._owners.items() if owner == connection]

    def wait(self, run_id: str, timeout: float | None = None) -> None:
        future = self._futures.get(run_id)
        if future is not None:
            future.result(timeout=timeout)

    def run(self, run_id: str, connection: str | None = None) -> RunView | None:
        """The run as the instance records it (None: unknown, or of another connection)."""
        record = self.instance.get_run_record_by_id(run_id)
        with self._lock:
            pending = self._futures.get(run_id)
            error = self._errors.get(run_id)
            launched_for = self._owners.get(run_id)
        if record is None:
            if pending is None or (connection is not None and launched_for != connection):
                return None
            # Refused before a run was created (a preflight failure, or a run in progress).
            status = "FAILURE" if pending.done() else "STARTING"
            return RunView(run_id, launched_for or "", status, None, None, error=error)
        run = record.dagster_run
        owner = run.tags.get(CONNECTION_TAG, "")
        if connection is not None and owner != connection:
            return None
        return RunView(
            id=run_id,
            connection=owner,
            status=run.status.value,
            started_at=_aware(record.start_time),
            finished_at=_aware(record.end_time),
            counts=self._counts(run_id),
            error=error,
        )

    def latest(self, connection: str) -> RunView | None:
        records = self.instance.get_run_records(
            filters=dg.RunsFilter(job_name="whop_sync_job", tags={CONNECTION_TAG: connection}),
            limit=1,
        )
        return self.run(records[0].dagster_run.run_id, connection) if records else None

    def _counts(self, run_id: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        records = self.instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000
        ).records
        wanted = {asset for _, asset, _ in TABLE_ROWS}
        for record in records:
            materialization = record.asset_materialization
            if materialization is None:
                continue
            asset = materialization.asset_key.to_user_string()
            if asset in wanted:
                values = materialization.metadata
                counts[asset] = {
                    name: int(getattr(values.get(name), "value", 0) or 0) for name in COUNTS
                }
        return counts

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._instance_cm.__exit__(None, None, None)


def _aware(timestamp: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC) if timestamp else None
