"""Customer health for one connection, run in this process (the `health` command, the demo): the
same jobs the health schedules launch, optionally retraining the models first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from whop_pipeline.execution import preflight
from whop_pipeline.execution.local import local_instance
from whop_pipeline.orchestration.schedules import connection_runs_in_flight
from whop_pipeline.orchestration.tags import CONNECTION_TAG

_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
CONFIGURED = ("churn_model", "lead_model", "customer_health")


@dataclass
class HealthRun:
    success: bool
    connection: str
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)  # passed, FAILED, or warning
    error: str | None = None


def _collect(result: dg.ExecuteInProcessResult, report: HealthRun) -> None:
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        values = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        report.metadata[materialization.asset_key.to_user_string()] = values
    for evaluation in result.get_asset_check_evaluations():
        name = f"{evaluation.asset_key.to_user_string()}.{evaluation.check_name}"
        warning = evaluation.severity == dg.AssetCheckSeverity.WARN
        report.checks[name] = "passed" if evaluation.passed else "warning" if warning else "FAILED"


def run_health(
    connection: str | None = None,
    *,
    train: bool = False,
    as_of: dt.datetime | None = None,
    instance: dg.DagsterInstance | None = None,
    printer: Callable[[str], None] = print,
) -> HealthRun:
    """Score the connection's customers (``health_scores_job``), after retraining the models
    (``health_models_job``) when ``train``. A connection with no model yet trains one either way."""
    name = connection or preflight.default_connection_name()
    settings = preflight.resolve(name)
    preflight.check_connection(settings)
    from whop_pipeline.definitions import build_defs

    defs = build_defs()
    report = HealthRun(success=False, connection=name)
    run_config: dict[str, Any] = dict(_QUIET)
    if as_of is not None:
        config = {"config": {"as_of": as_of.isoformat()}}
        run_config["ops"] = dict.fromkeys(CONFIGURED, config)
    jobs = (["health_models_job"] if train else []) + ["health_scores_job"]
    with local_instance(instance) as instance:
        busy = connection_runs_in_flight(instance, name)
        if busy:
            report.error = (
                f"connection {name!r} has a run in progress ({busy[0].dagster_run.run_id}); "
                "try again when it has finished"
            )
            return report
        for job_name in jobs:
            job = defs.resolve_job_def(job_name)
            ops = {k: v for k, v in run_config.get("ops", {}).items() if job.has_node_named(k)}
            printer(f"{job_name} for {name} …")
            result = job.execute_in_process(
                instance=instance,
                tags={CONNECTION_TAG: name},
                run_config={**_QUIET, **({"ops": ops} if ops else {})},
                raise_on_error=False,
            )
            _collect(result, report)
            if not result.success:
                report.error = f"{job_name} failed: see run {result.run_id} in the Dagster UI"
                return report
    report.success = True
    return report
