"""The churn process: how a generated dataset's renewing memberships live and end.

Each renewing membership (not drafted, trialing or one-time) is simulated on its own clock, its
tenure ``τ`` in days since its first charge, and only then placed on the calendar by a start date
drawn independently of its life (``place``), so no calendar fact leaks into when it ends. With the
default parameters (``ChurnParameters``; ``docs/sandbox.md#churn`` has the same in prose):

- Charges. The first charge (``τ = 0``) succeeds; then one charge per billing period, at each period
  boundary ``k · P``. A hidden trait of the buyer's card decides how often charges fail: 15% of
  buyers are *fragile* (a renewal fails with probability 0.25, a retry 0.55), the rest *solid*
  (0.03, 0.25), so failures cluster on the same memberships. A failed charge is retried 3 days
  later (the ``next_payment_attempt_at`` the API shows); until a charge succeeds the membership is
  unpaid, ``past_due``, and no new period is charged.
- The hazard. The buyer decides to leave at the rate, per day,

      λ(τ) = 0.0035 · 120 / (120 + τ) · m(F),    m(0) = 1, m(1) = 8, m(≥2) = 25,

  where ``F`` counts the failed charges of the last 30 days: a failure multiplies the hazard by 8
  for the next 30 days, two by 25; tenure divides it (by 2 at 120 days, by 4 at a year). ``λ`` is
  integrated exactly between events, so decision times are continuous.
- A decision. While unpaid, the membership is lost at once (``expired``, ``expires_at`` = then).
  Otherwise, with probability 0.75, the buyer sets ``cancel_at_period_end`` and the membership ends
  at the period's end (``canceled``; ``canceled_at`` = when it was set), unless the buyer un-sets it
  first (probability 0.2, at a uniform time before the period's end; the hazard then runs on); with
  probability 0.25 the buyer cancels at once (``canceled``, ``canceled_at`` = the end).
- Lapse. A third failed charge in a row ends the membership 3 days later (``expired``) unless a
  decision came first: the hazard is infinite there.

An ended membership's end is ``current_period_end`` (= ``expires_at`` when expired), its
``updated_at`` too; a cancellation at period end shows ``canceled_at`` before it. A membership alive
at ``now`` shows its state then: ``past_due`` while unpaid, ``cancel_at_period_end`` (status
``active`` or ``canceling``, ``canceled_at`` = ``updated_at`` = when it was set) while set.

No single observable gives the end away. ``cancel_at_period_end`` marks a decision already taken,
but most ends within 30 days of a given day come from decisions not yet taken that day (immediate
cancellations, expiries, and flags set later whose period ends within the 30 days), and a flag may
be un-set or sit on a quarterly or yearly period ending months later. Those later decisions are what
failed charges and tenure predict, multiplicatively; the fragile trait shows only through failures.

``churn="random"`` keeps the charges, failures and retries (without lapse: retries go on until one
succeeds) but draws each membership's end independently of all of them: at a constant hazard of
0.0024 per day, immediate, ``canceled`` or (30%) ``expired``. ``cancel_at_period_end`` is set by a
constant hazard of 0.012 per day within the last 30 days of a period (while paid) and always un-set
before the period ends; so a flag seen at ``now`` was set less than 30 days ago, an ended membership
never shows one, and it says nothing about ends. The two hazards give about the same share of active
memberships ending within 30 days, and of flags at ``now``, as the learnable process.

Times inside a ``Trajectory`` are tenures in milliseconds; the caller adds the start.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field

from whop_pipeline.sandbox.dataset import DAY_MS, Churn

CHURN_MODES: tuple[str, ...] = ("learnable", "random")
HOUR_MS = 3_600_000
NEVER = 1 << 62  # an end or a stop that does not happen within the horizon


@dataclass(frozen=True)
class ChurnParameters:
    """The process's parameters (see the module docstring); rates are per day."""

    base_hazard: float = 0.0035
    tenure_scale: float = 120.0  # days: the hazard halves at this tenure, thirds at twice it
    fail_multiplier_one: float = 8.0
    fail_multiplier_two: float = 25.0
    failure_memory_days: float = 30.0
    fragile_share: float = 0.15
    renewal_fail: tuple[float, float] = (0.03, 0.25)  # (solid, fragile)
    retry_fail: tuple[float, float] = (0.25, 0.55)  # (solid, fragile)
    retry_days: float = 3.0
    lapse_after: int = 3
    cape_share: float = 0.75
    unset_share: float = 0.2
    random_hazard: float = 0.0024
    random_expired_share: float = 0.3
    random_cape_hazard: float = 0.012
    random_cape_window_days: float = 30.0


