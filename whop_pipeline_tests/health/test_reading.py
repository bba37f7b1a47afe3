"""Reading the mirror a group of people at a time gives exactly what one pass over the whole
account gives: the training rows of both models (in the same order) and the scores."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from whop_pipeline.health import facts, lead, reading, scoring, training
from whop_pipeline.health.records import OPPORTUNITY_HEALTH, PERSON_HEALTH
from whop_pipeline.sandbox.dataset import generate_dataset
from whop_pipeline.store.database import get_engine
from whop_pipeline.store.raw import upsert_raw
from whop_pipeline.whop.mirror import to_raw_record
from whop_pipeline.whop.models import Member, Membership, Payment, Plan, Product, parse_object

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
MODELS = {
    "members": Member,
    "products": Product,
    "plans": Plan,
    "memberships": Membership,
    "payments": Payment,
}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The small sandbox account (400 people, 2,400 payments over two years) in a mirror."""
    engine = get_engine(f"sqlite:///{tmp_path_factory.mktemp('mirror') / 'pipeline.db'}")
    dataset = generate_dataset("small", seed=0, now=NOW)
    with engine.begin() as conn:
        for name, model in MODELS.items():
            records = [
                to_raw_record(parse_object(model, payload, name), NOW)
                for payload in dataset.rendered(name)
            ]
            upsert_raw(conn, name, "default", records)
    return engine


def test_training_rows_by_groups_equal_one_pass(mirror, monkeypatch):
    with mirror.connect() as conn:
        whole = facts.load_frames(conn, "default", as_of=NOW)
    first = whole.memberships["created_at"].min()
    snapshots = training.snapshot_times(NOW, first)
    expected = {
        "churn": training.training_rows(whole.memberships, whole.payments, whole.plans, snapshots),
        "lead": lead.lead_training_rows(whole.memberships, whole.payments, whole.plans, snapshots),
    }
    assert len(snapshots) > 20 and len(expected["churn"]) > 1_000 and len(expected["lead"]) > 100
    monkeypatch.setattr(reading, "PEOPLE_CHUNK", 37)  # eleven groups, one of them short
    for kind, rows in expected.items():
        grouped = scoring._training_rows(mirror, "default", kind, NOW, lambda _m: None)
        pd.testing.assert_frame_equal(grouped, rows, check_dtype=False)


def test_scores_by_groups_equal_one_group(mirror, monkeypatch):
    one = scoring.score(mirror, "default", NOW)
    assert one.people == 400 and one.changed_count(PERSON_HEALTH) == 400
    monkeypatch.setattr(reading, "PEOPLE_CHUNK", 37)
    grouped = scoring.score(mirror, "default", NOW)
    # The same records: nothing changed, and the same counts.
    assert grouped.changed_count(PERSON_HEALTH) == grouped.changed_count(OPPORTUNITY_HEALTH) == 0
    assert (grouped.people, grouped.memberships_scored, grouped.people_at_risk) == (
        one.people,
        one.memberships_scored,
        one.people_at_risk,
    )
