"""CRM records: stored only when their digest changes, and read for loading in keyset pages."""

from __future__ import annotations

import pytest

from whop_pipeline.store import crm, state
from whop_pipeline.store.database import get_engine

C = "default"


def record(i: int, version: str = "a") -> crm.CrmRecord:
    return crm.CrmRecord(f"k{i:02d}", {"n": i, "v": version}, f"{version}{i:02d}")


def test_only_new_or_changed_records_are_written_and_become_pending(db_url):
    engine = get_engine(db_url)
    with engine.begin() as conn:
        assert crm.write_records(conn, C, "people", [record(1), record(2)]) == ["k01", "k02"]
        assert crm.write_records(conn, C, "people", [record(1), record(2, "b")]) == ["k02"]
        assert crm.write_records(conn, "other", "people", [record(1)]) == ["k01"]  # its own rows
        assert crm.count_records(conn, C, "people") == 2


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_candidates_come_in_keyset_pages_while_the_loader_writes_state(db_url, chunk):
    """Sending a page writes sync_state, which drops those records from the diff: the next page
    must continue after the last key, not skip or repeat any."""
    engine = get_engine(db_url)
    with engine.begin() as conn:
        crm.write_records(conn, C, "notes", [record(i) for i in range(12)])
    seen: list[str] = []
    for page in crm.iter_candidates(engine, C, "notes", chunk=chunk):
        assert len(page) <= chunk
        seen += [c.key for c in page]
        with engine.begin() as conn:
            state.write_state(
                conn, C, "notes", [state.SyncedRecord(c.key, "id", c.digest) for c in page]
            )
            crm.mark_loaded(conn, C, "notes", [(c.key, c.digest) for c in page])
    assert seen == [f"k{i:02d}" for i in range(12)]
    assert list(crm.iter_candidates(engine, C, "notes")) == []  # nothing pending
    assert list(crm.iter_candidates(engine, C, "notes", full=True)) == []  # nothing differs
    assert list(crm.iter_candidates(engine, "other", "notes", full=True)) == []


def test_keys_narrow_the_candidates_and_settle_clears_what_twenty_has(db_url):
    engine = get_engine(db_url)
    with engine.begin() as conn:
        crm.write_records(conn, C, "notes", [record(i) for i in range(5)])
        state.write_state(conn, C, "notes", [state.SyncedRecord("k01", "id", "a01")])
    narrowed = [
        c.key for page in crm.iter_candidates(engine, C, "notes", keys=["k03", "k01"]) for c in page
    ]
    assert narrowed == ["k03"]  # k01 is already in Twenty with this digest
    with engine.begin() as conn:
        assert crm.settle_pending(conn, C, "notes") == 1
    pending = [c.key for page in crm.iter_candidates(engine, C, "notes") for c in page]
    assert pending == ["k00", "k02", "k03", "k04"]
