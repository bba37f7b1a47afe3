"""The generator's churn process (``whop_pipeline/sandbox/whop/churn.py``,
``docs/sandbox.md#churn``): determinism, payments and status fields consistent with each
membership's life, and point-in-time snapshots of the rendered data in which failed payments,
``cancel_at_period_end`` and tenure move the 30-day end rate under ``churn="learnable"`` and do not
under ``churn="random"``.

Snapshots are read from the rendered API objects only: a renewing membership is active at ``T`` if
it was created by ``T`` and has not ended by then; it ended at ``current_period_end`` if canceled
(``expires_at`` if expired); it was set to cancel at period end at ``T`` if ``canceled_at <= T`` and
it had not ended; its recent failures are its failed payments in the 30 days up to ``T``; the label
is an end within the 30 days after ``T``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import pytest

from whop_pipeline.cli import build_parser
from whop_pipeline.sandbox import runner
from whop_pipeline.sandbox.dataset import WhopDataset, generate_dataset, to_ms
from whop_pipeline.sandbox.whop.churn import PARAMETERS
from whop_pipeline_tests.sandbox.whop_fixtures import WHOP_NOW

pytestmark = pytest.mark.unit

DAY = 86_400_000
KINDS = ("products", "plans", "members", "memberships", "payments")
OUTSIDE = ("drafted", "trialing", "unresolved")  # renewing memberships outside the process
# Snapshots every 15 days from a year back to 30 days before ``now`` (each needs 30 days after it).
SNAPSHOTS = range(30, 400, 15)


def _ms(value: str | None) -> int | None:
    if value is None:
        return None
    return to_ms(datetime.fromisoformat(value.replace("Z", "+00:00")))


@dataclass
class Life:
    """A renewing membership as the rendered data shows it."""

    id: str
    status: str
    period: int  # ms
    created: int
    end: int | None  # when access ended (None: not ended)
    canceled_at: int | None
    row: dict
    payments: list[dict]  # ascending by created_at
    failures: list[int]


def _lives(ds: WhopDataset) -> list[Life]:
    by_membership: dict[str, list[dict]] = defaultdict(list)
    for payment in ds.rendered("payments"):
        if payment["membership_id"]:
            by_membership[payment["membership_id"]].append(payment)
    lives = []
    for row in ds.rendered("memberships"):
        if row["billing_period_days"] is None or row["status"] in OUTSIDE:
            continue
        payments = sorted(by_membership[row["id"]], key=lambda p: p["created_at"])
        end = None
        if row["status"] == "canceled":
            end = _ms(row["current_period_end"])
        elif row["status"] == "expired":
            end = _ms(row["expires_at"])
        lives.append(
            Life(
                id=row["id"],
                status=row["status"],
                period=int(row["billing_period_days"]) * DAY,
                created=_ms(row["created_at"]),
                end=end,
                canceled_at=_ms(row["canceled_at"]),
                row=row,
                payments=payments,
                failures=[_ms(p["created_at"]) for p in payments if p["substatus"] == "failed"],
            )
        )
    return lives


@dataclass(frozen=True)
class Row:
    """One membership active at one snapshot: what was known then, and the label."""

    membership: str
    failures: int  # failed payments in the 30 days up to the snapshot
    cape: bool  # set to cancel at period end at the snapshot
    tenure_days: float
    ended_within_30_days: bool


def _rows(lives: list[Life], now: int, days_back: range | tuple[int, ...]) -> list[Row]:
    rows = []
    for back in days_back:
        at = now - back * DAY
        for life in lives:
            if life.created > at or (life.end is not None and life.end <= at):
                continue
            cape = life.canceled_at is not None and life.canceled_at <= at
            rows.append(
                Row(
                    membership=life.id,
                    failures=sum(1 for f in life.failures if at - 30 * DAY < f <= at),
                    cape=cape,
                    tenure_days=(at - life.created) / DAY,
                    ended_within_30_days=life.end is not None and life.end <= at + 30 * DAY,
                )
            )
    return rows


def _rate(rows: list[Row], keep: Callable[[Row], bool] = lambda r: True) -> float:
    chosen = [r.ended_within_30_days for r in rows if keep(r)]
    assert chosen, "an empty group"
    return sum(chosen) / len(chosen)


def _auc(scores: list[float], labels: list[bool]) -> float:
    pairs = sorted(zip(scores, labels, strict=True))
    positives = sum(labels)
    negatives = len(labels) - positives
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(label for _, label in pairs[i:j])
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def _holdout_auc(rows: list[Row], key: Callable[[Row], object]) -> float:
    """AUC on half the memberships of a model that predicts, per value of ``key``, the (smoothed)
    end rate seen on the other half."""
    train = [r for r in rows if zlib.crc32(r.membership.encode()) % 2 == 0]
    test = [r for r in rows if zlib.crc32(r.membership.encode()) % 2 == 1]
    table: dict[object, list[int]] = defaultdict(lambda: [0, 0])
    for r in train:
        table[key(r)][0] += r.ended_within_30_days
        table[key(r)][1] += 1
    base = _rate(train)

    def score(r: Row) -> float:
        ended, seen = table.get(key(r), (0, 0))
        return (ended + 5 * base) / (seen + 5)

    return _auc([score(r) for r in test], [r.ended_within_30_days for r in test])


def _tenure_band(r: Row) -> int:
    return sum(r.tenure_days >= d for d in (30, 90, 180, 365))


def _all_three(r: Row) -> tuple[bool, int, int]:
    return r.cape, min(r.failures, 2), _tenure_band(r)


def _digest(ds: WhopDataset) -> str:
    records = {kind: [dataclasses.asdict(r) for r in ds.records(kind)] for kind in KINDS}
    body = json.dumps(records, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(body).hexdigest()


NOW = to_ms(WHOP_NOW)


@pytest.fixture(scope="module")
def learnable() -> WhopDataset:
    return generate_dataset("small", seed=0, now=WHOP_NOW, scale=8)


@pytest.fixture(scope="module")
def unlearnable() -> WhopDataset:
    return generate_dataset("small", seed=0, now=WHOP_NOW, scale=8, churn="random")


@pytest.fixture(scope="module")
def learnable_lives(learnable: WhopDataset) -> list[Life]:
    return _lives(learnable)


@pytest.fixture(scope="module")
def unlearnable_lives(unlearnable: WhopDataset) -> list[Life]:
    return _lives(unlearnable)


@pytest.fixture(scope="module")
def learnable_rows(learnable_lives: list[Life]) -> list[Row]:
    return _rows(learnable_lives, NOW, SNAPSHOTS)


@pytest.fixture(scope="module")
def unlearnable_rows(unlearnable_lives: list[Life]) -> list[Row]:
    return _rows(unlearnable_lives, NOW, SNAPSHOTS)


# -- determinism and the flag ------------------------------------------------------------------


@pytest.mark.parametrize("churn", ["learnable", "random"])
def test_same_arguments_give_the_same_data(churn: str) -> None:
    """Rule: the data is a function of the arguments, ``churn`` included."""
    first = generate_dataset("tiny", seed=3, now=WHOP_NOW, churn=churn)  # type: ignore[arg-type]
    again = generate_dataset("tiny", seed=3, now=WHOP_NOW, churn=churn)  # type: ignore[arg-type]
    assert _digest(first) == _digest(again) and first.churn == churn


def test_churn_changes_the_lives_not_the_account_or_catalog() -> None:
    """Rule: ``churn`` changes how memberships live and end; the account, the catalog, the
    memberships' ids and variants and every count stay. ``learnable`` is the default."""
    default = generate_dataset("small", seed=1, now=WHOP_NOW)
    learnable = generate_dataset("small", seed=1, now=WHOP_NOW, churn="learnable")
    other = generate_dataset("small", seed=1, now=WHOP_NOW, churn="random")
    assert _digest(default) == _digest(learnable) and default.churn == "learnable"
    assert _digest(other) != _digest(learnable)
    assert other.account == learnable.account
    assert (other.products, other.plans) == (learnable.products, learnable.plans)
    ids = sorted((m.id, m.plan_id) for m in learnable.memberships)
    assert sorted((m.id, m.plan_id) for m in other.memberships) == ids
    assert other.counts() == learnable.counts()


