"""Reading the emulators' control endpoints: what was written, what is live. Shared by the demo,
the tests and the benchmarks."""

from __future__ import annotations

from typing import Any


def write_requests(stats: dict[str, Any]) -> dict[str, int]:
    """Non-GET API calls by endpoint, from ``/_sandbox/stats`` (what a sync spent on writing)."""
    return {k: v for k, v in stats["requests"].items() if not k.startswith("GET ")}


def live_records(dump: dict[str, list[dict]], plural: str) -> list[dict]:
    """The records of ``plural`` in a Twenty ``/_sandbox/dump``, soft-deleted ones left out."""
    return [r for r in dump.get(plural, []) if not r.get("deletedAt")]
