"""Load benchmark: whole syncs of the sandbox dataset into the Twenty emulator, through ``run_sync``
(the ``whop_sync_job`` in this process, as ``whop-pipeline sync`` runs it).

The emulators run in a separate process with Twenty's per-minute limit raised, so nothing waits
on the rate limit; the client is paced just under the emulator's 100-calls-per-second bucket. In
order:

1. full sync into an empty CRM: Twenty write calls per object against the floor (⌈rows ÷ 200⌉
   per object, rows = the records that landed, counted from the emulator's dump), the projected wall
   time at Twenty's 100 calls per minute (every call, metadata included), the actual wall time, and
   this process's peak RSS with the step that reached it;
2. the same full sync again: write calls (target 0);
3. 1% of memberships changed in the Whop emulator (a mix of status changes), then a full sync:
   write calls per object against the floor of that change;
4. an incremental sync (``run_sync("incremental")``): calls and time.

Each sync also prints Dagster's share of it: its wall time less every step's own work (the assets'
and the checks'). ``run_sync`` applies the project's Dagster run-time switches
(``--no-dagster-switches``: without them); ``--dagster-db-url`` puts Dagster's own storage on
Postgres, as production has it.

    uv run python -m benchmarks.bench_load                         # large dataset, SQLite
    uv run python -m benchmarks.bench_load --dataset small --json
    uv run python -m benchmarks.bench_load --db-url postgresql+psycopg2://postgres@127.0.0.1:5432/test
    uv run python -m benchmarks.bench_load --dataset small --compare-scale 0 \\
        --dagster-db-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from benchmarks import common
from whop_pipeline.sandbox.readings import write_requests

TWENTY_CALLS_PER_MINUTE = 100  # the real server's limit, for the projection
STAGES = {
    "extract": ("whop_members", "whop_products", "whop_memberships", "whop_payments"),
    "transform": ("crm_records",),
    "load": ("twenty_schema", "twenty_people", "twenty_products", "twenty_opportunities",
             "twenty_notes", "twenty_note_targets"),
}  # fmt: skip
# The statuses the 1% change cycles through (each membership gets the first that differs from its
# own): cancellations, reactivations, dunning, expiry and cancel-at-period-end.
CHANGE_STATUSES = ("canceled", "active", "past_due", "expired", "canceling")


def table_rows() -> tuple[tuple[str, str, str], ...]:
    """``whop-pipeline sync``'s own table: (Twenty object, its load step, its metadata prefix).
    Imported late: pipeline modules read the environment ``prepare_environment`` sets."""
    from whop_pipeline.cli.sync import TABLE_ROWS

    return TABLE_ROWS


def objects() -> list[str]:
    return [label for label, _step, _prefix in table_rows()]


@dataclass
class SyncRun:
    label: str
    mode: str
    report: Any  # whop_pipeline.cli.sync.SyncReport
    wall_s: float
    timing: common.RunTiming
    twenty: dict[str, Any]
    whop: dict[str, Any]
    peak_rss_mb: float
    step_peak_rss_mb: dict[str, float | None]


def sync(
    sandbox: common.SandboxProcess, instance: Any, mode: str, label: str, sampler: common.RssSampler
) -> SyncRun:
    from whop_pipeline.cli.sync import run_sync

    def progress(line: str) -> None:  # stderr: stdout stays the summary (or the JSON)
        print(f"[{label}] {line}", file=sys.stderr, flush=True)

    sandbox.reset_stats()
    called, started = time.time(), time.perf_counter()
    report = run_sync(mode, instance=instance, printer=progress)
    wall = time.perf_counter() - started
    # This sync's own peak (sampled), not the process's high-water mark of earlier syncs.
    peak = sampler.peak_between(called, time.time()) or common.peak_rss_mb()
    timing = common.run_timing(instance, report.run_id, called, time.time())
    return SyncRun(
        label=label,
        mode=mode,
        report=report,
        wall_s=wall,
        timing=timing,
        twenty=sandbox.twenty_stats(),
        whop=sandbox.whop_stats(),
        peak_rss_mb=peak,
        step_peak_rss_mb={
            step: sampler.peak_between(t.start, t.end) for step, t in timing.steps.items()
        },
    )


def twenty_calls(stats: dict[str, Any]) -> dict[str, Any]:
    """The Twenty emulator's calls: record writes per object, metadata reads and writes, the rest."""
    requests: dict[str, int] = stats["requests"]
    writes = {plural: requests.get(f"POST /rest/batch/{plural}", 0) for plural in objects()}
    metadata_reads = sum(n for k, n in requests.items() if k.startswith("GET /rest/metadata"))
    metadata_writes = sum(
        n for k, n in requests.items() if "/rest/metadata" in k and not k.startswith("GET ")
    )
    other = stats["total"] - sum(writes.values()) - metadata_reads - metadata_writes
    return {
        "record_writes": writes,
        "record_writes_total": sum(writes.values()),
        "metadata_reads": metadata_reads,
        "metadata_writes": metadata_writes,
        "other": other,
        "writes_by_endpoint": write_requests(stats),
        "total": stats["total"],
        "throttled_429": stats["throttled"],
        "faults": stats["faults"],
    }


