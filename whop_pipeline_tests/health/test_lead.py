"""Lead score: candidates are the people without an active paid membership, facts and labels never
read past their window, a thin history gets the documented rule, a planted signal is learned, the
sandbox's learnable history shows its win-backs and its random one is called what it is, and both
models survive pickling."""

from __future__ import annotations

import datetime as dt
import math
import pickle
import random

import numpy as np
import pandas as pd
import pytest

from whop_pipeline.health import facts, lead, model
from whop_pipeline.sandbox.dataset import generate_dataset

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
AS_OF = pd.Timestamp("2025-06-01T00:00:00Z")
METRIC_KEYS = {
    "roc_auc",
    "brier",
    "baseline_auc",
    "baseline_feature",
    "calibration",
    "rows",
    "positives",
    "train_window",
    "holdout_window",
    "chosen",
    "no_signal",
}
PLANS = [
    {"id": "plan_month", "plan_type": "renewal", "billing_period": 30.0, "trial_period_days": None},
    {"id": "plan_trial", "plan_type": "renewal", "billing_period": 30.0, "trial_period_days": 7},
    {"id": "plan_free", "plan_type": "renewal", "billing_period": 30.0, "trial_period_days": None},
    {"id": "plan_once", "plan_type": "one_time", "billing_period": None, "trial_period_days": None},
]


def money(amount: str) -> dict:
    return {"amount": amount, "currency": "usd", "decimals": 2}


def membership(id_, user, created, *, plan="plan_month", status="active", ended=None, price="49"):
    return {
        "id": id_,
        "user_id": user,
        "member_id": f"mber_{user}",
        "plan_id": plan,
        "status": status,
        "created_at": created,
        "updated_at": ended or created,
        "canceled_at": ended,
        "current_period_end": ended,
        "renewal_price": None if plan == "plan_once" else money(price),
        "billing_period_days": None if plan == "plan_once" else 30,
    }


def payment(id_, user, created, amount="49", *, mem=None, failed=False, refunded_at=None):
    return {
        "id": id_,
        "status": "uncollectible" if failed else "paid",
        "substatus": "failed" if failed else "refunded" if refunded_at else "succeeded",
        "created_at": created,
        "updated_at": refunded_at or created,
        "paid_at": None if failed else created,
        "last_payment_attempt_at": created,
        "refunded_at": refunded_at,
        "membership_id": mem,
        "member_id": f"mber_{user}",
        "user": {"id": user},
        "currency": "usd",
        "total": money(amount),
        "usd_total": money(amount),
        "refunded_amount": money(amount) if refunded_at else None,
    }


def to_frames(memberships, payments, plans=PLANS):
    return (
        facts.memberships_frame(memberships),
        facts.payments_frame(payments),
        facts.plans_frame(plans),
    )


