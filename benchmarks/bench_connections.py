"""Many connections at once with the Dagster daemon on Postgres: N Whop accounts synced into N
Twenty workspaces, one full sync run per connection, all submitted to the daemon's run queue as the
incremental schedule's run requests are (tags ``whop/connection``, ``whop/sync`` and the partition
range), plus a second run for three of the connections, which must wait for their first.

Printed: how the runs ended; that no two runs of one connection overlapped; how many connections
ran at the same time; each workspace's busiest minute of Twenty calls against its per-minute limit
(the emulator throttles each workspace at 100 calls per minute, as the real server does, and the
client paces at the same 100); that each workspace holds exactly its own account's records; and the
wall time of the N connections against one connection synced alone the same way (N× would mean
they ran one after the other).

The Dagster instance is ``deploy/dagster.postgres.yaml`` (production's) on a new database, and the
pipeline database a new schema, both on the local Postgres and dropped afterwards. The two sync
schedules are stopped on that instance, so that a tick falling inside the measurement adds no runs
of its own; the sensors run as deployed.

    uv run python -m benchmarks.bench_connections [--connections 10] [--dataset small] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import common

DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
DEFAULT_DAGSTER_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
# As the tests do: a few weeks of daily partitions, so a full sync covers a modest range.
HISTORY_DAYS = 35
TWENTY_PER_MINUTE = 100  # the real server's limit per workspace, and the client's pace
SECOND_RUNS = 3
JOB = "whop_sync_job"
LOCATION = "whop_pipeline"  # workspace.yaml
REPOSITORY = "__repository__"
SCHEDULES = ("whop_incremental_schedule", "whop_reconcile_schedule")
SOLO = "solo"

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""


def connection_name(index: int) -> str:
    return f"bench-{index:02d}"


@dataclass
class Launched:
    run_id: str
    connection: str
    label: str  # "first", "second" or "solo"
    submitted: float  # epoch seconds


class Launcher:
    """Submits ``whop_sync_job`` runs through Dagster's GraphQL ``launchRun``, as the UI does: with
    the queued run coordinator they land in the queue, and the daemon starts them."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def launch(self, connection: str, label: str, partitions: tuple[str, str]) -> Launched:
        from dagster_graphql.test.utils import execute_dagster_graphql

        from whop_pipeline.orchestration.tags import (
            CONNECTION_TAG,
            SYNC_MODE_TAG,
            SyncMode,
            range_tags,
        )

        tags = {**range_tags(*partitions), SYNC_MODE_TAG: SyncMode.FULL, CONNECTION_TAG: connection}
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "jobName": JOB,
            },
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        submitted = time.time()
        result = execute_dagster_graphql(
            self.context, LAUNCH_RUN, variables={"executionParams": params}
        )
        if result.errors:
            raise RuntimeError(f"launchRun for {connection} failed: {result.errors}")
        answer = result.data["launchRun"]
        if answer["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun for {connection} answered {answer}")
        return Launched(answer["run"]["runId"], connection, label, submitted)


def stop_schedules(instance: Any, context: Any) -> None:
    repository = context.get_code_location(LOCATION).get_repository(REPOSITORY)
    for name in SCHEDULES:
        schedule = repository.get_schedule(name)
        instance.stop_schedule(schedule.get_remote_origin_id(), schedule.selector_id, schedule)


def process_cpu_s() -> float:
    """CPU seconds this process has used: the emulators of every account serve from its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def durations(runs: Sequence[dict[str, Any]], first: str, last: str) -> list[float]:
    return [r[last] - r[first] for r in runs if r[first] is not None and r[last] is not None]


def wait_for_daemon(instance: Any, timeout: float) -> None:
    """Until the run queue's daemon has reported in (its workspace loaded), so that the timings
    below do not include the daemon's own start."""
    deadline = time.monotonic() + timeout
    while "QUEUED_RUN_COORDINATOR" not in instance.get_daemon_heartbeats():
        if time.monotonic() > deadline:
            raise RuntimeError("the Dagster daemon did not report in")
        time.sleep(0.5)