def object_counts(run: SyncRun) -> dict[str, dict[str, int]]:
    return {label: run.report.counts(step, prefix) for label, step, prefix in table_rows()}


def stage_times(run: SyncRun) -> dict[str, dict[str, float]]:
    steps = run.timing.steps
    result = {}
    for stage, names in STAGES.items():
        present = [steps[n] for n in names if n in steps]
        result[stage] = {
            "total_s": sum(s.total_s for s in present),
            "work_s": sum(s.work_s for s in present),
            "bookkeeping_s": sum(s.bookkeeping_s for s in present),
        }
    known = {n for names in STAGES.values() for n in names}
    others = [s for name, s in steps.items() if name not in known]  # asset checks
    result["checks"] = {
        "total_s": sum(s.total_s for s in others),
        "work_s": sum(s.work_s for s in others),
        "bookkeeping_s": sum(s.bookkeeping_s for s in others),
    }
    return result


def run_summary(run: SyncRun) -> dict[str, Any]:
    timing = run.timing
    steps = timing.steps
    work = timing.work_s()
    bookkeeping = timing.bookkeeping_s() + timing.before_run_s + timing.between_steps_s
    peak_step = max(
        (s for s in run.step_peak_rss_mb.items() if s[1] is not None),
        key=lambda item: item[1],
        default=(None, None),
    )
    calls = twenty_calls(run.twenty)
    return {
        "label": run.label,
        "mode": run.mode,
        "success": run.report.success,
        "error": run.report.error,
        "partitions": [run.report.first_partition, run.report.last_partition],
        "wall_s": run.wall_s,
        "steps_work_s": work,
        # Everything in the wall time that is not the steps' own work: Dagster's.
        "dagster_share_s": run.wall_s - work,
        "dagster_bookkeeping_s": bookkeeping,
        "before_run_s": timing.before_run_s,
        "planned_events": timing.planned_events,
        "between_steps_s": timing.between_steps_s,
        "after_run_s": timing.after_run_s,
        "stages": stage_times(run),
        "twenty": calls,
        "projected_minutes_at_100_per_min": calls["total"] / TWENTY_CALLS_PER_MINUTE,
        "whop_calls": {
            listing: run.whop["requests"].get(f"GET /api/v1/{listing}", 0)
            for listing in common.WHOP_LISTINGS
        },
        "whop_calls_total": run.whop["total"],
        "objects": object_counts(run),
        "peak_rss_mb": run.peak_rss_mb,
        "peak_step": peak_step[0],
        "peak_step_rss_mb": peak_step[1],
        "steps": {
            name: {
                "total_s": s.total_s,
                "work_s": s.work_s,
                "bookkeeping_s": s.bookkeeping_s,
                "materializations": s.materializations,
                "peak_rss_mb": run.step_peak_rss_mb.get(name),
                "api_calls": run.report.metadata.get(name, {}).get("api_calls"),
                "write_calls": run.report.metadata.get(name, {}).get("write_calls"),
            }
            for name, s in sorted(steps.items(), key=lambda item: item[1].start)
        },
    }


