"""Churn and lead model benchmark: the models on a generated dataset, and the pipeline's own path.

The model measurement generates the sandbox dataset in this process (``--churn learnable`` by
default), builds the frames from its API-shaped objects, then times ``training_rows`` (snapshots
every 15 days), ``train`` and ``ChurnModel.score`` over the memberships active at the end of the
data, and the same for the lead score (``lead_training_rows``, ``train_lead``, ``LeadModel.score``
over the candidates at the end of the data). Prints the holdout AUC, the best single-feature AUC, the
chosen model, ``no_signal``, each step's seconds and the process's peak RSS (``resource.getrusage``)
after each step (it only grows: a step's own peak is its rise, if any). These peaks include the
dataset and every object rendered as JSON: the emulator's memory, not the pipeline's.

The pipeline path measures what a deployment runs (``whop_pipeline.health.scoring``). A worker
process generates the same dataset and writes it into a fresh SQLite mirror (connection ``bench``,
1,000 rows per transaction), then exits. A fresh interpreter
(``python -m benchmarks.bench_health --pipeline-child DB_URL --now ISO``) imports the pipeline,
then runs ``train_and_store`` (churn), ``train_and_store`` (lead), ``score`` and ``score`` again
(nothing new: 0 changed records expected) as of the dataset's end, and reports per step its seconds,
the step's own peak RSS, the process's peak so far and its RSS afterwards. Peaks are the child's own
high-water mark (Linux ``VmHWM``, reset at each step's start through ``/proc/self/clear_refs``), not
``ru_maxrss``: Linux carries ``ru_maxrss`` across ``exec``, so a child of this (large) process would
report this process's peak. Every figure is the whole process's resident memory: the interpreter,
the imported libraries (pandas, scikit-learn, SQLAlchemy) and SQLite's page cache included; the
import baseline (RSS after importing the pipeline modules and opening the engine) is printed so
that what a step adds can be read against it. ``--compare-scale N`` (default 2; 0 skips it) runs
the pipeline path again at ``scale * N`` and prints the ratios.

    uv run python -m benchmarks.bench_health                    # large dataset
    uv run python -m benchmarks.bench_health --scale 2 --json
    uv run python -m benchmarks.bench_health --churn random
    uv run python -m benchmarks.bench_health --part pipeline --compare-scale 0
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
CONNECTION = "bench"
MIRROR_BATCH = 1_000
# Mirror tables in the order a sync fills them (the catalog first).
MIRROR_KINDS = ("products", "plans", "members", "memberships", "payments")


def measured(function: Callable[[], Any]) -> tuple[Any, float, float]:
    """``function()``, its seconds and the process's peak RSS in MB after it."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started, common.peak_rss_mb()


def run(size: str, seed: int, scale: int, churn: str) -> dict[str, Any]:
    from whop_pipeline.health import facts, lead, model
    from whop_pipeline.sandbox.dataset import generate_dataset

    started = time.perf_counter()
    dataset = generate_dataset(size, seed=seed, now=NOW, scale=scale, churn=churn)
    memberships = facts.memberships_frame(dataset.rendered("memberships"))
    payments = facts.payments_frame(dataset.rendered("payments"))
    plans = facts.plans_frame(dataset.rendered("plans"))
    prepare_s = time.perf_counter() - started
    prepare_mb = common.peak_rss_mb()

    first, last = model.data_span(memberships, payments)
    snapshots = model.snapshot_times(last, first)
    rows, rows_s, rows_mb = measured(
        lambda: model.training_rows(memberships, payments, plans, snapshots)
    )
    churn_model, train_s, train_mb = measured(lambda: model.train(rows, now=last))
    current = facts.membership_facts(memberships, payments, plans, last)
    active = current[current["active_at"]]
    scores, score_s, score_mb = measured(lambda: churn_model.score(active))
    metrics = churn_model.metrics

    lead_rows, lead_rows_s, lead_rows_mb = measured(
        lambda: lead.lead_training_rows(memberships, payments, plans, snapshots)
    )
    lead_model, lead_train_s, lead_train_mb = measured(lambda: lead.train_lead(lead_rows, now=last))
    candidates = lead.lead_features(memberships, payments, plans, last)
    lead_scores, lead_score_s, lead_score_mb = measured(lambda: lead_model.score(candidates))
    lead_metrics = lead_model.metrics
    return {
        "size": size,
        "scale": scale,
        "churn": churn,
        "memberships": len(memberships),
        "payments": len(payments),
        "snapshots": len(snapshots),
        "rows": len(rows),
        "positives": int(rows["ends_within_30d"].sum()),
        "scored": len(scores),
        "chosen": churn_model.chosen,
        "no_signal": churn_model.no_signal,
        "roc_auc": metrics["roc_auc"],
        "candidate_auc": metrics.get("candidate_auc"),
        "baseline_auc": metrics["baseline_auc"],
        "baseline_feature": metrics.get("baseline_feature"),
        "brier": metrics["brier"],
        "prepare_s": prepare_s,
        "prepare_peak_rss_mb": prepare_mb,
        "training_rows_s": rows_s,
        "training_rows_peak_rss_mb": rows_mb,
        "train_s": train_s,
        "train_peak_rss_mb": train_mb,
        "score_s": score_s,
        "score_peak_rss_mb": score_mb,
        "lead_rows": len(lead_rows),
        "lead_positives": int(lead_rows[lead.LABEL].sum()) if len(lead_rows) else 0,
        "lead_scored": len(lead_scores),
        "lead_chosen": lead_model.chosen,
        "lead_no_signal": lead_model.no_signal,
        "lead_roc_auc": lead_metrics["roc_auc"],
        "lead_candidate_auc": lead_metrics.get("candidate_auc"),
        "lead_baseline_auc": lead_metrics["baseline_auc"],
        "lead_baseline_feature": lead_metrics["baseline_feature"],
        "lead_brier": lead_metrics["brier"],
        "lead_training_rows_s": lead_rows_s,
        "lead_training_rows_peak_rss_mb": lead_rows_mb,
        "lead_train_s": lead_train_s,
        "lead_train_peak_rss_mb": lead_train_mb,
        "lead_score_s": lead_score_s,
        "lead_score_peak_rss_mb": lead_score_mb,
        "peak_rss_mb": common.peak_rss_mb(),
    }