@pytest.mark.parametrize("churn", ["", "Random", "none", None])
def test_churn_must_name_a_mode(churn: object) -> None:
    with pytest.raises(ValueError, match="churn"):
        generate_dataset("tiny", seed=0, now=WHOP_NOW, churn=churn)  # type: ignore[arg-type]


def test_cli_and_sandbox_take_churn() -> None:
    """Rule: ``whop-pipeline sandbox --churn random`` and ``start_sandbox(churn=...)`` pass the
    mode to the dataset (default ``learnable``)."""
    assert build_parser().parse_args(["sandbox", "--churn", "random"]).churn == "random"
    assert build_parser().parse_args(["sandbox"]).churn == "learnable"
    with runner.start_sandbox("tiny", now=WHOP_NOW, churn="random") as sandbox:
        assert sandbox.whop.dataset.churn == "random"
        expected = generate_dataset("tiny", seed=0, now=WHOP_NOW, churn="random")
        assert _digest(sandbox.whop.dataset) == _digest(expected)


# -- each life is consistent -------------------------------------------------------------------


@pytest.fixture(scope="module", params=["learnable", "random"])
def churn_lives(
    request: pytest.FixtureRequest, learnable_lives: list[Life], unlearnable_lives: list[Life]
) -> tuple[str, list[Life]]:
    return request.param, learnable_lives if request.param == "learnable" else unlearnable_lives