# Known at AS_OF (2025-06-01): one person of each kind, and what happens to them after it.
BEFORE_MEMBERSHIPS = [
    membership("mem_l1", "lapsed", "2025-03-01T00:00:00Z", status="canceled", ended="2025-05-10T00:00:00Z"),
    membership("mem_p", "payer", "2025-05-15T00:00:00Z"),
    membership("mem_o", "pass", "2025-04-01T00:00:00Z", plan="plan_once", status="completed"),
    membership("mem_t", "trialer", "2025-05-28T00:00:00Z", plan="plan_trial"),
    membership("mem_f", "free", "2025-01-01T00:00:00Z", plan="plan_free", price="0"),
    membership("mem_r", "refunded", "2025-02-01T00:00:00Z", status="canceled", ended="2025-02-03T00:00:00Z"),
    membership("mem_d", "drafted", "2025-05-01T00:00:00Z", status="drafted"),
]  # fmt: skip
BEFORE_PAYMENTS = [
    payment("pay_l1", "lapsed", "2025-03-01T00:00:00Z", mem="mem_l1"),
    payment("pay_l2", "lapsed", "2025-04-01T00:00:00Z", mem="mem_l1"),
    payment("pay_p", "payer", "2025-05-15T00:00:00Z", mem="mem_p"),
    payment("pay_o", "pass", "2025-04-01T00:00:00Z", "99", mem="mem_o"),
    payment("pay_f", "free", "2025-05-20T00:00:00Z", "20", failed=True),
    payment("pay_r", "refunded", "2025-02-01T00:00:00Z", "30", mem="mem_r",
            refunded_at="2025-02-03T00:00:00Z"),
]  # fmt: skip
AFTER_MEMBERSHIPS = [
    membership("mem_l2", "lapsed", "2025-06-10T00:00:00Z"),
    membership("mem_new", "newcomer", "2025-06-02T00:00:00Z"),
]
AFTER_PAYMENTS = [
    payment("pay_l3", "lapsed", "2025-06-10T00:00:00Z", mem="mem_l2"),
    payment("pay_t", "trialer", "2025-06-04T00:00:00Z", mem="mem_t"),
    payment("pay_f2", "free", "2025-06-05T00:00:00Z", "20"),  # a one-off sale, not a membership
    payment("pay_new", "newcomer", "2025-06-02T00:00:00Z", mem="mem_new"),
    payment("pay_r2", "refunded", "2025-08-01T00:00:00Z", mem="mem_r"),  # after the window
    payment("pay_p2", "payer", "2025-06-15T00:00:00Z", mem="mem_p"),
]
HAND = to_frames(BEFORE_MEMBERSHIPS + AFTER_MEMBERSHIPS, BEFORE_PAYMENTS + AFTER_PAYMENTS)
NAN = float("nan")
HAND_FEATURES = {
    # days_known, paid before, days since paid end, value, trials, free, failed in 90 days
    "drafted": (31.0, False, NAN, 0.0, 0, 0, 0),
    "free": (151.0, False, NAN, 0.0, 0, 1, 1),
    "lapsed": (92.0, True, 22.0, 98.0, 0, 0, 0),
    "refunded": (120.0, True, 118.0, 0.0, 0, 0, 0),
    "trialer": (4.0, False, NAN, 0.0, 1, 0, 0),
}


def test_hand_computed_features_and_labels():
    features = lead.lead_features(*HAND, AS_OF)
    assert features.index.name == "person_key" and list(features.columns) == lead.FACT_COLUMNS
    expected = pd.DataFrame.from_dict(HAND_FEATURES, orient="index", columns=lead.FACT_COLUMNS)
    pd.testing.assert_frame_equal(features, expected, check_names=False, check_index_type=False)
    labels = lead.lead_labels(*HAND, AS_OF)["starts_within_30d"].to_dict()
    assert labels == {"drafted": 0, "free": 0, "lapsed": 1, "refunded": 0, "trialer": 1}


@pytest.mark.parametrize(
    ("added_memberships", "added_payments"),
    [
        ([], []),
        (AFTER_MEMBERSHIPS, []),
        ([], AFTER_PAYMENTS),
        (AFTER_MEMBERSHIPS, AFTER_PAYMENTS),
    ],
)
def test_features_ignore_what_comes_later(added_memberships, added_payments):
    expected = lead.lead_features(*to_frames(BEFORE_MEMBERSHIPS, BEFORE_PAYMENTS), AS_OF)
    later = to_frames(BEFORE_MEMBERSHIPS + added_memberships, BEFORE_PAYMENTS + added_payments)
    pd.testing.assert_frame_equal(lead.lead_features(*later, AS_OF), expected)


def test_labels_read_only_their_window():
    window_end = AS_OF + pd.Timedelta(days=30)
    memberships, payments, plans = HAND
    cut = (
        memberships[memberships["created_at"] <= window_end],
        payments[payments["created_at"] <= window_end],
        plans,
    )
    pd.testing.assert_frame_equal(lead.lead_labels(*cut, AS_OF), lead.lead_labels(*HAND, AS_OF))


# -- the sandbox ---------------------------------------------------------------------------------


def sandbox(size: str, scale: int = 1, churn: str = "learnable"):
    dataset = generate_dataset(size, seed=0, now=NOW, scale=scale, churn=churn)
    frames = to_frames(
        dataset.rendered("memberships"), dataset.rendered("payments"), dataset.rendered("plans")
    )
    first, last = model.data_span(frames[0], frames[1])
    return frames, model.snapshot_times(last, first), last