def wait_for_runs(instance: Any, run_ids: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run records of ``run_ids`` once all have finished, or whatever they are at ``timeout``."""
    import dagster as dg

    finished = {
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    }
    deadline = time.monotonic() + timeout
    while True:
        records = instance.get_run_records(filters=dg.RunsFilter(run_ids=list(run_ids)))
        by_id = {r.dagster_run.run_id: r for r in records}
        done = sum(1 for r in by_id.values() if r.dagster_run.status in finished)
        if done == len(run_ids) or time.monotonic() > deadline:
            return by_id
        time.sleep(1.0)


def failure_of(instance: Any, run_id: str) -> str | None:
    """The run's first step or resource error, as the connection records it; for a run that
    failed before any step (its process never started, say), the errors of its run-level events."""
    from whop_pipeline.orchestration.outcomes import first_error

    found = first_error(instance, run_id)
    if found:
        return found[0]
    messages = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key:
            continue
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            messages.append(f"{event.event_type_value}: {error.to_string().strip()}")
        elif event.event_type_value in ("RUN_FAILURE", "PIPELINE_FAILURE", "ENGINE_EVENT"):
            messages.append(f"{event.event_type_value}: {entry.message}")
    return "\n".join(messages) or None


def max_concurrent_connections(runs: Sequence[dict[str, Any]]) -> int:
    """The most connections with a run in progress at one moment (an end and a start at the same
    instant do not overlap)."""
    events = []
    for run in runs:
        if run["start"] is not None and run["end"] is not None:
            events += [(run["start"], 1, run["connection"]), (run["end"], 0, run["connection"])]
    active: dict[str, int] = {}
    peak = 0
    for _when, starting, connection in sorted(events):
        active[connection] = active.get(connection, 0) + (1 if starting else -1)
        peak = max(peak, sum(1 for n in active.values() if n > 0))
    return peak


def overlaps_within_connection(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Each connection whose runs, in start order, do not each start after the previous ended."""
    found = []
    for connection in sorted({r["connection"] for r in runs}):
        # A run that never started (it failed at launch) cannot overlap another.
        own = sorted(
            (r for r in runs if r["connection"] == connection and r["start"] is not None),
            key=lambda r: r["start"],
        )
        for before, after in itertools.pairwise(own):
            if before["end"] is None or after["start"] < before["end"]:
                found.append(connection)
                break
    return found


def dequeued_at(instance: Any, run_id: str) -> float | None:
    """When the daemon took the run off the queue and launched it (its RUN_STARTING event); the
    run's start follows once its process has started and loaded the code."""
    import dagster as dg

    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_STARTING):
        return entry.timestamp
    return None


def run_rows(instance: Any, launched: Sequence[Launched], records: dict[str, Any]) -> list[dict]:
    rows = []
    for item in launched:
        record = records.get(item.run_id)
        status = record.dagster_run.status.value if record else "MISSING"
        rows.append(
            {
                "run_id": item.run_id,
                "connection": item.connection,
                "label": item.label,
                "status": status,
                "submitted": item.submitted,
                "created": record.create_timestamp.timestamp() if record else None,
                "dequeued": dequeued_at(instance, item.run_id),
                "start": record.start_time if record else None,
                "end": record.end_time if record else None,
                "error": failure_of(instance, item.run_id) if status == "FAILURE" else None,
            }
        )
    return rows


def workspace_limits(account: Any) -> dict[str, Any]:
    stats = account.twenty.stats.snapshot()
    admitted = stats.get("max_admitted_in_window", 0)
    return {
        "calls": stats["total"],
        "throttled_429": stats["throttled"],
        "window_seconds": stats.get("window_seconds"),
        "max_calls_in_window": stats.get("max_calls_in_window"),
        "max_admitted_in_window": admitted,
        "limit_per_minute": TWENTY_PER_MINUTE,
        "within_limit": admitted <= TWENTY_PER_MINUTE,
    }


def check_workspace(account: Any) -> tuple[bool, str | None, dict[str, int]]:
    from whop_pipeline.sandbox.readings import live_records
    from whop_pipeline_tests.expected_crm import assert_workspace_holds_exactly

    dump = account.twenty.dump()
    counts = {p: len(live_records(dump, p)) for p in ("people", "opportunities", "notes")}
    try:
        assert_workspace_holds_exactly(dump, account.whop.dataset)
    except AssertionError as exc:
        return False, str(exc).splitlines()[0][:300] if str(exc) else "assertion failed", counts
    return True, None, counts