def test_payments_stop_at_the_end(churn_lives: tuple[str, list[Life]]) -> None:
    """Rule: an ended membership has no payment at or after its end, and its end is before
    ``now``; every renewing membership in the process has a first payment."""
    lives = churn_lives[1]
    ended = [life for life in lives if life.end is not None]
    assert len(ended) > 300
    for life in ended:
        assert life.end < NOW
        assert all(_ms(p["created_at"]) < life.end for p in life.payments), life.id
    assert all(life.payments for life in lives)


def test_charges_follow_the_billing_schedule(churn_lives: tuple[str, list[Life]]) -> None:
    """Rule: a membership's first charge succeeds; every later one falls on a period boundary
    counted from the first, or is the retry of a failed charge three days earlier (what
    ``next_payment_attempt_at`` announces)."""
    lives = churn_lives[1]
    retry = int(PARAMETERS.retry_days * DAY)
    for life in lives:
        first = _ms(life.payments[0]["created_at"])
        assert life.payments[0]["billing_reason"] == "subscription_create"
        assert life.payments[0]["substatus"] != "failed"
        failed_at = set(life.failures)
        for payment in life.payments[1:]:
            at = _ms(payment["created_at"])
            assert (at - first) % life.period == 0 or at - retry in failed_at, (life.id, at)


def test_end_fields_agree_with_the_status(churn_lives: tuple[str, list[Life]]) -> None:
    """Rule: an ended membership's end is its ``current_period_end`` (= ``expires_at`` when
    expired) and its ``updated_at``; a cancellation at period end shows ``canceled_at`` before it,
    on a period boundary; an immediate one at it. A live membership set to cancel at period end
    shows when in ``canceled_at`` = ``updated_at``, within its current period and after its last
    charge; past_due means its latest charge failed and awaits a retry."""
    churn, lives = churn_lives
    seen: dict[str, int] = defaultdict(int)
    for life in lives:
        row = life.row
        start, end = _ms(row["current_period_start"]), _ms(row["current_period_end"])
        last_charge = _ms(life.payments[-1]["created_at"])
        if life.end is not None:
            assert end == life.end == _ms(row["updated_at"]) and not row["cancel_at_period_end"]
            assert start < end and last_charge < end
            if life.status == "expired":
                seen["expired"] += 1
                assert life.canceled_at is None
                continue
            assert life.canceled_at is not None and last_charge < life.canceled_at <= end
            if life.canceled_at < end:  # at period end: the period ran its full length
                seen["canceled at period end"] += 1
                assert (
                    end - start == life.period
                    and (end - _ms(life.payments[0]["created_at"])) % life.period == 0
                )
            else:
                seen["canceled at once"] += 1
            continue
        assert row["expires_at"] is None and start <= NOW < end
        if row["cancel_at_period_end"]:
            seen["set to cancel at period end"] += 1
            assert life.status in ("active", "canceling")
            assert life.canceled_at == _ms(row["updated_at"])
            assert max(start, last_charge) < life.canceled_at < NOW
        else:
            assert life.canceled_at is None and life.status in ("active", "past_due")
        latest = life.payments[-1]
        if life.status == "past_due":
            seen["past_due"] += 1
            assert (latest["substatus"], latest["status"]) == ("failed", "open")
        else:
            assert latest["substatus"] != "failed" and latest["status"] != "open"
    expected = {"expired", "canceled at once", "set to cancel at period end", "past_due"}
    if churn == "learnable":
        expected.add("canceled at period end")  # under churn="random" every end is immediate
    assert set(seen) == expected