def _memberships(whop_root: str) -> list[tuple[str, str, bool]]:
    import httpx

    response = httpx.get(f"{whop_root}/_sandbox/dump/memberships", timeout=600)
    response.raise_for_status()
    return [
        (row["id"], row["status"], bool(row.get("cancel_at_period_end")))
        for row in response.json()["data"]
    ]


def change_memberships(sandbox: common.SandboxProcess, share: float) -> dict[str, Any]:
    """Change ``share`` of the memberships through the emulator's control endpoint: evenly spread
    over the id order, each to the next status in ``CHANGE_STATUSES`` that differs from its own."""
    memberships = sorted(common.in_worker(_memberships, sandbox.whop_root))
    count = max(1, round(len(memberships) * share))
    step = len(memberships) / count
    chosen = [memberships[int(i * step)] for i in range(count)]
    transitions: collections.Counter[str] = collections.Counter()
    for n, (membership_id, status, _cancel_at_period_end) in enumerate(chosen):
        options = [s for s in CHANGE_STATUSES if s != status]
        new_status = options[n % len(options)]
        sandbox.update_membership(membership_id, {"status": new_status})
        transitions[f"{status}→{new_status}"] += 1
    return {
        "memberships": len(memberships),
        "changed": count,
        "to_status": dict(
            collections.Counter(t.split("→")[1] for t in transitions.elements()).most_common()
        ),
        "transitions": dict(transitions.most_common()),
    }


def run(
    dataset: str,
    db_url: str | None,
    keep: bool,
    change_share: float,
    scale: int = 1,
    *,
    dagster_db_url: str | None = None,
    dagster_switches: bool = True,
) -> dict[str, Any]:
    switches = common.prepare_environment(dagster_switches)
    results: dict[str, Any] = {
        "benchmark": "load",
        "dataset": dataset,
        "scale": scale,
        "dagster_switches": switches,
        "at": common.utc_now(),
        "client_twenty_calls_per_minute": common.FAST_TWENTY_PER_MINUTE,
        "server_twenty_calls_per_minute": common.FAST_TWENTY_SERVER_PER_MINUTE,
    }
    with common.start_sandbox_process(dataset, scale=scale) as sandbox:
        results["sandbox_counts"] = sandbox.whop_dataset()["counts"]
        results["sandbox_start_s"] = sandbox.started_s
        with (
            common.pipeline_database(db_url, keep) as url,
            common.dagster_instance(dagster_db_url, keep) as instance,
        ):
            results["database"] = common.describe_db(url)
            results["dagster_storage"] = common.describe_dagster_storage(instance)
            os.environ.update(sandbox.env)
            os.environ["WHOP_PIPELINE_DB_URL"] = url
            os.environ["WHOP_MAX_REQUESTS_PER_SECOND"] = str(common.FAST_WHOP_PER_SECOND)
            os.environ["TWENTY_MAX_CALLS_PER_MINUTE"] = str(common.FAST_TWENTY_PER_MINUTE)
            os.environ.setdefault("TWENTY_BATCH_SIZE", str(common.TWENTY_BATCH))
            results["batch_size"] = int(os.environ["TWENTY_BATCH_SIZE"])
            results["peak_rss_mb_before_runs"] = common.peak_rss_mb()
            with common.RssSampler() as sampler:
                full = sync(sandbox, instance, "full", "full sync", sampler)
                landed = common.twenty_live_counts(sandbox.twenty_url)
                again = sync(sandbox, instance, "full", "re-sync", sampler)
                change = change_memberships(sandbox, change_share)
                changed = sync(sandbox, instance, "full", "after 1% change", sampler)
                incremental = sync(sandbox, instance, "incremental", "incremental", sampler)
            full_window = common.read_window(
                full.report.first_partition, full.report.last_partition
            )
            inc_window = common.read_window(
                incremental.report.first_partition, incremental.report.last_partition
            )
            (_, minimum_full), (_, minimum_inc) = common.whop_minimum(
                sandbox, [full_window, inc_window]
            )
            # Incremental: members created after the newest one in the mirror (none here), one
            # page; the full member scan belongs to full and reconcile syncs.
            minimum_inc["members"] = 1
            results["whop_minimum_full"] = minimum_full
            results["whop_minimum_incremental"] = minimum_inc
        results["sandbox_peak_rss_mb"] = sandbox.peak_rss_mb()
    batch = results["batch_size"]
    results["landed"] = {plural: landed.get(plural, 0) for plural in objects()}
    results["floor"] = {p: common.batches(n, batch) for p, n in results["landed"].items()}
    results["floor_total"] = sum(results["floor"].values())
    results["full"] = run_summary(full)
    results["full"]["ratio"] = common.ratio(
        results["full"]["twenty"]["record_writes_total"], results["floor_total"]
    )
    results["resync"] = run_summary(again)
    results["change"] = change
    results["change_floor"] = {
        "opportunities": common.batches(change["changed"], batch),
        **{p: 0 for p in objects() if p != "opportunities"},
    }
    results["after_change"] = run_summary(changed)
    results["after_change"]["ratio"] = common.ratio(
        results["after_change"]["twenty"]["record_writes_total"],
        sum(results["change_floor"].values()),
    )
    results["incremental"] = run_summary(incremental)
    results["target_ratio"] = 1.05
    return results