def describe(r: dict[str, Any]) -> list[str]:
    def auc(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return [
        f"churn model: size={r['size']} scale={r['scale']} churn={r['churn']}",
        f"  data: {r['memberships']:,} memberships, {r['payments']:,} payments "
        f"(generated and framed in {r['prepare_s']:.1f} s)",
        f"  training rows: {r['rows']:,} rows, {r['positives']:,} ended, {r['snapshots']} snapshots"
        f"   {r['training_rows_s']:.2f} s, peak {r['training_rows_peak_rss_mb']:.0f} MB RSS",
        f"  train: chosen={r['chosen']} holdout AUC {auc(r['roc_auc'])} "
        f"(best single feature {auc(r['baseline_auc'])}, {r['baseline_feature']}) "
        f"no_signal={r['no_signal']}   {r['train_s']:.2f} s, peak {r['train_peak_rss_mb']:.0f} MB RSS",
        f"  score: {r['scored']:,} active memberships   {r['score_s']:.2f} s, "
        f"peak {r['score_peak_rss_mb']:.0f} MB RSS",
        "lead score:",
        f"  training rows: {r['lead_rows']:,} rows, {r['lead_positives']:,} started"
        f"   {r['lead_training_rows_s']:.2f} s, peak {r['lead_training_rows_peak_rss_mb']:.0f} MB RSS",
        f"  train: chosen={r['lead_chosen']} holdout AUC {auc(r['lead_roc_auc'])} "
        f"(best single feature {auc(r['lead_baseline_auc'])}, {r['lead_baseline_feature']}) "
        f"no_signal={r['lead_no_signal']}   {r['lead_train_s']:.2f} s, "
        f"peak {r['lead_train_peak_rss_mb']:.0f} MB RSS",
        f"  score: {r['lead_scored']:,} candidates   {r['lead_score_s']:.2f} s, "
        f"peak {r['lead_score_peak_rss_mb']:.0f} MB RSS",
        f"  peak RSS: {r['peak_rss_mb']:.0f} MB (after framing the data: {r['prepare_peak_rss_mb']:.0f} MB)",
    ]


# --- the pipeline path ------------------------------------------------------------------------------


def write_mirror(size: str, seed: int, scale: int, churn: str, url: str) -> dict[str, Any]:
    """Generate the dataset and write every object into the mirror at ``url`` as the extract does
    (parsed Whop models, ``to_raw_record``, ``upsert_raw``), ``MIRROR_BATCH`` rows per transaction.
    Runs in a worker process: the dataset never lives in the process that is measured."""
    from whop_pipeline.sandbox.dataset import generate_dataset
    from whop_pipeline.sandbox.whop.render import member_counts, render
    from whop_pipeline.store.database import dispose_engine, get_engine
    from whop_pipeline.store.raw import count_raw, upsert_raw
    from whop_pipeline.whop.mirror import to_raw_record
    from whop_pipeline.whop.models import RESOURCES, parse_object

    started = time.perf_counter()
    dataset = generate_dataset(size, seed=seed, now=NOW, scale=scale, churn=churn)
    generate_s = time.perf_counter() - started
    engine = get_engine(url)
    started = time.perf_counter()
    for kind in MIRROR_KINDS:
        model = RESOURCES["variants" if kind == "plans" else kind]
        counts = member_counts(dataset) if kind in ("products", "plans") else None
        records = dataset.records(kind)
        for start in range(0, len(records), MIRROR_BATCH):
            batch = [
                to_raw_record(
                    parse_object(model, render(dataset, kind, r, counts=counts), kind), NOW
                )
                for r in records[start : start + MIRROR_BATCH]
            ]
            with engine.begin() as conn:
                upsert_raw(conn, kind, CONNECTION, batch, extracted_at=NOW)
    write_s = time.perf_counter() - started
    with engine.connect() as conn:
        rows = {kind: count_raw(conn, kind, CONNECTION) for kind in MIRROR_KINDS}
    dispose_engine(url)
    database = Path(url.removeprefix("sqlite:///"))
    on_disk = sum(f.stat().st_size for f in database.parent.glob(database.name + "*"))
    return {
        "rows": rows,
        "total_rows": sum(rows.values()),
        "now": dataset.now.isoformat(),
        "generate_s": generate_s,
        "write_s": write_s,
        "db_mb": on_disk / 2**20,
        "worker_peak_rss_mb": _own_peak_mb(),
    }


def _own_peak_mb() -> float:
    """This process's own peak RSS: ``VmHWM`` of its address space where Linux has it (unlike
    ``ru_maxrss``, it does not carry the parent's peak across ``exec``), else ``ru_maxrss``."""
    peak = common.process_peak_rss_mb(os.getpid())
    return peak if peak is not None else common.peak_rss_mb()


def _rss_mb() -> float:
    """This process's current RSS; where ``/proc`` is missing, its peak so far stands in."""
    current = common.current_rss_mb()
    return current if current is not None else common.peak_rss_mb()


def _reset_peak() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux ``clear_refs`` 5); False where it
    cannot be reset (then a step's own peak is not known, only the process's peak so far)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return common.process_peak_rss_mb(os.getpid()) is not None