@pytest.fixture(scope="module")
def small8():
    frames, snapshots, last = sandbox("small", scale=8)
    return frames, snapshots, lead.lead_training_rows(*frames, snapshots), last


def test_candidates_are_known_people_without_an_active_paid_membership(small8):
    (memberships, payments, plans), snapshots, rows, _ = small8
    for at in (snapshots[14], snapshots[-1]):
        members = facts.membership_facts(memberships, payments, plans, at)
        charged = payments["paid"].astype(bool) & (payments["paid_at"] <= at)
        charged &= np.array([t is not None and t > 0 for t in payments["total"]])
        paid = members.index.isin(set(payments.loc[charged, "membership_id"].dropna()))
        paying = set(members.loc[members["active_at"] & paid, "person_key"])
        known = set(members["person_key"]) | set(
            payments.loc[payments["created_at"] <= at, "person_key"]
        )
        got = rows[rows["snapshot"] == at].set_index("person_key")
        assert len(got) > 50 and len(paying) > 50
        assert set(got.index) == known - paying - {None}
        people = facts.person_facts(memberships, payments, plans, at)
        value = people["lifetime_value_usd"].reindex(got.index).dropna()
        assert np.allclose(got.loc[value.index, "lifetime_value_usd"], value.astype(float))
        failed = people["failed_payments_90d"].reindex(got.index).fillna(0)
        assert got["failed_payments_90d"].equals(failed.astype("int64"))


def test_training_rows_never_read_the_future(small8):
    (memberships, payments, plans), snapshots, rows, _ = small8
    for at in (snapshots[12], snapshots[-1]):
        cut = (memberships[memberships["created_at"] <= at], payments[payments["created_at"] <= at])
        expected = lead.lead_features(*cut, plans, at)
        got = rows[rows["snapshot"] == at].set_index("person_key")[lead.FACT_COLUMNS]
        pd.testing.assert_frame_equal(got, expected, check_names=False, check_index_type=False)
        labels = lead.lead_labels(memberships, payments, plans, at)["starts_within_30d"]
        assert (
            rows[rows["snapshot"] == at].set_index("person_key")["starts_within_30d"].equals(labels)
        )


def test_thin_history_falls_back_to_the_rule(small8):
    *_, rows, last = small8
    early = rows[rows["snapshot"] <= sorted(rows["snapshot"].unique())[11]]  # to June 2025
    assert early["snapshot"].nunique() == 12 and early["starts_within_30d"].sum() == 19
    lead_model = lead.train_lead(early, now=last)
    assert lead_model.chosen == "rule" and not lead_model.no_signal
    assert "started paid memberships in the history, 30 needed" in lead_model.reason
    assert set(lead_model.metrics) >= METRIC_KEYS and lead_model.metrics["roc_auc"] is None
    assert lead_model.metrics["positives"] == 19 and lead_model.base_rate == 19 / len(early)
    empty = lead.train_lead(pd.DataFrame(), now=last)
    assert empty.chosen == "rule" and "0 snapshot(s)" in empty.reason
    assert empty.base_rate == lead.RULE_DEFAULT_BASE_RATE


def test_the_rule_scores_by_its_constants():
    rule = lead.lead_rule_model(pd.DataFrame(), "no history")
    scores = rule.score(lead.lead_features(*HAND, AS_OF)).to_dict("index")
    assert scores == {
        "drafted": {"lead_score": 2, "reasons": "no strong buying signal"},
        "free": {"lead_score": 10, "reasons": "1 failed payment in 90 days; on 1 free membership"},
        "lapsed": {"lead_score": 14, "reasons": "paid membership ended 22 days ago"},
        "refunded": {"lead_score": 6, "reasons": "paid for a membership before"},
        "trialer": {"lead_score": 27, "reasons": "on 1 trial"},
    }


@pytest.fixture(scope="module")
def large():
    """The large sandbox's frames, rows, end and lead model per churn mode, built on first use."""
    built = {}

    def trained(churn: str):
        if churn not in built:
            frames, snapshots, last = sandbox("large", churn=churn)
            rows = lead.lead_training_rows(*frames, snapshots)
            built[churn] = frames, rows, last, lead.train_lead(rows, now=last)
        return built[churn]

    return trained