# --- printing ---------------------------------------------------------------------------------


def _sync_lines(s: dict[str, Any]) -> list[str]:
    stages = s["stages"]
    minutes = s["projected_minutes_at_100_per_min"]
    lines = [
        f"    partitions {s['partitions'][0]} … {s['partitions'][1]}; "
        + ("succeeded" if s["success"] else f"FAILED: {s['error']}"),
        f"    Dagster's share: wall {s['wall_s']:.1f} s − assets' own work"
        f" {s['steps_work_s']:.1f} s = {s['dagster_share_s']:.1f} s",
        f"    wall {s['wall_s']:.1f} s = steps' own work {s['steps_work_s']:.1f} s"
        f" (extract {stages['extract']['work_s']:.1f}, transform {stages['transform']['work_s']:.1f},"
        f" load {stages['load']['work_s']:.1f}, checks {stages['checks']['work_s']:.1f})"
        f" + Dagster bookkeeping {s['dagster_bookkeeping_s']:.1f} s"
        f" ({s['planned_events']:,} 'planned' events before the run {s['before_run_s']:.1f} s,"
        f" per-partition materializations {s['dagster_bookkeeping_s'] - s['before_run_s']:.1f} s)",
        f"    Twenty calls {s['twenty']['total']:,}: record writes"
        f" {s['twenty']['record_writes_total']:,}, metadata reads {s['twenty']['metadata_reads']},"
        f" metadata writes {s['twenty']['metadata_writes']}, other {s['twenty']['other']};"
        f" 429s {s['twenty']['throttled_429']}",
        f"    projected at {TWENTY_CALLS_PER_MINUTE} calls/min: {minutes:,.1f} min"
        f" ({minutes / 60:.2f} h) of Twenty's budget; actual wall here {s['wall_s'] / 60:.1f} min",
        f"    Whop calls {s['whop_calls_total']:,} ("
        + ", ".join(f"{k} {v:,}" for k, v in s["whop_calls"].items())
        + ")",
        f"    peak RSS of this process {s['peak_rss_mb']:.0f} MB"
        + (
            f" (highest sample {s['peak_step_rss_mb']:.0f} MB during {s['peak_step']})"
            if s["peak_step"]
            else ""
        ),
    ]
    return lines


