"""Churn model benchmark: training rows, training and scoring on a generated dataset.

Generates the sandbox dataset in process (``--churn learnable`` by default), builds the frames from
its API-shaped objects, then times ``training_rows`` (snapshots every 15 days), ``train`` and
``ChurnModel.score`` over the memberships active at the end of the data. Prints the holdout AUC,
the best single-feature AUC, the chosen model, each step's seconds and the process's peak RSS
(``resource.getrusage``) after each step (it only grows: a step's own peak is its rise, if any).

    uv run python -m benchmarks.bench_health                    # large dataset
    uv run python -m benchmarks.bench_health --scale 2 --json
    uv run python -m benchmarks.bench_health --churn random
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from benchmarks import common

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def measured(function: Callable[[], Any]) -> tuple[Any, float, float]:
    """``function()``, its seconds and the process's peak RSS in MB after it."""
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started, common.peak_rss_mb()


def run(size: str, seed: int, scale: int, churn: str) -> dict[str, Any]:
    from whop_pipeline.health import facts, model
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
        f"  peak RSS: {r['peak_rss_mb']:.0f} MB (after framing the data: {r['prepare_peak_rss_mb']:.0f} MB)",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small", "large"), default="large")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--churn", choices=("learnable", "random"), default="learnable")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = run(args.size, args.seed, args.scale, args.churn)
    common.emit({k: common.rounded(v, 3) for k, v in results.items()}, describe(results), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