PARAMETERS = ChurnParameters()


def check_churn(churn: object) -> str:
    """``churn`` if it names a mode, else ``ValueError``."""
    if churn not in CHURN_MODES:
        raise ValueError(f"churn must be one of {', '.join(CHURN_MODES)}, not {churn!r}")
    return churn  # type: ignore[return-value]


@dataclass(slots=True)
class Trajectory:
    """One membership's life on its own clock (tenure in ms). ``horizon``: how far it was simulated
    (states after it are unknown). ``unpaid`` and ``capes`` are ``(from, to)`` windows; ``to`` is
    ``NEVER`` when the window was still open at the horizon."""

    period: int
    horizon: int
    times: list[int] = field(default_factory=list)  # every charge, ascending
    failed: list[bool] = field(default_factory=list)
    end: int = NEVER
    mode: str | None = None  # cape | cancel | expire
    capes: list[tuple[int, int]] = field(default_factory=list)
    unpaid: list[tuple[int, int]] = field(default_factory=list)

    def count(self, age: int) -> int:
        """Charges made before tenure ``age``."""
        return bisect.bisect_left(self.times, age)

    def state(self, age: int) -> str:
        """``ended``, ``past_due``, ``cape`` or ``active`` at tenure ``age``."""
        if self.end < age:
            return "ended"
        for low, high in self.unpaid:
            if low < age <= high:
                return "past_due"
        for low, high in self.capes:
            if low < age <= high:
                return "cape"
        return "active"

    def windows(self, target: str) -> list[tuple[int, int]]:
        """The tenures ``(low, high]`` within the horizon at which ``state`` is ``target``
        (``canceled`` and ``expired`` split ``ended`` by how it ended)."""
        limit = min(self.horizon, self.end)
        if target in ("canceled", "expired"):
            ended_as = "expired" if self.mode == "expire" else "canceled"
            if self.end >= self.horizon or ended_as != target:
                return []
            return [(self.end, self.horizon)]
        if target == "past_due":
            return _clip(self.unpaid, limit)
        if target == "cape":
            return _clip(self.capes, limit)
        busy = sorted(_clip(self.unpaid + self.capes, limit))
        gaps, low = [], 0
        for start, stop in busy:
            if start > low:
                gaps.append((low, start))
            low = max(low, stop)
        if low < limit:
            gaps.append((low, limit))
        return gaps


