"""Extract benchmark: the whole sandbox dataset through the real extract assets into a fresh
pipeline database, twice.

The emulators run in a separate process (``whop-pipeline sandbox``); this process runs
``dg.materialize`` over the four extract assets for the full partition range (one single-run
backfill, as ``whop-pipeline sync --full`` does) with the pipeline's own resources, the run tagged
``whop/sync=full`` as that sync tags it, so ``whop_members`` (which runs after memberships and
payments) is a full scan of the members. The project's Dagster run-time switches are applied as
``run_sync`` applies them (``--no-dagster-switches``: without them). Prints rows per object, wall
time and step time (the four extract steps, split into the assets' own work and Dagster's
per-partition bookkeeping) with records/s on both, Dagster's share of the run (wall − the assets'
own work), Whop API calls against the minimum (Σ ⌈rows in the window read ÷ 100⌉ per listing, from
the emulator's dataset), this process's peak RSS, and what a second run over the same data did
(everything unchanged, the same calls).

    uv run python -m benchmarks.bench_extract                     # large dataset, SQLite
    uv run python -m benchmarks.bench_extract --dataset small --json
    uv run python -m benchmarks.bench_extract --dataset small --no-dagster-switches
    uv run python -m benchmarks.bench_extract \\
        --db-url postgresql+psycopg2://postgres@127.0.0.1:5432/test   # a fresh schema, dropped after
    uv run python -m benchmarks.bench_extract \\
        --dagster-db-url postgresql://postgres@127.0.0.1:5432/test    # Dagster's storage on Postgres
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from benchmarks import common

TARGET_PEAK_RSS_MB = 400.0
DEFAULT_WHOP_PER_SECOND = 10.0  # WHOP_MAX_REQUESTS_PER_SECOND's default
EXTRACT_STEPS = ("whop_members", "whop_products", "whop_memberships", "whop_payments")
MIRROR_TABLES = ("members", "products", "plans", "memberships", "payments")
COUNTERS = ("fetched", "inserted", "updated", "unchanged", "stale_ignored", "pages", "api_calls")


@dataclass
class ExtractRun:
    run_id: str
    wall_s: float
    timing: common.RunTiming
    calls: dict[str, int]
    total_calls: int
    throttled: int
    faults: int
    asset_metadata: dict[str, dict[str, Any]]
    mirror_rows: dict[str, int]
    peak_rss_mb: float
    step_peak_rss_mb: dict[str, float | None]

    def counter(self, name: str) -> int:
        return sum(int(m.get(name, 0)) for m in self.asset_metadata.values())


def full_range() -> tuple[str, str]:
    from whop_pipeline.orchestration.partitions import daily_partitions

    keys = daily_partitions.get_partition_keys()
    return keys[0], keys[-1]


def extract(
    sandbox: common.SandboxProcess,
    instance: Any,
    first: str,
    last: str,
    sampler: common.RssSampler,
) -> ExtractRun:
    import dagster as dg
    import sqlalchemy as sa

    from whop_pipeline.orchestration.tags import SYNC_MODE_TAG, SyncMode, range_tags
    from whop_pipeline.resources import build_resources
    from whop_pipeline.settings import DEFAULT_CONNECTION
    from whop_pipeline.store.database import get_engine
    from whop_pipeline.store.raw import count_raw
    from whop_pipeline.whop import assets

    sandbox.reset_stats()
    called, started = time.time(), time.perf_counter()
    result = dg.materialize(
        [assets.whop_members, assets.whop_products, assets.whop_memberships, assets.whop_payments],
        instance=instance,
        resources=build_resources(),
        # As ``whop-pipeline sync --full`` tags its run: whop_members reads every member.
        tags={**range_tags(first, last), SYNC_MODE_TAG: SyncMode.FULL},
        run_config=common.QUIET_RUN_CONFIG,
    )
    wall = time.perf_counter() - started
    peak = common.peak_rss_mb()  # before this benchmark reads the run's events back
    stats = sandbox.whop_stats()
    timing = common.run_timing(instance, result.run_id, called, time.time())
    metadata = {
        step: {
            k: getattr(v, "value", v)
            for k, v in result.asset_materializations_for_node(step)[0].metadata.items()
        }
        for step in EXTRACT_STEPS
    }
    engine: sa.Engine = get_engine(os.environ["WHOP_PIPELINE_DB_URL"])
    connection = os.environ.get("WHOP_PIPELINE_CONNECTION") or DEFAULT_CONNECTION
    with engine.connect() as conn:
        mirror = {table: count_raw(conn, table, connection) for table in MIRROR_TABLES}
    prefix = "GET /api/v1/"
    return ExtractRun(
        run_id=result.run_id,
        wall_s=wall,
        timing=timing,
        calls={k.removeprefix(prefix): v for k, v in stats["requests"].items()},
        total_calls=stats["total"],
        throttled=stats["throttled"],
        faults=stats["faults"],
        asset_metadata=metadata,
        mirror_rows=mirror,
        peak_rss_mb=peak,
        step_peak_rss_mb={
            step: sampler.peak_between(timing.steps[step].start, timing.steps[step].end)
            for step in EXTRACT_STEPS
        },
    )


def run_summary(run: ExtractRun) -> dict[str, Any]:
    steps = run.timing
    step_total = sum(steps.steps[s].total_s for s in EXTRACT_STEPS)
    work = steps.work_s(EXTRACT_STEPS)
    fetched = run.counter("fetched")
    return {
        "run_id": run.run_id,
        "wall_s": run.wall_s,
        "step_s": step_total,
        "step_work_s": work,
        "step_bookkeeping_s": steps.bookkeeping_s(EXTRACT_STEPS),
        # Everything in the wall time that is not the assets' own work: Dagster's.
        "dagster_share_s": run.wall_s - work,
        "outside_steps_s": run.wall_s - step_total,
        "before_run_s": steps.before_run_s,
        "planned_events": steps.planned_events,
        "between_steps_s": steps.between_steps_s,
        "after_run_s": steps.after_run_s,
        "records": fetched,
        "records_per_s_wall": fetched / run.wall_s if run.wall_s else None,
        "records_per_s_step": fetched / step_total if step_total else None,
        "records_per_s_work": fetched / work if work else None,
        "mirror_rows": run.mirror_rows,
        "counters": {name: run.counter(name) for name in COUNTERS},
        "whop_calls": run.calls,
        "whop_calls_total": run.total_calls,
        "throttled_429": run.throttled,
        "faults": run.faults,
        "peak_rss_mb": run.peak_rss_mb,
        "steps": {
            name: {
                "total_s": steps.steps[name].total_s,
                "work_s": steps.steps[name].work_s,
                "bookkeeping_s": steps.steps[name].bookkeeping_s,
                "materializations": steps.steps[name].materializations,
                "fetched": int(run.asset_metadata[name].get("fetched", 0)),
                "api_calls": int(run.asset_metadata[name].get("api_calls", 0)),
                "peak_rss_mb": run.step_peak_rss_mb[name],
            }
            # In the order they ran: whop_members after memberships and payments.
            for name in sorted(EXTRACT_STEPS, key=lambda n: steps.steps[n].start)
        },
    }


def run(
    dataset: str,
    db_url: str | None,
    keep: bool,
    *,
    scale: int = 1,
    dagster_db_url: str | None = None,
    dagster_switches: bool = True,
) -> dict[str, Any]:
    switches = common.prepare_environment(dagster_switches)
    with common.start_sandbox_process(dataset, scale=scale) as sandbox:
        served = sandbox.whop_dataset()
        with (
            common.pipeline_database(db_url, keep) as url,
            common.dagster_instance(dagster_db_url, keep) as instance,
        ):
            dagster_storage = common.describe_dagster_storage(instance)
            os.environ.update(sandbox.env)
            os.environ["WHOP_PIPELINE_DB_URL"] = url
            os.environ["WHOP_MAX_REQUESTS_PER_SECOND"] = str(common.FAST_WHOP_PER_SECOND)
            first, last = full_range()
            rss_before = common.peak_rss_mb()
            with common.RssSampler() as sampler:
                first_run = extract(sandbox, instance, first, last, sampler)
                second_run = extract(sandbox, instance, first, last, sampler)
            window = common.read_window(first, last)
            ((rows, minimum),) = common.whop_minimum(sandbox, [window])
            sandbox_rss = sandbox.peak_rss_mb()
    calls = {listing: first_run.calls.get(listing, 0) for listing in common.WHOP_LISTINGS}
    second_calls = {listing: second_run.calls.get(listing, 0) for listing in common.WHOP_LISTINGS}
    total_minimum = sum(minimum.values())
    return {
        "benchmark": "extract",
        "dataset": dataset,
        "scale": scale,
        "database": common.describe_db(url),
        "dagster_storage": dagster_storage,
        "dagster_switches": switches,
        "sync_mode_tag": "full",
        "at": common.utc_now(),
        "sandbox_counts": served["counts"],
        "sandbox_start_s": sandbox.started_s,
        "sandbox_peak_rss_mb": sandbox_rss,
        "partitions": {
            "first": first,
            "last": last,
            "count": first_run.timing.steps["whop_payments"].materializations,
        },
        "read_window": [window[0].isoformat(), window[1].isoformat()],
        "rows_in_window": rows,
        "minimum_calls": minimum,
        "minimum_calls_total": total_minimum,
        "calls": calls,
        "calls_ratio": common.ratio(first_run.total_calls, total_minimum),
        "second_calls": second_calls,
        "second_calls_ratio": common.ratio(second_run.total_calls, total_minimum),
        "peak_rss_mb_before_runs": rss_before,
        "target_peak_rss_mb": TARGET_PEAK_RSS_MB,
        "first_run": run_summary(first_run),
        "second_run": run_summary(second_run),
    }


def summary_lines(r: dict[str, Any]) -> list[str]:
    one, two = r["first_run"], r["second_run"]
    counts = r["sandbox_counts"]
    lines = [
        f"extract benchmark — dataset {r['dataset']}"
        + (f" ×{r['scale']}" if r["scale"] != 1 else "")
        + f", {r['database']}, {r['dagster_storage']},"
        f" {common.describe_switches(r['dagster_switches'])}, {r['at']}",
        "  sandbox (separate process): "
        + ", ".join(f"{v:,} {k}" for k, v in counts.items())
        + f"; started in {r['sandbox_start_s']:.1f} s"
        + (f", its peak RSS {r['sandbox_peak_rss_mb']:.0f} MB" if r["sandbox_peak_rss_mb"] else ""),
        f"  partitions {r['partitions']['first']} … {r['partitions']['last']} "
        f"({r['partitions']['count']} days, one run tagged whop/sync={r['sync_mode_tag']}:"
        " members a full scan); window read "
        f"({r['read_window'][0]}, {r['read_window'][1]})",
        "",
        "  first run (empty database)",
        "    mirror rows: "
        + ", ".join(f"{k} {v:,}" for k, v in one["mirror_rows"].items())
        + f"  = {sum(one['mirror_rows'].values()):,}",
        f"    records fetched {one['records']:,}"
        f" (inserted {one['counters']['inserted']:,}, updated {one['counters']['updated']:,},"
        f" unchanged {one['counters']['unchanged']:,})",
    ]
    lines += _timing_lines(one)
    lines += [
        "    Whop API calls vs minimum (Σ ⌈rows in window ÷ 100⌉):",
        *(
            f"      {listing:<12} {r['calls'][listing]:>6,} calls  minimum {r['minimum_calls'][listing]:>6,}"
            f"  ({r['rows_in_window'][listing]:,} rows)"
            for listing in common.WHOP_LISTINGS
        ),
        f"      {'total':<12} {one['whop_calls_total']:>6,} calls  minimum "
        f"{r['minimum_calls_total']:>6,}  ratio {common.fmt_ratio(r['calls_ratio'])}"
        f"  (429s {one['throttled_429']}, faults {one['faults']})",
        f"      projected at the default {DEFAULT_WHOP_PER_SECOND:.0f} requests/s: the calls alone"
        f" take ≥ {one['whop_calls_total'] / DEFAULT_WHOP_PER_SECOND:,.0f} s"
        " (this run's client limit was raised so that it measures the pipeline, not the limiter)",
        f"    peak RSS of this process: {one['peak_rss_mb']:.0f} MB"
        f" (target < {r['target_peak_rss_mb']:.0f} MB; {r['peak_rss_mb_before_runs']:.0f} MB"
        " before the run)",
        "",
        "  second run (same data)",
        f"    fetched {two['records']:,}: inserted {two['counters']['inserted']:,}, "
        f"updated {two['counters']['updated']:,}, unchanged {two['counters']['unchanged']:,}",
        f"    Whop API calls {two['whop_calls_total']:,} (first run {one['whop_calls_total']:,},"
        f" minimum {r['minimum_calls_total']:,}, ratio {common.fmt_ratio(r['second_calls_ratio'])})",
    ]
    lines += _timing_lines(two)
    lines.append(f"    peak RSS of this process after both runs: {two['peak_rss_mb']:.0f} MB")
    return lines


def _timing_lines(s: dict[str, Any]) -> list[str]:
    def rate(value: float | None) -> str:
        return "n/a" if value is None else f"{value:,.0f}/s"

    # Without the switches Dagster logs one per asset and partition; with them, one per asset.
    per = (
        "one per asset" if s["planned_events"] <= len(s["steps"]) else "one per asset and partition"
    )
    lines = [
        f"    Dagster's share: wall {s['wall_s']:.1f} s − assets' own work"
        f" {s['step_work_s']:.1f} s = {s['dagster_share_s']:.1f} s",
        f"    wall {s['wall_s']:.1f} s ({rate(s['records_per_s_wall'])});"
        f" the four extract steps {s['step_s']:.1f} s ({rate(s['records_per_s_step'])}) ="
        f" assets' work {s['step_work_s']:.1f} s ({rate(s['records_per_s_work'])})"
        f" + Dagster per-partition bookkeeping {s['step_bookkeeping_s']:.1f} s;"
        f" outside the steps {s['outside_steps_s']:.1f} s (before RUN_START"
        f" {s['before_run_s']:.1f} s, mostly Dagster logging {s['planned_events']:,} 'planned'"
        f" events, {per}; in the run between steps"
        f" {s['between_steps_s']:.1f} s; after the run {s['after_run_s']:.1f} s)",
    ]
    for name, step in s["steps"].items():
        peak = step["peak_rss_mb"]
        lines.append(
            f"      {name:<18} {step['total_s']:>6.1f} s = work {step['work_s']:>6.1f} s"
            f" + bookkeeping {step['bookkeeping_s']:>5.1f} s ({step['materializations']:>4}"
            f" materializations); {step['fetched']:>7,} rows, {step['api_calls']:>5,} calls"
            + (f"; RSS ≤ {peak:.0f} MB" if peak else "")
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = common.sync_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    results = run(
        args.dataset,
        args.db_url,
        args.keep,
        scale=args.scale,
        dagster_db_url=args.dagster_db_url,
        dagster_switches=args.dagster_switches,
    )
    common.emit(results, summary_lines(results), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
