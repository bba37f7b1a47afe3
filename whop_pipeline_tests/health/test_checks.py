"""The model checks: each threshold on hand-made holdout metrics, the no-signal warning, and the rule
reported as not validated; and what a stored model lets the records show."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import dagster as dg
import pytest

from whop_pipeline.health.assets import allowed_gap, brier_skill, model_checks
from whop_pipeline.health.records import ScoreState
from whop_pipeline.health.scoring import score_state
from whop_pipeline.store import health_models


def decile(n: int, predicted: float, observed: float, rows: int = 3_000) -> dict:
    return {"decile": n, "rows": rows, "predicted": predicted, "observed": observed}


def metrics(**overrides) -> dict:
    values = {
        "roc_auc": 0.78,
        "baseline_auc": 0.62,
        "baseline_feature": "cancel_at_period_end_known",
        "brier": 0.05,
        "holdout_rows": 1_000,
        "holdout_positives": 70,  # base-rate Brier 0.07 × 0.93 = 0.0651
        "calibration": [decile(i, 0.01 * i, 0.01 * i + 0.02) for i in range(1, 11)],
    }
    values.update(overrides)
    return values


def verdicts(no_signal: bool = False, chosen: str = "gradient_boosting", **overrides):
    model = SimpleNamespace(
        chosen=chosen,
        metrics=metrics(**overrides),
        no_signal=no_signal,
        reason="holdout AUC 0.503: within 0.05 of chance" if no_signal else None,
    )
    return {r.check_name: r for r in model_checks("churn_model", model)}


def test_a_good_model_passes_every_check():
    assert {name: r.passed for name, r in verdicts().items()} == dict.fromkeys(
        ("holdout_roc_auc", "holdout_brier", "calibration", "has_signal"), True
    )


@pytest.mark.parametrize(
    ("overrides", "failing"),
    [
        ({"roc_auc": 0.64}, "holdout_roc_auc"),
        ({"brier": 0.0651}, "holdout_brier"),  # no better than the base rate
        ({"calibration": [decile(10, 0.30, 0.36)]}, "calibration"),
    ],
)
def test_each_threshold_fails_its_own_check(overrides, failing):
    results = verdicts(**overrides)
    assert [name for name, r in results.items() if not r.passed] == [failing]


def test_a_small_decile_is_allowed_its_sampling_error():
    # 36 rows at p = 0.5: the standard error is 0.083, so 0.5 against 0.61 is not a miss...
    assert allowed_gap(decile(10, 0.505, 0.611, rows=36)) == pytest.approx(0.2500, abs=1e-4)
    assert verdicts(calibration=[decile(10, 0.505, 0.611, rows=36)])["calibration"].passed
    # ...while 3,000 rows measure it: the same gap fails.
    assert not verdicts(calibration=[decile(10, 0.505, 0.611)])["calibration"].passed


def test_brier_skill_is_against_the_holdouts_own_base_rate():
    assert brier_skill(metrics(brier=0.0651)) == pytest.approx(0.0, abs=1e-3)
    assert brier_skill(metrics(brier=0.0)) == 1.0
    assert brier_skill(metrics(holdout_rows=0)) is None


def test_no_signal_warns_and_says_scores_are_withheld():
    result = verdicts(no_signal=True, roc_auc=0.503)["has_signal"]
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert "no signal" in result.description and "withheld" in result.description


def test_the_rule_is_reported_as_not_validated():
    model = SimpleNamespace(
        chosen="rule", metrics={}, no_signal=False, reason="12 ended memberships, 30 needed"
    )
    results = model_checks("churn_model", model)
    assert [r.passed for r in results] == [False] * 4
    assert all(r.severity == dg.AssetCheckSeverity.WARN for r in results)
    assert all("rule in use: 12 ended" in r.metadata["status"].value for r in results)


@pytest.mark.parametrize(
    ("chosen", "no_signal", "reason", "published", "note", "suffix"),
    [
        ("gradient_boosting", False, None, True, None, ""),
        ("rule", False, "3 ended memberships in the history, 30 needed", True, None,
         " (rule: 3 ended memberships in the history, 30 needed)"),
        ("logistic", True, "holdout AUC 0.503: within 0.05 of chance", False,
         "not scored: this account's history shows no churn signal yet (holdout AUC 0.503)", ""),
    ],
)  # fmt: skip
def test_what_a_stored_model_lets_the_records_show(
    chosen, no_signal, reason, published, note, suffix
):
    stored = health_models.StoredModel(
        connection="acme",
        kind="churn",
        version=4,
        trained_at=dt.datetime(2026, 6, 1, tzinfo=dt.UTC),
        chosen=chosen,
        no_signal=no_signal,
        metrics={"roc_auc": 0.503 if no_signal else 0.78},
        model=SimpleNamespace(chosen=chosen, no_signal=no_signal, reason=reason),
    )
    assert score_state(stored, "churn") == ScoreState(published, note, suffix)
