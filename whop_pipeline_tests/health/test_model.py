"""Churn risk: learned on a later window than it is validated, beats the best single feature on a
learnable history, finds nothing on a random one, falls back to the rule on a thin one, and never
reads the future."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pandas as pd
import pytest

from whop_pipeline.health import facts, model
from whop_pipeline.sandbox.dataset import generate_dataset

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
MARGIN_OVER_BASELINE = 0.03


def frames(size: str, *, churn: str = "learnable", scale: int = 1):
    dataset = generate_dataset(size, seed=0, now=NOW, scale=scale, churn=churn)
    return (
        facts.memberships_frame(dataset.rendered("memberships")),
        facts.payments_frame(dataset.rendered("payments")),
        facts.plans_frame(dataset.rendered("plans")),
    )


def history(size: str, **kwargs):
    memberships, payments, plans = frames(size, **kwargs)
    first, last = model.data_span(memberships, payments)
    snapshots = model.snapshot_times(last, first)
    rows = model.training_rows(memberships, payments, plans, snapshots)
    return memberships, payments, plans, snapshots, rows, last


@pytest.fixture(scope="module")
def learnable():
    memberships, payments, plans, snapshots, rows, last = history("large")
    return memberships, payments, plans, snapshots, rows, model.train(rows, now=last)


def fact_row(**overrides) -> pd.DataFrame:
    row = {
        "person_key": "user_a",
        "active_at": True,
        "tenure_days": 60.0,
        "cancel_at_period_end_known": False,
        "failed_payments_30d": 0,
        "failed_payments_90d": 0,
        "monthly_revenue_usd": Decimal("49.00"),
    }
    row.update(overrides)
    return pd.DataFrame([row], index=pd.Index(["mem_x"], name="membership_id"))


def risk(churn_model: model.ChurnModel, **overrides) -> int:
    return int(churn_model.score(fact_row(**overrides))["churn_risk"].iloc[0])


def test_snapshots_stay_thirty_days_from_now():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    times = model.snapshot_times(NOW, start)
    assert times[-1] == pd.Timestamp(NOW) - pd.Timedelta(days=30)
    assert all(b - a == pd.Timedelta(days=15) for a, b in itertools.pairwise(times))
    assert times[0] > pd.Timestamp(start) and len(times) == 9


def test_learnable_history_beats_the_best_single_feature(learnable):
    *_, rows, churn_model = learnable
    metrics = churn_model.metrics
    print(
        f"\nlearnable large: chosen={churn_model.chosen} holdout AUC={metrics['roc_auc']:.3f} "
        f"baseline AUC={metrics['baseline_auc']:.3f} ({metrics['baseline_feature']}) "
        f"candidates={metrics['candidate_auc']} brier={metrics['brier']:.4f} "
        f"rows={metrics['rows']} positives={metrics['positives']}"
    )
    assert churn_model.chosen in ("logistic", "gradient_boosting")
    assert not churn_model.no_signal and churn_model.reason is None
    assert metrics["baseline_aucs"]["cancel_at_period_end_known"] <= metrics["baseline_auc"]
    assert metrics["roc_auc"] >= metrics["baseline_auc"] + MARGIN_OVER_BASELINE
    assert metrics["roc_auc"] == max(metrics["candidate_auc"].values())
    # Validated on a later window than it was trained on.
    assert metrics["train_window"][1] < metrics["holdout_window"][0]
    assert metrics["positives"] == rows["ends_within_30d"].sum() >= model.MIN_POSITIVES
    assert metrics["rows"] == len(rows)
    calibration = metrics["calibration"]
    assert len(calibration) == 10
    assert sum(c["rows"] for c in calibration) == metrics["holdout_rows"]
    assert calibration[-1]["observed"] > 3 * calibration[0]["observed"]
    assert 0 < metrics["brier"] < 0.1


def test_random_history_has_no_signal():
    *_, rows, last = history("small", churn="random", scale=8)
    churn_model = model.train(rows, now=last)
    auc = churn_model.metrics["roc_auc"]
    print(
        f"\nrandom small×8: chosen={churn_model.chosen} holdout AUC={auc:.3f} "
        f"positives={churn_model.metrics['positives']}"
    )
    assert churn_model.metrics["positives"] >= model.MIN_POSITIVES
    assert abs(auc - 0.5) <= 0.05
    assert churn_model.no_signal and "chance" in churn_model.reason


def test_thin_history_falls_back_to_the_rule():
    memberships, payments, plans = frames("small")
    first, last = model.data_span(memberships, payments)
    snapshots = model.snapshot_times(last, first)
    rows = model.training_rows(memberships, payments, plans, snapshots[:4])  # its first 2 months
    assert rows["snapshot"].nunique() >= model.MIN_SNAPSHOTS
    assert rows["ends_within_30d"].sum() < model.MIN_POSITIVES
    churn_model = model.train(rows, now=last)
    assert churn_model.chosen == "rule" and churn_model.metrics["chosen"] == "rule"
    assert "ended memberships" in churn_model.reason and not churn_model.no_signal

    one = model.train(rows[rows["snapshot"] == rows["snapshot"].max()], now=last)
    assert one.chosen == "rule" and "snapshot" in one.reason

    base = risk(churn_model)
    assert risk(churn_model, failed_payments_30d=1, failed_payments_90d=1) > base
    assert risk(churn_model, cancel_at_period_end_known=True) > base
    reasons = churn_model.score(fact_row(cancel_at_period_end_known=True))["reasons"].iloc[0]
    assert reasons == "set to cancel at period end"


@pytest.mark.parametrize("chosen", ["learned", "logistic"])
def test_scores_move_the_right_way(learnable, chosen):
    *_, rows, churn_model = learnable
    if chosen == "logistic":
        # Both candidates must behave: refit the other one on the same rows.
        churn_model = model.ChurnModel(
            chosen="logistic",
            metrics={},
            estimator=model._candidates()["logistic"].fit(
                model.feature_matrix(rows), rows["ends_within_30d"]
            ),
        )
    for tenure in (10.0, 60.0, 400.0):
        for failed in (0, 1):
            before = risk(
                churn_model,
                tenure_days=tenure,
                failed_payments_30d=failed,
                failed_payments_90d=failed,
            )
            more = risk(
                churn_model,
                tenure_days=tenure,
                failed_payments_30d=failed + 1,
                failed_payments_90d=failed + 1,
            )
            flagged = risk(
                churn_model,
                tenure_days=tenure,
                failed_payments_30d=failed,
                failed_payments_90d=failed,
                cancel_at_period_end_known=True,
            )
            assert more > before, (tenure, failed, before, more)
            assert flagged > before, (tenure, failed, before, flagged)


def test_reasons_name_the_drivers_in_plain_words(learnable):
    *_, rows, churn_model = learnable
    risky = churn_model.score(
        fact_row(cancel_at_period_end_known=True, failed_payments_30d=2, failed_payments_90d=2)
    ).iloc[0]
    print(f"\nrisky row: {risky['churn_risk']} — {risky['reasons']}")
    assert risky["churn_risk"] >= 50
    assert "set to cancel at period end" in risky["reasons"]
    assert "2 failed payments in 30 days" in risky["reasons"]
    assert "90 days" not in risky["reasons"]  # the same failures are said once
    calm = churn_model.score(fact_row(tenure_days=400.0)).iloc[0]
    assert calm["churn_risk"] < risky["churn_risk"]
    assert "cancel" not in calm["reasons"] and "failed" not in calm["reasons"]

    active = rows[rows["snapshot"] == rows["snapshot"].max()].set_index("membership_id")
    scores = churn_model.score(active)
    assert scores.index.equals(active.index)
    assert scores["churn_risk"].between(0, 100).all()
    assert not scores["reasons"].str.contains("_").any()
    assert (scores["reasons"].str.count(";") <= model.MAX_REASONS - 1).all()


def test_training_rows_never_read_the_future(learnable):
    memberships, payments, plans, snapshots, rows, _ = learnable
    one_time = set(plans.loc[plans["plan_type"] == "one_time", "id"])
    for snapshot in (snapshots[4], snapshots[-1]):
        at = pd.Timestamp(snapshot)
        truncated = facts.membership_facts(
            memberships[memberships["created_at"] <= at],
            payments[payments["created_at"] <= at],
            plans,
            at,
        )
        renewing = memberships.set_index("id")["plan_id"].reindex(truncated.index)
        expected = truncated[truncated["active_at"] & ~renewing.isin(one_time)]
        got = rows[rows["snapshot"] == at].set_index("membership_id")
        assert len(got) > 100
        assert sorted(got.index) == sorted(expected.index)
        got = got.loc[expected.index, facts.MEMBERSHIP_FACT_COLUMNS]
        pd.testing.assert_frame_equal(got, expected, check_names=False, check_index_type=False)
        labels = facts.membership_labels(memberships, at).loc[expected.index, "ends_within_30d"]
        assert (
            rows[rows["snapshot"] == at]
            .set_index("membership_id")
            .loc[expected.index, "ends_within_30d"]
            .equals(labels)
        )


def test_person_risk_is_the_highest_active_membership():
    membership_facts = pd.DataFrame(
        {
            "person_key": ["a", "a", "b", "c"],
            "active_at": [True, True, True, False],
        },
        index=pd.Index(["m1", "m2", "m3", "m4"], name="membership_id"),
    )
    scores = pd.DataFrame(
        {"churn_risk": [10, 70, 5, 99], "reasons": ["x", "y", "z", "w"]},
        index=membership_facts.index,
    )
    people = model.person_churn_risk(scores, membership_facts)
    assert people.to_dict("index") == {
        "a": {"churn_risk": 70, "reasons": "y", "membership_id": "m2"},
        "b": {"churn_risk": 5, "reasons": "z", "membership_id": "m3"},
    }
