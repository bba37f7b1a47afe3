"""The win-back process: who owns a generated dataset's extra memberships.

A dataset has more memberships than members. Each member holds at least one; the rest, the *extra*
memberships, are members' second, third... By the time owners are assigned, every membership's
creation and end are fixed (the churn process and the fixed timelines ran first), so an owner can
be chosen from the history as it stood when the membership was created. With the default constants
(``docs/sandbox.md#win-back`` has the same in prose):

- Owners are first drawn as in ``churn="random"``: every member once, the extras to uniformly random
  members, shuffled. A member's earliest membership stays theirs; every later one is an extra.
- The extras are taken in order of creation. An extra created at ``t`` is, with probability 0.55,
  a win-back: it goes to a member *lapsed* at ``t``, drawn with weight ``exp(−(a − 3) / s)``, where
  ``a`` is the days since the member's last membership ended. A member is lapsed at ``t`` when every
  membership of theirs created before ``t`` has ended (``canceled`` or ``expired``) and the last
  ended at least 3 days before ``t`` and at most ``w`` days. If that last membership had a failed
  charge (a card that failed, not a buyer who chose to leave), ``s`` = 5 days and ``w`` = 30: such
  a member has a chance only in the first days after the end, and most never come back; otherwise
  ``s`` = 45 and ``w`` = 150: a buyer who chose to leave may come back for months. With no member
  lapsed at ``t``, or otherwise (probability 0.45), the extra keeps its random owner.

So a recent lapse makes a new membership (and its first charge) likelier soon after, but how likely
depends on how the member left, which only the failed charges tell; and about half of the extras
still go to anyone. A win-back never moves a member's earliest membership, so every member keeps
one and is created before it, as before. ``churn="random"`` skips the win-backs: the owners are the
random draw alone, so nothing in a member's history predicts a new membership.
"""

from __future__ import annotations

import math
import random

from whop_pipeline.sandbox.dataset import DAY_MS, Membership

WINBACK_SHARE = 0.55
LAPSE_MIN_DAYS = 3
# (recency scale s, oldest lapse w) in days, for a lapsed membership with a failed charge or not.
AFTER_FAILURE = (5.0, 30)
AFTER_CHOICE = (45.0, 150)
ENDED = ("canceled", "expired")
_OPEN = 1 << 62  # the end of a membership that has not ended


def end_of(ms: Membership) -> int | None:
    """When an ended membership's access ended; None while it has not."""
    if ms.status not in ENDED:
        return None
    return ms.current_period_end if ms.current_period_end is not None else ms.expires_at


def assign_owners(
    rng: random.Random,
    memberships: list[Membership],
    count: int,
    failed: set[str],
    churn: str = "learnable",
) -> list[int]:
    """The owner (a member's index below ``count``) of each membership (module docstring).
    ``failed``: the ids of the memberships with a failed charge."""
    owners = list(range(count)) + [rng.randrange(count) for _ in range(len(memberships) - count)]
    rng.shuffle(owners)
    if churn == "random":
        return owners
    order = sorted(range(len(memberships)), key=lambda i: (memberships[i].created_at, i))
    firsts: dict[int, int] = {}
    for i in order:
        firsts.setdefault(owners[i], i)
    first = set(firsts.values())
    ends = [end_of(ms) for ms in memberships]
    ended = sorted((e, i) for i, e in enumerate(ends) if e is not None)
    times = [e for e, _ in ended]
    position = {i: k for k, (_, i) in enumerate(ended)}
    shapes, limits = [], []
    for _, i in ended:
        shape, limit = AFTER_FAILURE if memberships[i].id in failed else AFTER_CHOICE
        shapes.append(shape * DAY_MS)
        limits.append(limit * DAY_MS)
    newest = LAPSE_MIN_DAYS * DAY_MS
    # Memberships are taken in order of creation, so when an extra created at ``t`` is placed every
    # membership created before it has its final owner (``holder``, for the ended ones), and
    # ``cover[m]`` is the latest end among member m's memberships created so far (_OPEN while one
    # has not ended; -1 before the first). ``lapsed`` maps a member to their last end (an index in
    # ``ended``) while it may be in the window: an entry stops counting for good once its member
    # has a later membership or it ages out, so it is dropped then.
    holder = [-1] * len(ended)
    cover = [-1] * count
    lapsed: dict[int, int] = {}
    due = 0  # the next end to enter ``lapsed``
    for i in order:
        t = memberships[i].created_at
        if i not in first and rng.random() < WINBACK_SHARE:
            while due < len(ended) and times[due] <= t - newest:
                lapsed[holder[due]] = due
                due += 1
            lapsed = {
                m: k
                for m, k in lapsed.items()
                if cover[m] == times[k] and t - times[k] <= limits[k]
            }
            if lapsed:
                odds = [math.exp((newest - t + times[k]) / shapes[k]) for k in lapsed.values()]
                owners[i] = rng.choices(list(lapsed), odds)[0]
        member, end = owners[i], ends[i]
        if end is None:
            cover[member] = _OPEN
        else:
            cover[member] = max(cover[member], end)
            holder[position[i]] = member
    return owners


__all__ = [
    "AFTER_CHOICE",
    "AFTER_FAILURE",
    "LAPSE_MIN_DAYS",
    "WINBACK_SHARE",
    "assign_owners",
    "end_of",
]