def _object_table(
    s: dict[str, Any], floor: dict[str, int], rows: dict[str, int] | None
) -> list[str]:
    header = (
        f"    {'object':<14}{'landed':>9}{'created':>9}{'updated':>9}{'unchanged':>10}"
        f"{'writes':>8}{'floor':>7}{'ratio':>9}"
    )
    lines = [header]
    for plural in objects():
        counts = s["objects"][plural]
        writes = s["twenty"]["record_writes"][plural]
        landed = f"{rows[plural]:>9,}" if rows else f"{'':>9}"
        lines.append(
            f"    {plural:<14}{landed}{counts['created']:>9,}{counts['updated']:>9,}"
            f"{counts['unchanged']:>10,}{writes:>8,}{floor[plural]:>7,}"
            f"{common.fmt_ratio(common.ratio(writes, floor[plural])):>9}"
        )
    total = s["twenty"]["record_writes_total"]
    floor_total = sum(floor.values())
    lines.append(
        f"    {'total':<14}{f'{sum(rows.values()):,}' if rows else '':>9}{'':>28}{total:>8,}"
        f"{floor_total:>7,}{common.fmt_ratio(common.ratio(total, floor_total)):>9}"
    )
    return lines


def _step_lines(s: dict[str, Any]) -> list[str]:
    lines = [
        "    steps (total = own work + Dagster bookkeeping; RSS = highest sample in the step):"
    ]
    width = max((len(name) for name in s["steps"]), default=0) + 2  # asset checks' names are long
    for name, step in s["steps"].items():
        calls = f"; {step['api_calls']} calls" if step["api_calls"] is not None else ""
        writes = f", {step['write_calls']} writes" if step["write_calls"] is not None else ""
        peak = f"; RSS {step['peak_rss_mb']:.0f} MB" if step["peak_rss_mb"] else ""
        lines.append(
            f"      {name:<{width}}{step['total_s']:>7.1f} s = {step['work_s']:>6.1f}"
            f" + {step['bookkeeping_s']:>5.1f} ({step['materializations']:>4} mat.)"
            f"{calls}{writes}{peak}"
        )
    return lines


def summary_lines(r: dict[str, Any]) -> list[str]:
    counts = ", ".join(f"{v:,} {k}" for k, v in r["sandbox_counts"].items())
    full, again, changed, inc = r["full"], r["resync"], r["after_change"], r["incremental"]
    minimum_full = sum(r["whop_minimum_full"].values())
    minimum_inc = sum(r["whop_minimum_incremental"].values())
    change = r["change"]
    lines = [
        f"load benchmark — dataset {r['dataset']}"
        + (f" ×{r['scale']}" if r["scale"] != 1 else "")
        + f", {r['database']}, {r['dagster_storage']},"
        f" {common.describe_switches(r['dagster_switches'])}, {r['at']}",
        f"  sandbox (separate process): {counts}; started in {r['sandbox_start_s']:.1f} s"
        + (f"; its peak RSS {r['sandbox_peak_rss_mb']:.0f} MB" if r["sandbox_peak_rss_mb"] else ""),
        f"  Twenty emulator limit {r['server_twenty_calls_per_minute']:,}/min (+ its 100/s bucket);"
        f" client paced at {r['client_twenty_calls_per_minute']:,}/min; batch size {r['batch_size']}",
        "",
        "  1. full sync into an empty CRM",
        *_object_table(full, r["floor"], r["landed"]),
        f"    write calls vs floor: {common.fmt_ratio(full['ratio'])} (target ≤ {r['target_ratio']}×)",
        *_sync_lines(full),
        f"    Whop calls vs minimum {minimum_full:,}:"
        f" {common.fmt_ratio(common.ratio(full['whop_calls_total'], minimum_full))}",
        *_step_lines(full),
        "",
        "  2. re-sync (full), nothing changed",
        f"    Twenty record writes {again['twenty']['record_writes_total']} (target 0);"
        + " unchanged: "
        + ", ".join(f"{p} {again['objects'][p]['unchanged']:,}" for p in objects()),
        *_sync_lines(again),
        "",
        f"  3. {change['changed']} of {change['memberships']:,} memberships changed"
        f" ({change['changed'] / change['memberships']:.1%}) in the Whop emulator, then a full sync",
        "    new statuses: " + ", ".join(f"{k} {v}" for k, v in change["to_status"].items()),
        *_object_table(changed, r["change_floor"], None),
        f"    write calls vs floor of the change: {common.fmt_ratio(changed['ratio'])}",
        *_sync_lines(changed),
        "",
        "  4. incremental sync (products, new members, the last two days of memberships and"
        " payments; CRM records rebuilt for what changed)",
        f"    Twenty record writes {inc['twenty']['record_writes_total']};"
        f" Whop calls {inc['whop_calls_total']:,} vs minimum {minimum_inc:,}"
        f" ({common.fmt_ratio(common.ratio(inc['whop_calls_total'], minimum_inc))})",
        *_sync_lines(inc),
        *_step_lines(inc),
    ]
    return lines