def add_connection(db_url: str, sandbox: Any, index: int, name: str) -> None:
    from whop_pipeline.lib.secrets import SecretBox
    from whop_pipeline.store import connections
    from whop_pipeline.store.database import get_engine

    account = sandbox.account(index)
    with get_engine(db_url).begin() as conn:
        connections.save(
            conn,
            SecretBox.from_env(),
            name=name,
            whop_account_id=account.account_id,
            twenty_api_url=sandbox.twenty_url,
            whop_api_key=account.whop_api_key,
            twenty_api_key=account.twenty_api_key,
            whop_api_base_url=sandbox.whop_base_url,
            now=dt.datetime.now(dt.UTC),
        )


@contextlib.contextmanager
def sandbox_of(dataset: str, accounts: int, start: dt.date) -> Iterator[Any]:
    from whop_pipeline.sandbox.runner import start_sandbox
    from whop_pipeline_tests.pipeline import dataset_now

    # seed=1: account i draws seed i, so the lone connection's account 1 is the same dataset as
    # the first of the N.
    sandbox = start_sandbox(
        dataset,
        accounts=accounts,
        seed=1,
        start_date=start,
        now=dataset_now(),
        twenty_rate_limit=TWENTY_PER_MINUTE,
    )
    try:
        yield sandbox
    finally:
        sandbox.stop()


def run(
    count: int,
    dataset: str,
    db_url: str,
    dagster_db_url: str,
    timeout: float,
    keep: bool = False,
) -> dict[str, Any]:
    start = dt.date.today() - dt.timedelta(days=HISTORY_DAYS)
    os.environ["WHOP_SYNC_START_DATE"] = start.isoformat()
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    from cryptography.fernet import Fernet
    from dagster_graphql.test.utils import define_out_of_process_context

    from whop_pipeline.lib.secrets import KEYS_VAR
    from whop_pipeline.orchestration.partitions import daily_partitions
    from whop_pipeline_tests.daemon import ROOT, Daemon

    keys = daily_partitions.get_partition_keys()
    partitions = (keys[0], keys[-1])
    results: dict[str, Any] = {
        "benchmark": "connections",
        "at": common.utc_now(),
        "connections": count,
        "dataset": dataset,
        "partitions": [*partitions, len(keys)],
        "twenty_limit_per_minute": TWENTY_PER_MINUTE,
        "cpus": os.cpu_count(),
    }
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(common.pipeline_database(db_url, keep))
        pg_env = stack.enter_context(common.scratch_dagster_database(dagster_db_url, keep))
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-conn-")))
        results["database"] = common.describe_db(url)
        results["dagster_database"] = (
            f"{pg_env['DAGSTER_PG_DB']} on {pg_env['DAGSTER_PG_HOST']}:{pg_env['DAGSTER_PG_PORT']}"
        )
        env = {
            **pg_env,
            "WHOP_PIPELINE_DB_URL": url,
            KEYS_VAR: Fernet.generate_key().decode(),
            "WHOP_SYNC_START_DATE": start.isoformat(),
            "TWENTY_MAX_CALLS_PER_MINUTE": str(TWENTY_PER_MINUTE),
        }
        os.environ.update(env)
        sandbox = stack.enter_context(sandbox_of(dataset, count, start))
        names = [connection_name(i) for i in range(1, count + 1)]
        for index, name in enumerate(names, start=1):
            add_connection(url, sandbox, index, name)

        daemon = Daemon(home / "dagster_home", env)
        (daemon.home / "dagster.yaml").write_text(
            (ROOT / "deploy" / "dagster.postgres.yaml").read_text()
        )
        # This process creates the instance's tables before the daemon starts, so the two never
        # race to create them in the fresh database.
        instance = daemon.instance()
        stack.callback(instance.dispose)
        results["dagster_storage"] = type(instance.run_storage).__name__
        context = stack.enter_context(
            define_out_of_process_context(str(ROOT / "workspace.yaml"), None, instance)
        )
        stop_schedules(instance, context)
        stack.enter_context(daemon)
        wait_for_daemon(instance, timeout=180)
        launcher = Launcher(context)

        # --- N connections at once, and a second run for three of them ---------------------
        began, cpu_before = time.time(), process_cpu_s()
        launched = [launcher.launch(name, "first", partitions) for name in names]
        launched += [launcher.launch(name, "second", partitions) for name in names[:SECOND_RUNS]]
        print(
            f"launched {len(launched)} runs in {time.time() - began:.1f} s; waiting",
            file=sys.stderr,
            flush=True,
        )
        records = wait_for_runs(instance, [item.run_id for item in launched], timeout)
        results["this_process_cpu_s"] = process_cpu_s() - cpu_before
        runs = run_rows(instance, launched, records)
        firsts = [r for r in runs if r["label"] == "first"]
        results["runs"] = runs
        results["began"] = began
        results["wall_first_s"] = (
            max(r["end"] for r in firsts) - began if all(r["end"] for r in firsts) else None
        )
        results["wall_all_s"] = (
            max(r["end"] for r in runs) - began if all(r["end"] for r in runs) else None
        )
        results["overlapping_connections"] = overlaps_within_connection(runs)
        results["max_concurrent_connections"] = max_concurrent_connections(runs)
        results["workspaces"] = {
            name: workspace_limits(sandbox.account(i)) for i, name in enumerate(names, start=1)
        }
        results["correctness"] = {}
        for index, name in enumerate(names, start=1):
            ok, problem, counts = check_workspace(sandbox.account(index))
            results["correctness"][name] = {"ok": ok, "problem": problem, "counts": counts}

        # --- one connection alone, the same way ---------------------------------------------
        with sandbox_of(dataset, 1, start) as alone:
            add_connection(url, alone, 1, SOLO)
            solo = launcher.launch(SOLO, "solo", partitions)
            records = wait_for_runs(instance, [solo.run_id], timeout)
            (solo_row,) = run_rows(instance, [solo], records)
            results["solo"] = solo_row
            results["solo"]["workspace"] = workspace_limits(alone.account(1))
            ok, problem, counts = check_workspace(alone.account(1))
            results["solo"]["correctness"] = {"ok": ok, "problem": problem, "counts": counts}
        results["wall_solo_s"] = solo_row["end"] - solo.submitted if solo_row["end"] else None
        if results["wall_first_s"] and results["wall_solo_s"]:
            results["ratio"] = results["wall_first_s"] / results["wall_solo_s"]
        else:
            results["ratio"] = None
        results["other_runs"] = len(instance.get_run_records()) - len(launched) - 1
        failed = [r["run_id"] for r in [*runs, solo_row] if r["status"] != "SUCCESS"]
        results["daemon_log_of_failed_runs"] = [
            line for line in daemon.log().splitlines() if any(i in line for i in failed)
        ][-40:]
    return results