# -- what a snapshot sees ----------------------------------------------------------------------


def test_learnable_failures_cape_and_tenure_move_the_end_rate(
    learnable_lives: list[Life], learnable_rows: list[Row]
) -> None:
    """Rule: among memberships active at a snapshot, those with a failed payment in the last 30
    days, and those set to cancel at period end, end within 30 days far more often than the rest;
    long-tenured ones less often than new ones. At one snapshot (60 days before ``now``) and over
    snapshots every 15 days back a year."""
    one = _rows(learnable_lives, NOW, (60,))
    for rows, margin in ((one, 0.15), (learnable_rows, 0.2)):
        failed = _rate(rows, lambda r: r.failures >= 1)
        clean = _rate(rows, lambda r: r.failures == 0)
        cape = _rate(rows, lambda r: r.cape)
        free = _rate(rows, lambda r: not r.cape)
        assert failed > clean + margin and failed > 3 * clean, (failed, clean)
        assert cape > free + margin and cape > 3 * free, (cape, free)
        new, old = (
            _rate(rows, lambda r: r.tenure_days < 90),
            _rate(rows, lambda r: r.tenure_days >= 180),
        )
        assert old < new, (old, new)
    rows = learnable_rows
    assert _rate(rows, lambda r: r.failures >= 2) > _rate(rows, lambda r: r.failures == 1)
    new, old = (
        _rate(rows, lambda r: r.tenure_days < 90),
        _rate(rows, lambda r: r.tenure_days >= 180),
    )
    assert old < 0.8 * new and old < new - 0.015, (old, new)
    assert 0.03 < _rate(rows) < 0.12


def test_learnable_needs_more_than_cape(learnable_rows: list[Row]) -> None:
    """Rule: ``cancel_at_period_end`` alone predicts ends, but not perfectly; failures and tenure
    add a clear margin (holdout AUC of per-group end rates)."""
    cape_only = _holdout_auc(learnable_rows, lambda r: r.cape)
    everything = _holdout_auc(learnable_rows, _all_three)
    assert 0.55 < cape_only < 0.8
    assert everything > cape_only + 0.05, (everything, cape_only)
    assert _rate(learnable_rows, lambda r: r.cape) < 0.8


def test_random_churn_leaves_nothing_to_learn(
    unlearnable_rows: list[Row], learnable_rows: list[Row]
) -> None:
    """Rule: under ``churn="random"`` the end rate is the same with or without recent failures,
    for new and long-tenured members, and no snapshot at least 30 days old shows a membership set
    to cancel at period end; the overall rate matches the learnable process's."""
    rows = unlearnable_rows
    overall = _rate(rows)
    assert abs(overall - _rate(learnable_rows)) < 0.015
    failed, clean = _rate(rows, lambda r: r.failures >= 1), _rate(rows, lambda r: r.failures == 0)
    assert abs(failed - clean) < 0.04, (failed, clean)
    new, old = (
        _rate(rows, lambda r: r.tenure_days < 90),
        _rate(rows, lambda r: r.tenure_days >= 180),
    )
    assert abs(new - old) < 0.03, (new, old)
    assert not any(r.cape for r in rows)
    assert abs(_holdout_auc(rows, _all_three) - 0.5) < 0.04


def test_cape_at_now_comes_at_similar_rates(
    learnable: WhopDataset, unlearnable: WhopDataset
) -> None:
    """Rule: memberships alive at ``now`` carry ``cancel_at_period_end`` from the process, at a
    realistic rate (a few percent) under both modes."""

    def share(ds: WhopDataset) -> float:
        alive = [
            m
            for m in ds.memberships
            if m.status in ("active", "canceling", "past_due") and m.current_period_end
        ]
        return sum(m.cancel_at_period_end for m in alive) / len(alive)

    ours, theirs = share(learnable), share(unlearnable)
    assert 0.02 < ours < 0.1 and 0.5 < theirs / ours < 2, (ours, theirs)