# Measured (seed 0). Learnable: 27,246 rows, 2,878 starts, holdout AUC 0.872 (logistic; gradient
# boosting 0.867) against 0.842 for the best single feature (log_days_since_paid_end; failed
# payments alone 0.554). Random: 30,334 rows, 1,440 starts, holdout AUC 0.531 (logistic; gradient
# boosting 0.487), best single feature 0.529 (log_days_known).
LARGE = {"learnable": (27_246, 2_878), "random": (30_334, 1_440)}


@pytest.mark.parametrize("churn", ["learnable", "random"])
def test_the_sandbox_conversion_signal_follows_its_churn_mode(large, churn):
    # Learnable: lapsed members win back extra memberships, soon after a failed charge, over months
    # after a choice to leave (docs/sandbox.md#win-back), so recency and failures together predict a
    # start better than either alone. Random: owners are random, nothing predicts a start.
    frames, _, last, lead_model = large(churn)
    metrics = lead_model.metrics
    print(
        f"\nsandbox large {churn}: chosen={lead_model.chosen} AUC={metrics['roc_auc']:.3f} "
        f"candidates={metrics['candidate_auc']} baseline={metrics['baseline_auc']:.3f} "
        f"({metrics['baseline_feature']}) rows={metrics['rows']} positives={metrics['positives']}"
    )
    assert (metrics["rows"], metrics["positives"]) == LARGE[churn]
    assert lead_model.chosen in ("logistic", "gradient_boosting")
    if churn == "learnable":
        assert not lead_model.no_signal and lead_model.reason is None
        assert metrics["roc_auc"] >= 0.85 and metrics["roc_auc"] >= metrics["baseline_auc"] + 0.02
        assert metrics["baseline_feature"] == "log_days_since_paid_end"
    else:
        assert abs(metrics["roc_auc"] - 0.5) <= 0.05
        assert lead_model.no_signal and "chance" in lead_model.reason
    assert set(metrics) >= METRIC_KEYS and metrics["train_window"][1] < metrics["holdout_window"][0]
    current = lead.lead_features(*frames, last)
    scores = lead_model.score(current)
    assert scores.index.equals(current.index) and scores["lead_score"].between(0, 100).all()


# -- a history with a planted signal ------------------------------------------------------------

START = pd.Timestamp("2025-01-01T00:00:00Z")
DAYS = 420


def planted_history(people: int = 3_000, seed: int = 0):
    """Paying members who lapse come back soon after (60% of them, within about two weeks) or
    never; free members convert rarely and at any time. Recency of the lapse is the signal."""
    rng = random.Random(seed)

    def at(day: float) -> str:
        return (START + pd.Timedelta(days=day)).isoformat()

    memberships, payments = [], []

    def paid_membership(user: str, start: float, months: int | None) -> None:
        mem = f"mem_{user}_{len(memberships)}"
        end = start + 30 * months if months else None
        over = end is not None and end < DAYS
        status = "canceled" if over else "active"
        memberships.append(
            membership(mem, user, at(start), status=status, ended=at(end) if over else None)
        )
        day = start
        while day < min(end or DAYS, DAYS):
            payments.append(payment(f"pay_{len(payments)}", user, at(day), mem=mem))
            day += 30
        if over and rng.random() < 0.6:
            back = end + rng.expovariate(1 / 12)
            if back < DAYS:
                paid_membership(user, back, None)

    for i in range(people):
        user, start = f"user_{i}", rng.uniform(0, 250)
        if rng.random() < 0.75:
            paid_membership(user, start, rng.randint(1, 5))
        else:
            memberships.append(
                membership(f"mem_f{i}", user, at(start), plan="plan_free", price="0")
            )
            if rng.random() < 0.15:
                paid_membership(user, start + rng.uniform(0, DAYS - start), None)
    return to_frames(memberships, payments)


@pytest.fixture(scope="module")
def planted():
    frames = planted_history()
    first, last = model.data_span(frames[0], frames[1])
    rows = lead.lead_training_rows(*frames, model.snapshot_times(last, first))
    return rows, lead.train_lead(rows, now=last)