# --- printing ---------------------------------------------------------------------------------


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def lines(r: dict[str, Any]) -> list[str]:
    runs = r["runs"]
    began = r["began"]
    first, last, days = r["partitions"]
    succeeded = sum(1 for run in runs if run["status"] == "SUCCESS")
    out = [
        f"{r['connections']} connections syncing concurrently with the Dagster daemon"
        f" ({r['dataset']} datasets, partitions {first} … {last}, {days} days)",
        f"  Dagster storage {r['dagster_storage']} on database {r['dagster_database']};"
        f" pipeline database {r['database']}",
        f"  runs: {len(runs)} ({r['connections']} full syncs + {SECOND_RUNS} second runs);"
        f" SUCCESS {succeeded}, other {len(runs) - succeeded}"
        + (f"; runs started by anything else: {r['other_runs']}" if r["other_runs"] else ""),
    ]
    for run in runs:
        if run["status"] != "SUCCESS":
            out.append(
                f"    {run['connection']} ({run['label']}, run {run['run_id']}) {run['status']}:"
                f" {run['error'] or 'no error recorded'}"
            )
    out.append(
        "  timeline (seconds after the first launch: launched, taken off the queue, ran start → end):"
    )
    for connection in sorted({run["connection"] for run in runs}):
        own = sorted(
            (x for x in runs if x["connection"] == connection), key=lambda x: x["start"] or 0
        )
        spans = "; ".join(
            f"{x['label']} {_offset(x['submitted'], began)}, {_offset(x['dequeued'], began)},"
            f" {_offset(x['start'], began)} → {_offset(x['end'], began)}"
            for x in own
        )
        out.append(f"    {connection}: {spans}")
    overlapping = r["overlapping_connections"]
    out += [
        f"  no overlap within a connection: {yes_no(not overlapping)}"
        + (f" (overlapping: {', '.join(overlapping)})" if overlapping else ""),
        f"  most connections running at the same time: {r['max_concurrent_connections']}",
        f"  Twenty, per workspace (limit {TWENTY_PER_MINUTE}/min; busiest 60 s window of"
        " admitted calls):",
    ]
    workspaces = r["workspaces"]
    for name, w in workspaces.items():
        out.append(
            f"    {name}: {w['calls']:>4} calls, 429s {w['throttled_429']},"
            f" max admitted in window {w['max_admitted_in_window']:>3}"
            f" → within limit: {yes_no(w['within_limit'])}"
        )
    worst = max(workspaces.values(), key=lambda w: w["max_admitted_in_window"])
    out.append(
        f"    max over workspaces: {worst['max_admitted_in_window']} admitted in"
        f" {worst['window_seconds']:.0f} s (limit {TWENTY_PER_MINUTE}) → within limit:"
        f" {yes_no(all(w['within_limit'] for w in workspaces.values()))}"
    )
    out.append("  correctness (each workspace holds exactly its own account's records):")
    for name, c in r["correctness"].items():
        counts = ", ".join(f"{k} {v}" for k, v in c["counts"].items())
        out.append(f"    {name}: {'ok' if c['ok'] else 'FAILED: ' + c['problem']} ({counts})")
    solo = r["solo"]
    sw = solo["workspace"]
    out.append(
        f"  one connection alone: {solo['status']}"
        + (f" ({solo['error']})" if solo["error"] else "")
        + f"; {sw['calls']} Twenty calls, 429s {sw['throttled_429']}, max admitted in window"
        f" {sw['max_admitted_in_window']}; correctness"
        f" {'ok' if solo['correctness']['ok'] else 'FAILED: ' + solo['correctness']['problem']}"
    )
    out.append(
        f"  where the time goes ({r['cpus']} CPUs; this process, which serves every account's"
        f" emulators and launches the runs, used {r['this_process_cpu_s']:.0f} CPU s):"
    )
    for label, first_key, last_key in (
        ("launch → taken off the queue", "submitted", "dequeued"),
        ("taken off the queue → run started (its process up)", "dequeued", "start"),
        ("run started → ended", "start", "end"),
    ):
        many = durations([x for x in runs if x["label"] == "first"], first_key, last_key)
        one = durations([solo], first_key, last_key)
        out.append(
            f"    {label}: first runs median"
            f" {_seconds(statistics.median(many) if many else None)},"
            f" max {_seconds(max(many) if many else None)}; alone {_seconds(one[0] if one else None)}"
        )
    x, y, ratio = r["wall_first_s"], r["wall_solo_s"], r["ratio"]
    x_all = r["wall_all_s"]
    out.append(
        f"  {r['connections']} connections: {_seconds(x)} wall; one connection: {_seconds(y)};"
        f" ratio X/Y = {f'{ratio:.2f}' if ratio else 'n/a'}"
        f" ({r['connections']}x would be serial)"
    )
    out.append(
        f"  with the {SECOND_RUNS} second runs queued behind their connections' first:"
        f" {_seconds(x_all)} wall"
    )
    if r.get("daemon_log_of_failed_runs"):
        out += ["  daemon log, lines about the failed runs:", *r["daemon_log_of_failed_runs"]]
    return out


