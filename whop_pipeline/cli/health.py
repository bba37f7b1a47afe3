"""``whop-pipeline health [--train] [--connection NAME]``: customer health in-process."""

from __future__ import annotations

import argparse

from whop_pipeline.execution.health import HealthRun, run_health


def summary(report: HealthRun) -> list[str]:
    """What the run learned and wrote, a line each."""
    lines = []
    for asset in ("churn_model", "lead_model"):
        values = report.metadata.get(asset)
        if values:
            auc = values.get("roc_auc")
            shown = f"holdout AUC {auc:.3f}" if isinstance(auc, float) else "not validated"
            signal = "NO SIGNAL, scores withheld" if values.get("no_signal") else values["chosen"]
            lines.append(
                f"  {asset:<22} v{values['version']}: {signal}, {shown}, "
                f"{values.get('dagster/row_count', 0)} training rows"
            )
    scores = report.metadata.get("customer_health", {})
    if scores:
        lines.append(
            f"  {'customer_health':<22} {scores['people_scored']} people, "
            f"{scores['memberships_scored']} memberships scored, {scores['people_at_risk']} at "
            f"risk ≥ 50; changed: {scores['people_changed']} people, "
            f"{scores['opportunities_changed']} opportunities"
        )
    loaded = report.metadata.get("twenty_customer_health", {})
    if loaded:
        lines.append(
            f"  {'twenty_customer_health':<22} {loaded.get('dagster/row_count', 0)} records written in "
            f"{loaded.get('write_calls', 0)} calls, {loaded.get('deferred', 0)} waiting, "
            f"{loaded.get('rejected', 0)} rejected"
        )
    for name, verdict in sorted(report.checks.items()):
        lines.append(f"  check {name:<34} {verdict}")
    return lines


def main(args: argparse.Namespace) -> int:
    report = run_health(args.connection, train=args.train)
    for line in summary(report):
        print(line)
    if not report.success:
        print(f"whop-pipeline: health: {report.error}")
        return 1
    return 0