def test_a_planted_signal_is_learned(planted):
    rows, lead_model = planted
    metrics = lead_model.metrics
    print(
        f"\nplanted: chosen={lead_model.chosen} holdout AUC={metrics['roc_auc']:.3f} "
        f"candidates={metrics['candidate_auc']} baseline={metrics['baseline_auc']:.3f} "
        f"({metrics['baseline_feature']}) rows={metrics['rows']} positives={metrics['positives']}"
    )
    assert lead_model.chosen in ("logistic", "gradient_boosting")
    assert not lead_model.no_signal and lead_model.reason is None
    # Measured: gradient boosting 0.884 (logistic 0.834) against 0.778 for the best single feature
    # (days known: lapses come 30 to 150 days after joining), 0.728 for the days since the lapse.
    assert metrics["roc_auc"] >= 0.85 and metrics["roc_auc"] >= metrics["baseline_auc"] + 0.05
    assert metrics["baseline_aucs"]["log_days_since_paid_end"] >= 0.7
    assert metrics["train_window"][1] < metrics["holdout_window"][0]
    assert metrics["positives"] == rows["starts_within_30d"].sum()
    assert sum(c["rows"] for c in metrics["calibration"]) == metrics["holdout_rows"]
    assert metrics["calibration"][-1]["observed"] > 5 * metrics["calibration"][0]["observed"]


def person(**overrides) -> pd.DataFrame:
    row = dict(zip(lead.FACT_COLUMNS, (300.0, False, NAN, 0.0, 0, 1, 0), strict=True))
    row.update(overrides)
    return pd.DataFrame([row], index=pd.Index(["someone"], name="person_key"))


@pytest.mark.parametrize("which", ["rule", "planted"])
def test_scores_move_the_right_way(planted, which):
    scorer = lead.lead_rule_model(pd.DataFrame(), "no history") if which == "rule" else planted[1]

    def score(**overrides) -> int:
        return int(scorer.score(person(**overrides))["lead_score"].iloc[0])

    old_free = score()
    recent = score(paid_membership_before=True, days_since_paid_end=5.0, lifetime_value_usd=98.0)
    lapsed_long_ago = score(paid_membership_before=True, days_since_paid_end=200.0)
    assert recent > lapsed_long_ago and recent > old_free, (recent, lapsed_long_ago, old_free)
    reasons = scorer.score(person(paid_membership_before=True, days_since_paid_end=5.0))
    assert "paid membership ended 5 days ago" in reasons["reasons"].iloc[0]


# -- pickling -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def churn(small8):
    (memberships, payments, plans), snapshots, _, last = small8
    rows = model.training_rows(memberships, payments, plans, snapshots)
    current = facts.membership_facts(memberships, payments, plans, last)
    return model.train(rows, now=last), current[current["active_at"]]


@pytest.mark.parametrize("kind", ["churn", "churn_rule", "lead", "lead_rule"])
def test_models_pickle_and_score_the_same(planted, churn, kind):
    if kind.startswith("churn"):
        fitted, features = churn
        if kind == "churn_rule":
            fitted = model.rule_model(pd.DataFrame(), "no history")
    else:
        rows, fitted = planted
        features = rows[rows["snapshot"] == rows["snapshot"].max()].set_index("person_key")
        if kind == "lead_rule":
            fitted = lead.lead_rule_model(rows, "thin")
    assert fitted.format == model.MODEL_FORMAT == 1
    restored = pickle.loads(pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(restored) is type(fitted) and restored.format == fitted.format
    assert (restored.chosen, restored.no_signal, restored.reason) == (
        fitted.chosen,
        fitted.no_signal,
        fitted.reason,
    )
    assert len(features) > 20
    pd.testing.assert_frame_equal(restored.score(features), fitted.score(features))


def test_nothing_known_scores_nothing():
    empty = to_frames([], [])
    features = lead.lead_features(*empty, AS_OF)
    assert features.empty and list(features.columns) == lead.FACT_COLUMNS
    assert features.index.name == "person_key"
    scores = lead.lead_rule_model(pd.DataFrame(), "none").score(features)
    assert scores.empty and list(scores.columns) == ["lead_score", "reasons"]
    rows = lead.lead_training_rows(*empty, [AS_OF])
    assert rows.empty and "starts_within_30d" in rows.columns
    assert math.isclose(lead.lead_rule_model(rows, "none").base_rate, 0.02)