def pipeline_child(url: str, now: dt.datetime) -> dict[str, Any]:
    """The pipeline's own path over the mirror at ``url``, in this (fresh) process: train both
    models, score, score again; seconds and memory of each step."""
    inherited_mb = common.peak_rss_mb()  # ru_maxrss: on Linux at least the parent's peak
    start_mb = _rss_mb()
    started = time.perf_counter()
    from whop_pipeline.health import scoring
    from whop_pipeline.store.database import get_engine

    engine = get_engine(url)
    import_s = time.perf_counter() - started
    baseline_mb = _rss_mb()
    peak_mb = _own_peak_mb()
    resettable = _reset_peak()
    steps: dict[str, dict[str, Any]] = {}

    def step(name: str, function: Callable[[], Any]) -> Any:
        nonlocal peak_mb
        before = _rss_mb()
        if resettable:
            _reset_peak()
        began, began_cpu = time.perf_counter(), time.process_time()
        result = function()
        seconds, cpu = time.perf_counter() - began, time.process_time() - began_cpu
        own = _own_peak_mb()
        peak_mb = max(peak_mb, own)
        steps[name] = {
            "s": seconds,
            "cpu_s": cpu,
            "rss_before_mb": before,
            "step_peak_rss_mb": own if resettable else None,
            "peak_rss_mb": peak_mb,
            "rss_after_mb": _rss_mb(),
        }
        return result

    churn = step("train_churn", lambda: scoring.train_and_store(engine, CONNECTION, "churn", now))
    lead = step("train_lead", lambda: scoring.train_and_store(engine, CONNECTION, "lead", now))
    first = step("score", lambda: scoring.score(engine, CONNECTION, now))
    again = step("rescore", lambda: scoring.score(engine, CONNECTION, now))
    engine.dispose()
    person, opportunity = scoring.PERSON_HEALTH, scoring.OPPORTUNITY_HEALTH
    return {
        "peak_source": "VmHWM" if resettable else "ru_maxrss",
        "inherited_ru_maxrss_mb": inherited_mb,
        "start_rss_mb": start_mb,
        "import_s": import_s,
        "baseline_rss_mb": baseline_mb,
        "steps": steps,
        "peak_rss_mb": peak_mb,
        "ru_maxrss_mb": common.peak_rss_mb(),
        "churn_rows": churn.rows,
        "churn_snapshots": churn.snapshots,
        "churn_chosen": churn.model.chosen,
        "churn_no_signal": churn.model.no_signal,
        "lead_rows": lead.rows,
        "lead_snapshots": lead.snapshots,
        "lead_chosen": lead.model.chosen,
        "lead_no_signal": lead.model.no_signal,
        "people": first.people,
        "memberships_scored": first.memberships_scored,
        "people_at_risk": first.people_at_risk,
        "leads": first.leads,
        "changed_people": first.changed_count(person),
        "changed_opportunities": first.changed_count(opportunity),
        "rescore_people": again.people,
        "rescore_changed_people": again.changed_count(person),
        "rescore_changed_opportunities": again.changed_count(opportunity),
    }


