"""One load session against Twenty: the client, the workspace's capabilities, and a method per object
that turns a CRM frame into upserts. The sync's load assets and the webhook processing run both use
it, so a webhook lands through exactly the same code as a scheduled sync."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from whop_pipeline.twenty import records
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.models import Capabilities
from whop_pipeline.twenty.upserter import LoadCounts, TwentyUpserter, stored_retries, synced_ids


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

    def _rows(self, frame: pd.DataFrame, plural: str) -> list[dict]:
        rows = records.frame_rows(frame)
        if not self.retry_failed:
            return rows
        return records.merge_retries(rows, stored_retries(self.engine, self.connection, plural))

    def _run(
        self, label: str, upserter: TwentyUpserter, rows: list[records.PreparedRow]
    ) -> LoadCounts:
        changed = upserter.plan(rows)
        if self.dry_run:
            self.log(f"dry run: {len(changed)} {upserter.plural} would be written")
            counts = upserter.counts
            counts.created = sum(1 for row in changed if not upserter.was_synced(row.key))
            counts.updated = len(changed) - counts.created
        else:
            counts = upserter.send(changed)
        self.outcome.counts[label] = counts
        return counts

    def ids(self, plural: str, keys) -> dict[str, str]:
        return synced_ids(self.engine, self.connection, plural, keys)

    # --- one method per Twenty object, in dependency order -------------------------------------

    def people(self, frame: pd.DataFrame) -> LoadCounts:
        rows = records.prepare_plain(self._rows(frame, "people"))
        return self._run("people", self._upserter("people", "person"), rows)

    def products(self, frame: pd.DataFrame) -> LoadCounts:
        rows = records.prepare_plain(self._rows(frame, "whopProducts"))
        return self._run("whopProducts", self._upserter("whopProducts", "whopProduct"), rows)

    def opportunities(self, frame: pd.DataFrame) -> LoadCounts:
        source = self._rows(frame, "opportunities")
        person_ids = self.ids("people", [r["_person_key"] for r in source if r.get("_person_key")])
        rows, unlinked = records.prepare_opportunities(source, person_ids)
        self.outcome.unlinked_opportunities += unlinked
        return self._run("opportunities", self._upserter("opportunities", "opportunity"), rows)

    def notes(self, notes: pd.DataFrame, targets: pd.DataFrame) -> tuple[LoadCounts, LoadCounts]:
        """Notes first, then their targets: a target needs its note, person and opportunity."""
        note_rows = records.prepare_notes(self._rows(notes, "notes"), self.caps)
        note_counts = self._run("notes", self._upserter("notes", "note"), note_rows)

        source = self._rows(targets, "noteTargets")
        by_kind: dict[str, list[str]] = {}
        for row in source:
            by_kind.setdefault(row["_target_kind"], []).append(row["_target_key"])
        ready, waiting = records.prepare_note_targets(
            source,
            self.caps,
            person_ids=self.ids("people", by_kind.get("person", [])),
            opportunity_ids=self.ids("opportunities", by_kind.get("opportunity", [])),
            note_ids=self.ids("notes", {row["_note_key"] for row in source}),
        )
        upserter = self._upserter("noteTargets", "noteTarget")
        if not self.dry_run:
            upserter.defer(waiting)
        target_counts = self._run("noteTargets", upserter, ready)
        return note_counts, target_counts
