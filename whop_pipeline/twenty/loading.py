"""One load session against Twenty: the client, the workspace's capabilities, and a method per object
that turns a CRM frame into upserts. The sync's load assets and the webhook processing run both use
it, so a webhook lands through exactly the same code as a scheduled sync."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from whop_pipeline.twenty import records
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.models import Capabilities
from whop_pipeline.twenty.upserter import LoadCounts, TwentyUpserter, stored_retries, synced_ids

# Rows prepared and planned at a time: memory holds one chunk of records, not the whole frame. A
# multiple of the batch maximum, so chunk boundaries cost no extra call.
LOAD_CHUNK = 10_000

Prepare = Callable[[list[dict]], tuple[list[records.PreparedRow], list[records.DeferredRow]]]


def _plain(rows: list[dict]) -> tuple[list[records.PreparedRow], list[records.DeferredRow]]:
    """Objects with no relations to resolve (people, products): nothing waits."""
    return records.prepare_plain(rows), []


@dataclass
class LoadOutcome:
    counts: dict[str, LoadCounts] = field(default_factory=dict)
    unlinked_opportunities: int = 0


class TwentyLoad:
    """Loads frames for one connection. ``dry_run`` plans and counts but sends nothing."""

    def __init__(
        self,
        client: TwentyClient,
        caps: Capabilities,
        engine: sa.Engine,
        *,
        connection: str,
        batch_size: int,
        dry_run: bool = False,
        retry_failed: bool = True,
        log: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self.client = client
        self.caps = caps
        self.engine = engine
        self.connection = connection
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.retry_failed = retry_failed
        self.log = log
        self.outcome = LoadOutcome()

    def _upserter(self, plural: str, singular: str) -> TwentyUpserter:
        return TwentyUpserter(
            self.client,
            self.engine,
            connection=self.connection,
            plural=plural,
            unique_paths=self.caps.unique_fields(singular),
            batch_size=self.batch_size,
            log=self.log,
        )

    def _chunks(self, frame: pd.DataFrame, plural: str) -> Iterator[list[dict]]:
        """The frame's rows a chunk at a time, then the stored source rows of earlier failures that
        this frame does not cover (a rejected or deferred row is retried by the next load)."""
        for start in range(0, len(frame), LOAD_CHUNK):
            yield records.frame_rows(frame.iloc[start : start + LOAD_CHUNK])
        if self.retry_failed:
            present = set(frame["_key"]) if len(frame) else set()
            retries = [
                row
                for row in stored_retries(self.engine, self.connection, plural)
                if row.get("_key") not in present
            ]
            if retries:
                yield retries

    def _load(self, label: str, singular: str, frame: pd.DataFrame, prepare: Prepare) -> LoadCounts:
        """Prepare, diff and send one object's frame, a chunk at a time."""
        upserter = self._upserter(label, singular)
        for rows in self._chunks(frame, label):
            ready, waiting = prepare(rows)
            if self.dry_run:
                upserter.preview(ready, waiting)
            else:
                upserter.defer(waiting)
                upserter.feed(ready)
        counts = upserter.counts if self.dry_run else upserter.flush()
        if self.dry_run:
            self.log(f"dry run: {counts.created + counts.updated} {label} would be written")
        self.outcome.counts[label] = counts
        return counts

    def ids(self, plural: str, keys) -> dict[str, str]:
        return synced_ids(self.engine, self.connection, plural, keys)

    # --- one method per Twenty object, in dependency order -------------------------------------

    def people(self, frame: pd.DataFrame) -> LoadCounts:
        return self._load("people", "person", frame, _plain)

    def products(self, frame: pd.DataFrame) -> LoadCounts:
        return self._load("whopProducts", "whopProduct", frame, _plain)

    def opportunities(self, frame: pd.DataFrame) -> LoadCounts:
        def prepare(rows: list[dict]):
            keys = [r["_person_key"] for r in rows if r.get("_person_key")]
            ready, unlinked = records.prepare_opportunities(rows, self.ids("people", keys))
            self.outcome.unlinked_opportunities += unlinked
            return ready, []

        return self._load("opportunities", "opportunity", frame, prepare)

    def notes(self, notes: pd.DataFrame, targets: pd.DataFrame) -> tuple[LoadCounts, LoadCounts]:
        """Notes first, then their targets: a target needs its note, person and opportunity."""
        note_counts = self._load(
            "notes", "note", notes, lambda rows: (records.prepare_notes(rows, self.caps), [])
        )

        def prepare_targets(rows: list[dict]):
            by_kind: dict[str, list[str]] = {}
            for row in rows:
                by_kind.setdefault(row["_target_kind"], []).append(row["_target_key"])
            return records.prepare_note_targets(
                rows,
                self.caps,
                person_ids=self.ids("people", by_kind.get("person", [])),
                opportunity_ids=self.ids("opportunities", by_kind.get("opportunity", [])),
                note_ids=self.ids("notes", {row["_note_key"] for row in rows}),
            )

        return note_counts, self._load("noteTargets", "noteTarget", targets, prepare_targets)
