"""One load session against Twenty: the client, the workspace's capabilities, and ``load``, which
sends one object's CRM records whose digest differs from ``sync_state``. The sync's load assets and
the webhook runs both call it, in the one order ``OBJECTS`` gives, so a webhook lands through
exactly the same code as a scheduled sync."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from whop_pipeline.crm.build import OBJECTS
from whop_pipeline.health.records import HEALTH_OBJECTS, TARGETS
from whop_pipeline.store import crm
from whop_pipeline.store.database import analyze
from whop_pipeline.twenty import records
from whop_pipeline.twenty.client import TwentyClient
from whop_pipeline.twenty.models import Capabilities
from whop_pipeline.twenty.upserter import LoadCounts, TwentyUpserter, synced_ids

# Records read, prepared and sent at a time: memory holds one chunk, not the object. A multiple of
# the batch maximum, so chunk boundaries cost no extra call.
LOAD_CHUNK = 5_000
# Twenty's singular object names, for the workspace's unique fields.
SINGULAR = {
    "people": "person",
    "whopProducts": "whopProduct",
    "opportunities": "opportunity",
    "notes": "note",
    "noteTargets": "noteTarget",
}


@dataclass
class LoadOutcome:
    counts: dict[str, LoadCounts] = field(default_factory=dict)
    unlinked_opportunities: int = 0


class TwentyLoad:
    """Loads CRM records for one connection. ``dry_run`` counts but sends nothing."""

    def __init__(
        self,
        client: TwentyClient,
        caps: Capabilities,
        engine: sa.Engine,
        *,
        connection: str,
        batch_size: int,
        dry_run: bool = False,
        log: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self.client = client
        self.caps = caps
        self.engine = engine
        self.connection = connection
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.log = log
        self.outcome = LoadOutcome()

    def _ids(self, plural: str, keys) -> dict[str, str]:
        return synced_ids(self.engine, self.connection, plural, keys)

    def _prepare(self, object_name: str, candidates: list[crm.LoadCandidate], counts: LoadCounts):
        """The rows to send and the rows that must wait, relations resolved."""
        if object_name == "opportunities":
            keys = [c.links["person"] for c in candidates if c.links and c.links.get("person")]
            ready, unlinked, skipped = records.prepare_opportunities(
                candidates, self._ids("people", keys)
            )
            self.outcome.unlinked_opportunities += unlinked
            counts.unchanged += skipped
            return ready, []
        if object_name == "notes":
            return records.prepare_notes(candidates, self.caps), []
        if object_name in HEALTH_OBJECTS:
            target = TARGETS[object_name][1]
            ids = self._ids(target, [c.key for c in candidates])
            return records.prepare_health(candidates, SINGULAR[target], ids)
        if object_name == "noteTargets":
            by_kind: dict[str, list[str]] = {}
            for c in candidates:
                by_kind.setdefault(c.links["kind"], []).append(c.links["target"])
            return records.prepare_note_targets(
                candidates,
                self.caps,
                person_ids=self._ids("people", by_kind.get("person", [])),
                opportunity_ids=self._ids("opportunities", by_kind.get("opportunity", [])),
                note_ids=self._ids("notes", {c.links["note"] for c in candidates}),
            )
        return records.prepare_plain(candidates), []

    def load(
        self, object_name: str, *, keys: Collection[str] | None = None, full: bool = False
    ) -> LoadCounts:
        """Send the object's records that differ from ``sync_state``: the load-pending ones, or
        with ``full`` every record (compared in SQL), or with ``keys`` just those records."""
        health = object_name in HEALTH_OBJECTS
        upserter = TwentyUpserter(
            self.client,
            self.engine,
            connection=self.connection,
            plural=object_name,
            # Health records address their target by id alone.
            unique_paths=[] if health else self.caps.unique_fields(SINGULAR[object_name]),
            batch_size=self.batch_size,
            log=self.log,
            endpoint=TARGETS[object_name][0] if health else None,
        )
        counts = upserter.counts
        if not self.dry_run:
            with self.engine.begin() as conn:
                if full:  # sync_state grew by the objects loaded before this one
                    analyze(conn, "crm_records", "sync_state")
                settled = crm.settle_pending(conn, self.connection, object_name)
            counts.unchanged += 0 if full else settled
        considered = 0
        for candidates in crm.iter_candidates(
            self.engine, self.connection, object_name, full=full, keys=keys, chunk=LOAD_CHUNK
        ):
            considered += len(candidates)
            ready, waiting = self._prepare(object_name, candidates, counts)
            if self.dry_run:
                upserter.preview(ready, waiting)
            else:
                upserter.defer(waiting)
                upserter.feed(ready)
        if not self.dry_run:
            upserter.flush()
        if full and keys is None:
            with self.engine.connect() as conn:
                total = crm.count_records(conn, self.connection, object_name)
            counts.unchanged = total - considered + counts.unchanged
        if self.dry_run:
            self.log(f"dry run: {counts.created + counts.updated} {object_name} would be written")
        self.outcome.counts[object_name] = counts
        return counts

    def load_all(
        self, keys: Mapping[str, Collection[str]] | None = None, *, full: bool = False
    ) -> dict[str, LoadCounts]:
        """Every object in load order (for ``keys``: only the objects and records named)."""
        for object_name in OBJECTS:
            if keys is None:
                self.load(object_name, full=full)
            elif keys.get(object_name):
                self.load(object_name, keys=keys[object_name])
        return self.outcome.counts