def scaled_run(args: Any) -> dict[str, Any]:
    """The same benchmark at ``--compare-scale`` times the dataset, in a fresh process (so its peak
    RSS is its own), as JSON."""
    command = [
        sys.executable, "-m", "benchmarks.bench_load", "--json", "--compare-scale", "0",
        "--dataset", args.dataset, "--scale", str(args.compare_scale),
        "--change", str(args.change),
    ]  # fmt: skip
    if args.db_url:
        command += ["--db-url", args.db_url]
    if args.dagster_db_url:
        command += ["--dagster-db-url", args.dagster_db_url]
    if not args.dagster_switches:
        command.append("--no-dagster-switches")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"the scale {args.compare_scale} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def scale_lines(base: dict[str, Any], scaled: dict[str, Any]) -> list[str]:
    """Peak RSS and incremental cost at both sizes: they must not grow with the account."""
    lines = [
        "",
        f"  5. the same at scale {scaled['scale']} (a fresh process): does cost follow the account?",
        f"    {'':<22}{'scale ' + str(base['scale']):>14}{'scale ' + str(scaled['scale']):>14}"
        f"{'ratio':>9}",
    ]
    rows = [
        ("full sync peak RSS MB", base["full"]["peak_rss_mb"], scaled["full"]["peak_rss_mb"]),
        ("re-sync peak RSS MB", base["resync"]["peak_rss_mb"], scaled["resync"]["peak_rss_mb"]),
        ("incremental wall s", base["incremental"]["wall_s"], scaled["incremental"]["wall_s"]),
        (
            "incremental Whop calls",
            base["incremental"]["whop_calls_total"],
            scaled["incremental"]["whop_calls_total"],
        ),
        (
            "incremental writes",
            base["incremental"]["twenty"]["record_writes_total"],
            scaled["incremental"]["twenty"]["record_writes_total"],
        ),
        ("full sync wall s", base["full"]["wall_s"], scaled["full"]["wall_s"]),
    ]
    for label, a, b in rows:
        lines.append(
            f"    {label:<22}{a:>14,.1f}{b:>14,.1f}{common.fmt_ratio(common.ratio(b, a)):>9}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = common.sync_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--change", type=float, default=0.01, help="share of memberships to change (0.01)"
    )
    parser.add_argument(
        "--compare-scale",
        type=int,
        default=2,
        help="also run at this scale in a fresh process and compare (0: skip)",
    )
    args = parser.parse_args(argv)
    results = run(
        args.dataset,
        args.db_url,
        args.keep,
        args.change,
        args.scale,
        dagster_db_url=args.dagster_db_url,
        dagster_switches=args.dagster_switches,
    )
    lines = summary_lines(results)
    if args.compare_scale:
        results["scaled"] = scaled_run(args)
        lines += scale_lines(results, results["scaled"])
    common.emit(results, lines, args.json)
    failed = [
        k for k in ("full", "resync", "after_change", "incremental") if not results[k]["success"]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
