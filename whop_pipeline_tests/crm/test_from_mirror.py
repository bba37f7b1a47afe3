"""Frames read from the mirror: chunked window reads and id reads give the same frames as the
whole-payload functions, whatever the chunk size."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from whop_pipeline.crm import frames, from_mirror
from whop_pipeline.store.raw import read_raw
from whop_pipeline.whop import assets
from whop_pipeline_tests.pipeline import all_partitions

pytestmark = [pytest.mark.sandbox, pytest.mark.dagster]

EXTRACT = [assets.whop_members, assets.whop_products, assets.whop_memberships, assets.whop_payments]
EVERYTHING = (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC))


def sorted_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("_key").reset_index(drop=True)


@pytest.mark.parametrize("chunk", [7, 5_000])
def test_chunked_reads_match_the_whole_mirror(pipeline, monkeypatch, chunk):
    monkeypatch.setattr(from_mirror, "READ_CHUNK", chunk)
    pipeline.materialize(EXTRACT, partitions=all_partitions())
    connection = pipeline.connection
    with pipeline.engine.connect() as conn:
        payments = read_raw(conn, "payments", connection)
        memberships = read_raw(conn, "memberships", connection)
        titles = {
            p["id"]: p.get("title") or p["id"] for p in read_raw(conn, "products", connection)
        }
        names = frames.person_names(read_raw(conn, "members", connection))

        targets = from_mirror.note_targets(conn, connection, window=EVERYTHING)
        notes = from_mirror.notes(conn, connection, window=EVERYTHING)
        opportunities = from_mirror.opportunities(conn, connection, window=EVERYTHING)
        some = [p["id"] for p in payments[::3]]
        targets_by_id = from_mirror.note_targets(conn, connection, ids=some)

    # Targets come from the link columns, not the JSON: they must agree with the JSON exactly.
    expected_targets = frames.note_targets_frame(payments, connection)
    assert len(targets) > len(payments)  # most payments point at a person and an opportunity
    pd.testing.assert_frame_equal(sorted_frame(targets), sorted_frame(expected_targets))
    pd.testing.assert_frame_equal(
        sorted_frame(notes), sorted_frame(frames.notes_frame(payments, titles, connection))
    )
    pd.testing.assert_frame_equal(
        sorted_frame(opportunities),
        sorted_frame(frames.opportunities_frame(memberships, names, connection)),
    )
    assert set(targets_by_id["_note_key"]) == set(some) & set(expected_targets["_note_key"])


def test_an_empty_window_gives_empty_frames_with_columns(pipeline):
    empty = (dt.datetime(1990, 1, 1, tzinfo=dt.UTC), dt.datetime(1990, 1, 2, tzinfo=dt.UTC))
    with pipeline.engine.connect() as conn:
        targets = from_mirror.note_targets(conn, pipeline.connection, window=empty)
        notes = from_mirror.notes(conn, pipeline.connection, window=empty)
    assert targets.empty and list(targets.columns) == list(
        frames.note_targets_frame([], pipeline.connection).columns
    )
    assert notes.empty and list(notes.columns) == list(
        frames.notes_frame([], {}, pipeline.connection).columns
    )