def _offset(value: float | None, began: float) -> str:
    return "—" if value is None else f"{value - began:6.1f}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--dataset", choices=("tiny", "small"), default="small")
    parser.add_argument(
        "--db-url",
        default=DEFAULT_PG_URL,
        help="pipeline database server: a fresh schema of it, dropped afterwards "
        f"(default {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--dagster-db-url",
        default=DEFAULT_DAGSTER_PG_URL,
        help="Postgres server for the Dagster instance: a fresh database on it, dropped afterwards "
        f"(default {DEFAULT_DAGSTER_PG_URL})",
    )
    parser.add_argument(
        "--timeout", type=float, default=1200.0, help="seconds to wait for each phase's runs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch schema and database")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.connections < SECOND_RUNS:
        parser.error(f"--connections must be at least {SECOND_RUNS}")
    results = run(
        args.connections, args.dataset, args.db_url, args.dagster_db_url, args.timeout, args.keep
    )
    if args.json:
        print(json.dumps(common.rounded(results), indent=2, default=str))
    else:
        print("\n".join(lines(results)))
    sys.stdout.flush()
    ok = (
        all(run["status"] == "SUCCESS" for run in results["runs"])
        and results["solo"]["status"] == "SUCCESS"
        and all(c["ok"] for c in results["correctness"].values())
        and not results["overlapping_connections"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
