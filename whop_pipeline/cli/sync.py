"""``whop-pipeline sync``: the sync job for one connection, or every active one, in-process
(``whop_pipeline.execution.sync``), with a progress line per asset and a final table."""

from __future__ import annotations

import argparse
import datetime as dt

from whop_pipeline.execution import preflight
from whop_pipeline.execution.sync import TABLE_ROWS, SyncReport, run_sync

__all__ = ["SyncReport", "main", "run_sync"]


def _first_line(error: str | None, verbose: bool) -> str:
    text = (error or "the run failed").strip()
    return text if verbose else text.splitlines()[0]


def main(args: argparse.Namespace) -> int:
    mode = "full" if args.full else "since" if args.since else "incremental"
    since = dt.date.fromisoformat(args.since) if args.since else None
    verbose = getattr(args, "verbose", False)
    names = preflight.schedulable() if args.all else [args.connection]
    if args.all and not names:
        print("no active connection to sync (`whop-pipeline connections list`)")
        return 1
    failed = []
    for name in names:
        report = run_sync(
            mode, since=since, dry_run=args.dry_run, rebuild=args.rebuild, connection=name
        )
        if report.metadata:
            print()
            print(report.table())
        if not report.success:
            # One line (the first step's error) unless --verbose; the others go on.
            print(f"sync of {report.connection} failed: {_first_line(report.error, verbose)}")
            failed.append(report.connection)
            continue
        rejected = sum(report.counts(asset, prefix)["rejected"] for _, asset, prefix in TABLE_ROWS)
        if rejected:
            print(f"\n{rejected} rows were rejected by Twenty; see sync_errors (retried next run)")
    if len(names) > 1:
        print(
            f"\n{len(names) - len(failed)} of {len(names)} connections synced"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
    return 1 if failed else 0