def _run_child(url: str, now: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_health",
        "--pipeline-child",
        url,
        "--now",
        now,
    ]
    completed = subprocess.run(
        command,
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        raise RuntimeError(
            f"the pipeline child failed ({completed.returncode}):\n{completed.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def pipeline_path(size: str, seed: int, scale: int, churn: str) -> dict[str, Any]:
    """The dataset written into a fresh SQLite mirror by a worker process, then the pipeline's
    training and scoring over it in a child process of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-health-") as folder:
        url = f"sqlite:///{Path(folder) / 'mirror.db'}"
        mirror = common.in_worker(write_mirror, size, seed, scale, churn, url)
        child = _run_child(url, mirror["now"])
    return {"size": size, "scale": scale, "churn": churn, "mirror": mirror, **child}


def _above(p: dict[str, Any]) -> float:
    return p["peak_rss_mb"] - p["baseline_rss_mb"]


def _train_s(p: dict[str, Any], what: str = "s") -> float:
    return p["steps"]["train_churn"][what] + p["steps"]["train_lead"][what]


def _history_rows(p: dict[str, Any]) -> int:
    return p["mirror"]["rows"]["memberships"] + p["mirror"]["rows"]["payments"]


def compare(one: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """``more`` (a larger scale) against ``one``."""
    return {
        "scales": [one["scale"], more["scale"]],
        "peak_above_baseline": common.ratio(_above(more), _above(one)),
        "peak": common.ratio(more["peak_rss_mb"], one["peak_rss_mb"]),
        "train_s": common.ratio(_train_s(more), _train_s(one)),
        "train_cpu_s": common.ratio(_train_s(more, "cpu_s"), _train_s(one, "cpu_s")),
        "score_s": common.ratio(more["steps"]["score"]["s"], one["steps"]["score"]["s"]),
        "score_cpu_s": common.ratio(
            more["steps"]["score"]["cpu_s"], one["steps"]["score"]["cpu_s"]
        ),
        "rescore_s": common.ratio(more["steps"]["rescore"]["s"], one["steps"]["rescore"]["s"]),
        "mirror_rows": common.ratio(more["mirror"]["total_rows"], one["mirror"]["total_rows"]),
        "history_rows": common.ratio(_history_rows(more), _history_rows(one)),
        "training_rows": common.ratio(
            more["churn_rows"] + more["lead_rows"], one["churn_rows"] + one["lead_rows"]
        ),
    }


def _seconds(s: dict[str, Any]) -> str:
    """Wall seconds, and the process's CPU seconds (less sensitive to other load on the machine)."""
    return f"{s['s']:.2f} s (CPU {s['cpu_s']:.2f} s)"


def _memory(s: dict[str, Any], baseline: float) -> str:
    """A step's memory: its own peak (above the import baseline), the RSS it started from (what
    earlier steps left resident, freed or not, is part of its peak), the process's peak so far and
    the RSS it left."""
    own = s["step_peak_rss_mb"]
    shown = (
        f"step peak {own:.0f} MB (+{own - baseline:.0f})" if own is not None else "step peak n/a"
    )
    return (
        f"{shown} from {s['rss_before_mb']:.0f} MB, peak so far {s['peak_rss_mb']:.0f} MB, "
        f"after {s['rss_after_mb']:.0f} MB RSS"
    )


def describe_pipeline(p: dict[str, Any]) -> list[str]:
    m, steps, base = p["mirror"], p["steps"], p["baseline_rss_mb"]
    rows = m["rows"]
    inherited = ""
    if p["inherited_ru_maxrss_mb"] > p["peak_rss_mb"]:
        inherited = (
            f"; its ru_maxrss reads {p['ru_maxrss_mb']:.0f} MB: the parent's peak, which Linux "
            "carries across exec"
        )
    expected = (
        "as expected"
        if p["rescore_changed_people"] == 0 and p["rescore_changed_opportunities"] == 0
        else "EXPECTED 0"
    )
    return [
        f"pipeline path: size={p['size']} scale={p['scale']} churn={p['churn']} "
        f"(SQLite mirror, connection {CONNECTION!r}, as of {m['now']})",
        f"  mirror: {rows['members']:,} members, {rows['memberships']:,} memberships, "
        f"{rows['payments']:,} payments, {rows['products']} products, {rows['plans']} plans "
        f"({m['total_rows']:,} rows, {m['db_mb']:.0f} MB on disk), written {MIRROR_BATCH:,} rows "
        f"per transaction in {m['write_s']:.1f} s by a worker process "
        f"(generated in {m['generate_s']:.1f} s; its peak {m['worker_peak_rss_mb']:.0f} MB is not "
        "in the figures below)",
        f"  child process: {p['start_rss_mb']:.0f} MB RSS at start, {base:.0f} MB after importing "
        f"the pipeline modules and opening the engine ({p['import_s']:.1f} s): the import baseline",
        f"  train churn: {p['churn_rows']:,} rows, {p['churn_snapshots']} snapshots, "
        f"chosen={p['churn_chosen']} no_signal={p['churn_no_signal']}   "
        f"{_seconds(steps['train_churn'])}, {_memory(steps['train_churn'], base)}",
        f"  train lead: {p['lead_rows']:,} rows, {p['lead_snapshots']} snapshots, "
        f"chosen={p['lead_chosen']} no_signal={p['lead_no_signal']}   "
        f"{_seconds(steps['train_lead'])}, {_memory(steps['train_lead'], base)}",
        f"  score: {p['people']:,} people, {p['memberships_scored']:,} memberships scored, "
        f"{p['people_at_risk']:,} people at risk; {p['changed_people']:,} people and "
        f"{p['changed_opportunities']:,} opportunities changed   "
        f"{_seconds(steps['score'])}, {_memory(steps['score'], base)}",
        f"  score again: {p['rescore_changed_people']:,} people and "
        f"{p['rescore_changed_opportunities']:,} opportunities changed ({expected})   "
        f"{_seconds(steps['rescore'])}, {_memory(steps['rescore'], base)}",
        f"  child peak RSS: {p['peak_rss_mb']:.0f} MB = {base:.0f} MB import baseline "
        f"+ {_above(p):.0f} MB ({p['peak_source']} of the child's own address space: interpreter, "
        f"libraries and SQLite cache included{inherited})",
    ]


def describe_compare(c: dict[str, Any]) -> list[str]:
    one, more = c["scales"]
    x = common.fmt_ratio
    return [
        f"pipeline path, scale {more} vs {one}: mirror rows {x(c['mirror_rows'])} "
        f"(memberships + payments {x(c['history_rows'])}), training rows {x(c['training_rows'])}",
        f"  peak RSS above the import baseline {x(c['peak_above_baseline'])} "
        f"(whole peak {x(c['peak'])}), train s {x(c['train_s'])} (CPU {x(c['train_cpu_s'])}), "
        f"score s {x(c['score_s'])} (CPU {x(c['score_cpu_s'])}), "
        f"score again s {x(c['rescore_s'])}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small", "large"), default="large")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--churn", choices=("learnable", "random"), default="learnable")
    parser.add_argument(
        "--part",
        choices=("all", "model", "pipeline"),
        default="all",
        help="the in-process model measurement, the pipeline path, or both (default)",
    )
    parser.add_argument(
        "--compare-scale",
        type=int,
        default=2,
        metavar="N",
        help="also run the pipeline path at scale × N and print the ratios (0: skip)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--pipeline-child", metavar="DB_URL", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pipeline_child:
        now = dt.datetime.fromisoformat(args.now) if args.now else NOW
        print(json.dumps(pipeline_child(args.pipeline_child, now)))
        return 0
    results: dict[str, Any] = {}
    lines: list[str] = []
    if args.part in ("all", "model"):
        measured_model = run(args.size, args.seed, args.scale, args.churn)
        results.update({k: common.rounded(v, 3) for k, v in measured_model.items()})
        lines += describe(measured_model)
    if args.part in ("all", "pipeline"):
        one = pipeline_path(args.size, args.seed, args.scale, args.churn)
        results["pipeline"] = common.rounded(one, 3)
        lines += describe_pipeline(one)
        if args.compare_scale > 0:
            scale = args.scale * args.compare_scale
            more = pipeline_path(args.size, args.seed, scale, args.churn)
            ratios = compare(one, more)
            results["pipeline_compare"] = common.rounded({"pipeline": more, "ratios": ratios}, 3)
            lines += describe_pipeline(more) + describe_compare(ratios)
    common.emit(results, lines, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