def _clip(windows: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    return [(low, min(high, limit)) for low, high in windows if low < limit]


def _ms(days: float) -> int:
    return int(days * DAY_MS)


def simulate(
    rng: random.Random,
    period_days: int,
    horizon_days: float,
    churn: str = "learnable",
    max_charges: int | None = None,
    params: ChurnParameters = PARAMETERS,
) -> Trajectory:
    """One membership's life up to ``horizon_days`` of tenure, or up to (not including) its
    ``max_charges + 1``-th charge."""
    if churn == "random":
        return _simulate_random(rng, period_days, horizon_days, max_charges, params)
    rnd, log, exp = rng.random, math.log, math.exp
    fragile = rnd() < params.fragile_share
    fail, retry_fail = params.renewal_fail[fragile], params.retry_fail[fragile]
    scale, memory, retry_days = params.tenure_scale, params.failure_memory_days, params.retry_days
    rates = tuple(
        params.base_hazard * scale * m
        for m in (1.0, params.fail_multiplier_one, params.fail_multiplier_two)
    )
    limit = max_charges if max_charges is not None else 1 << 30
    day, inf, cape_share, unset_share = DAY_MS, math.inf, params.cape_share, params.unset_share
    traj = Trajectory(period=period_days * day, horizon=int(horizon_days * day))
    times, failed, unpaid = traj.times, traj.failed, traj.unpaid
    times.append(0)
    failed.append(False)
    recent: list[float] = []  # failed charges within the memory
    t, anchor = 0.0, float(period_days)  # anchor: the next period boundary (next renewal)
    pending = inf  # the next retry, or the lapse after the last one
    lapsing = False
    streak = 0  # failed charges in a row
    unpaid_since: int | None = None
    budget = -log(1.0 - rnd())
    while True:
        if recent:
            while recent and recent[0] + memory <= t:
                recent.pop(0)
            b = min(anchor, pending, recent[0] + memory if recent else inf, horizon_days)
            rate = rates[len(recent)] if len(recent) < 3 else rates[2]
        else:
            b = anchor if anchor < horizon_days else horizon_days
            if pending < b:
                b = pending
            rate = rates[0]
        exposure = rate * log((scale + b) / (scale + t))
        if exposure >= budget:
            te = (scale + t) * exp(budget / rate) - scale
            te_ms = max(int(te * day), times[-1] + 1000)
            if unpaid_since is not None:
                traj.end, traj.mode = te_ms, "expire"
                unpaid.append((unpaid_since, te_ms))
                return traj
            if rnd() < cape_share:
                if rnd() < unset_share:
                    t = te + rnd() * (anchor - te)
                    traj.capes.append((te_ms, max(int(t * day), te_ms + 1000)))
                    if t >= horizon_days:
                        break
                    budget = -log(1.0 - rnd())
                    continue
                end_ms = int(anchor * day)
                traj.capes.append((te_ms, end_ms))
                traj.end, traj.mode = end_ms, "cape"
                return traj
            traj.end, traj.mode = te_ms, "cancel"
            return traj
        budget -= exposure
        t = b
        if b >= horizon_days:
            break
        if b == pending and lapsing:
            end_ms = int(b * day)
            traj.end, traj.mode = end_ms, "expire"
            unpaid.append((unpaid_since or end_ms, end_ms))
            return traj
        if b in (pending, anchor):
            if b == anchor:
                anchor += period_days
                if unpaid_since is not None and b != pending:
                    continue  # no new period is charged while one is unpaid
            if len(times) >= limit:
                traj.horizon = int(b * day)
                break
            at = int(b * day)
            times.append(at)
            if rnd() < (retry_fail if streak else fail):
                failed.append(True)
                recent.append(b)
                streak += 1
                if unpaid_since is None:
                    unpaid_since = at
                pending, lapsing = b + retry_days, streak >= params.lapse_after
            else:
                failed.append(False)
                if unpaid_since is not None:
                    unpaid.append((unpaid_since, at))
                    unpaid_since = None
                streak, pending = 0, inf
    if unpaid_since is not None:
        unpaid.append((unpaid_since, NEVER))
    return traj


def _simulate_random(
    rng: random.Random,
    period_days: int,
    horizon_days: float,
    max_charges: int | None,
    params: ChurnParameters,
) -> Trajectory:
    rnd, log = rng.random, math.log
    fragile = rnd() < params.fragile_share
    fail, retry_fail = params.renewal_fail[fragile], params.retry_fail[fragile]
    retry_days = params.retry_days
    limit = max_charges if max_charges is not None else 1 << 30
    end = -log(1.0 - rnd()) / params.random_hazard
    expired = rnd() < params.random_expired_share
    # A cancel-at-period-end episode falls in the last ``window`` days of a period, with the
    # probability a constant hazard gives it there, and is always un-set before the period ends.
    window = min(float(period_days), params.random_cape_window_days)
    cape_odds = -math.expm1(-params.random_cape_hazard * window)
    traj = Trajectory(period=period_days * DAY_MS, horizon=_ms(horizon_days))
    times, failed, unpaid = traj.times, traj.failed, traj.unpaid
    times.append(0)
    failed.append(False)
    t, anchor, retry = 0.0, float(period_days), math.inf
    cape = anchor - rnd() * window if rnd() < cape_odds else math.inf
    streak = 0
    unpaid_since: int | None = None
    stop = min(end, horizon_days)
    while True:
        b = min(anchor, retry, cape, stop)
        t = b
        if b >= stop:
            break
        if b == cape:
            cape = math.inf
            if unpaid_since is None:
                unset = b + rnd() * (anchor - b)
                traj.capes.append((_ms(b), max(_ms(min(unset, end)), _ms(b) + 1000)))
                t = unset
                if t >= stop:
                    break
            continue
        if b == anchor:
            anchor += period_days
            if rnd() < cape_odds:
                cape = anchor - rnd() * window
            if unpaid_since is not None and b != retry:
                continue
        if len(times) >= limit:
            traj.horizon = _ms(b)
            stop = b
            break
        at = _ms(b)
        times.append(at)
        if rnd() < (retry_fail if streak else fail):
            failed.append(True)
            streak += 1
            if unpaid_since is None:
                unpaid_since = at
            retry = b + retry_days
        else:
            failed.append(False)
            if unpaid_since is not None:
                unpaid.append((unpaid_since, at))
                unpaid_since = None
            streak, retry = 0, math.inf
    if end < horizon_days and end <= stop:
        traj.end = max(_ms(end), times[-1] + 1000)
        traj.mode = "expire" if expired else "cancel"
        if traj.capes and traj.capes[-1][1] > traj.end:
            traj.capes[-1] = (traj.capes[-1][0], traj.end)
    if unpaid_since is not None:
        unpaid.append((unpaid_since, traj.end))
    return traj


def conditioned(
    rng: random.Random,
    period_days: int,
    horizon_days: float,
    target: str,
    churn: str,
    max_charges: int,
    tries: int = 50_000,
) -> tuple[Trajectory, int]:
    """A life and an age (tenure at ``now``, at least an hour) at which the membership is in
    ``target`` (``active``, ``past_due``, ``cape``, ``canceled``, ``expired``) having made at most
    ``max_charges`` charges. Lives are drawn from the process until one passes through ``target``;
    the age is then uniform over the time it spends there. For the hard cases every dataset must
    contain, whatever its size."""
    for _ in range(tries):
        traj = simulate(rng, period_days, horizon_days, churn, max_charges)
        spans = [(max(low, HOUR_MS), high) for low, high in traj.windows(target)]
        spans = [(low, high) for low, high in spans if high - low > 2]
        if not spans:
            continue
        total = sum(high - low for low, high in spans)
        pick = rng.random() * total
        for low, high in spans:
            if pick < high - low:
                return traj, low + 1 + int(pick)
            pick -= high - low
        low, high = spans[-1]
        return traj, high
    raise RuntimeError(f"no {period_days}-day membership reached {target!r} in {tries} draws")


def ages(draws: list[float], span: int, growth: float) -> list[int]:
    """Tenures at ``now`` for uniform ``draws``: start dates spread over the last ``span`` ms with a
    density growing like ``exp(growth · t / span)`` toward ``now`` (``growth`` 0: uniform)."""
    if abs(growth) < 1e-9:
        return [max(HOUR_MS, int(u * span)) for u in draws]
    log1p, c = math.log1p, -math.expm1(-growth)
    f = span / growth
    return [max(HOUR_MS, int(-f * log1p(-u * c))) for u in draws]


def place(trajectories: list[Trajectory], draws: list[float], span: int, budget: int) -> list[int]:
    """Ages (tenures at ``now``) for ``trajectories`` from one growth rate of sign-ups (``ages``),
    the oldest spread whose charges stay within ``budget`` (the caller turns what is left into
    one-time purchases). The charges made fall as the rate rises, so it is found by bracketing and
    regula falsi, to within 0.1% of ``budget``."""

    def charges(growth: float) -> tuple[int, list[int]]:
        placed = ages(draws, span, growth)
        return sum([tr.count(a) for tr, a in zip(trajectories, placed, strict=True)]), placed

    tolerance = max(2, budget // 1000)
    fits = charges(0.0)
    if fits[0] <= budget:  # uniform starts fit: look for an older spread that still fits
        low, high, step = -1.0, 0.0, -1.0
        while low > -40.0:
            total = charges(low)
            if total[0] > budget:
                break
            fits, high, low, step = total, low, low + 2 * step, 2 * step
        else:
            return fits[1]
    else:  # look for a younger spread that fits
        low, high = 0.0, 1.0
        while True:
            total = charges(high)
            if total[0] <= budget:
                fits = total
                break
            if high > 1e6:
                raise ValueError("payments too few for the memberships of this size")
            low, high = high, high * 4
    # Regula falsi with the Illinois weighting on (total - budget), falling back to halving.
    over, under = charges(low)[0] - budget, fits[0] - budget
    side = 0
    for step in range(60):
        if budget - fits[0] <= tolerance:
            break
        mid = high - under * (high - low) / (under - over) if step % 4 != 3 else (low + high) / 2
        if not low < mid < high:
            mid = (low + high) / 2
        total = charges(mid)
        if total[0] > budget:
            low, over = mid, total[0] - budget
            if side == 1:
                under /= 2
            side = 1
        else:
            high, fits, under = mid, total, total[0] - budget
            if side == -1:
                over /= 2
            side = -1
    return fits[1]


__all__ = [
    "CHURN_MODES",
    "NEVER",
    "PARAMETERS",
    "Churn",
    "ChurnParameters",
    "Trajectory",
    "ages",
    "check_churn",
    "conditioned",
    "place",
    "simulate",
]
