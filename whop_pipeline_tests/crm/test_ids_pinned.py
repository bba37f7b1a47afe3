"""Pinned Twenty record ids. The pipeline re-addresses the records it already wrote by these uuid5
ids, so changing the namespace or the joined string would make every later sync create duplicates
instead of updating. The literals were computed once from ``mapping.py`` and must never change."""

from __future__ import annotations

import pytest

from whop_pipeline.crm import mapping as m

pytestmark = pytest.mark.unit

CONNECTION = "default"
MEMBERSHIP = "mem_1a2B3c4D5e6F7g"
PAYMENT = "pay_1a2B3c4D5e6F7g"


def test_record_ids_are_pinned() -> None:
    assert str(m.ID_NAMESPACE) == "7d0b7a38-3c55-4a9a-9f1e-5b8f1f0c2a61"
    assert m.opportunity_id(CONNECTION, MEMBERSHIP) == "8717459c-a001-5d01-a6cf-cfd816770199"
    assert m.note_id(CONNECTION, PAYMENT) == "5057ac00-e7c1-5849-b769-6af45aa3c32f"
    assert m.note_target_id(CONNECTION, PAYMENT, "person") == "6f36dee0-be04-5020-9d0c-a03daa26d534"
    assert (
        m.note_target_id(CONNECTION, PAYMENT, "opportunity")
        == "99c98e7c-b70d-527d-9f97-b7e4ee39ddcb"
    )


def test_another_connection_gets_other_ids() -> None:
    for derive in (
        lambda c: m.opportunity_id(c, MEMBERSHIP),
        lambda c: m.note_id(c, PAYMENT),
        lambda c: m.note_target_id(c, PAYMENT, "person"),
        lambda c: m.note_target_id(c, PAYMENT, "opportunity"),
    ):
        assert derive(CONNECTION) != derive("other")
