"""Transform assets: raw mirror → CRM frames (pandas). They read the mirror and call the pure
functions of ``frames``; the frames go to the load assets through ``CrmFrameIOManager``."""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from whop_pipeline.crm import frames
from whop_pipeline.crm.mapping import member_person_key
from whop_pipeline.store.raw import read_raw
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.store.tables import raw_payments
from whop_pipeline.whop.assets import whop_members, whop_memberships, whop_payments, whop_products
from whop_pipeline.whop.partitions import daily_partitions, partition_window

CRM_IO_MANAGER = "crm_io_manager"
# Long ranges (a reconcile, a backfill) are read a month at a time: memory holds one month of raw
# JSON plus the frames, which are far smaller than the JSON they come from.
READ_CHUNK = dt.timedelta(days=31)

partitioned = {
    "partitions_def": daily_partitions,
    "backfill_policy": dg.BackfillPolicy.single_run(),
}


def _chunks(start: dt.datetime, end: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    while start < end:
        yield start, min(end, start + READ_CHUNK)
        start += READ_CHUNK


def _row_count(context: dg.AssetExecutionContext, frame: pd.DataFrame, **extra: int) -> None:
    context.add_output_metadata({"dagster/row_count": len(frame), **extra})


@dg.asset(
    group_name="crm",
    kinds={"pandas"},
    deps=[whop_members, whop_payments],
    io_manager_key=CRM_IO_MANAGER,
)
def crm_people(context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase) -> pd.DataFrame:
    """One Twenty Person per Whop user (or business buyer), emails de-duplicated ignoring case."""
    connection = pipeline_db.connection_name
    with pipeline_db.engine().connect() as conn:
        members = read_raw(conn, "members", connection)
        with_email = {member_person_key(member) for member in members if member.get("email")}
        # Payments matter here only for people whose member has no email (customer_email is the
        # fallback) or who have no member yet: read just those payments' JSON.
        payer_rows = conn.execute(
            sa.select(raw_payments.c.id, raw_payments.c.user_id, raw_payments.c.member_id).where(
                raw_payments.c.connection == connection
            )
        ).all()
        needed = [row.id for row in payer_rows if (row.user_id or row.member_id) not in with_email]
        payments = read_raw(conn, "payments", connection, ids=needed)
    people = frames.people_frame(members, payments)
    _row_count(
        context,
        people,
        with_primary_email=int(people["emails.primaryEmail"].notna().sum()),
        shared_email=int(people["emails.additionalEmails"].notna().sum()),
        without_email=int(
            (people["emails.primaryEmail"].isna() & people["emails.additionalEmails"].isna()).sum()
        ),
    )
    return people


@dg.asset(group_name="crm", kinds={"pandas"}, deps=[whop_products], io_manager_key=CRM_IO_MANAGER)
def crm_products(context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase) -> pd.DataFrame:
    """One ``whopProduct`` record per Whop product."""
    with pipeline_db.engine().connect() as conn:
        products = frames.products_frame(read_raw(conn, "products", pipeline_db.connection_name))
    _row_count(context, products)
    return products


@dg.asset(
    group_name="crm",
    kinds={"pandas"},
    deps=[whop_memberships, whop_members],
    io_manager_key=CRM_IO_MANAGER,
    **partitioned,
)
def crm_opportunities(
    context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase
) -> pd.DataFrame:
    """One Opportunity per membership created in the partitions: stage, amount, renewal date."""
    connection = pipeline_db.connection_name
    start, end = partition_window(context)
    parts = []
    with pipeline_db.engine().connect() as conn:
        names = frames.person_names(read_raw(conn, "members", connection))
        for lo, hi in _chunks(start, end):
            memberships = read_raw(conn, "memberships", connection, created_from=lo, created_to=hi)
            parts.append(frames.opportunities_frame(memberships, names, connection))
    opportunities = pd.concat(parts, ignore_index=True)
    stages = opportunities["stage"].value_counts().to_dict()
    _row_count(context, opportunities, **{f"stage_{k}": int(v) for k, v in stages.items()})
    return opportunities


def _product_titles(conn: sa.Connection, connection: str) -> dict[str, str]:
    return {p["id"]: p.get("title") or p["id"] for p in read_raw(conn, "products", connection)}


@dg.asset(
    group_name="crm",
    kinds={"pandas"},
    deps=[whop_payments, whop_products],
    io_manager_key=CRM_IO_MANAGER,
    **partitioned,
)
def crm_notes(context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase) -> pd.DataFrame:
    """One Note per payment created in the partitions, titled with status, amount and product."""
    connection = pipeline_db.connection_name
    start, end = partition_window(context)
    parts = []
    with pipeline_db.engine().connect() as conn:
        titles = _product_titles(conn, connection)
        for lo, hi in _chunks(start, end):
            payments = read_raw(conn, "payments", connection, created_from=lo, created_to=hi)
            parts.append(frames.notes_frame(payments, titles, connection))
    notes = pd.concat(parts, ignore_index=True)
    _row_count(context, notes)
    return notes


@dg.asset(
    group_name="crm",
    kinds={"pandas"},
    deps=[whop_payments],
    io_manager_key=CRM_IO_MANAGER,
    **partitioned,
)
def crm_note_targets(
    context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase
) -> pd.DataFrame:
    """Links from each payment's Note to its Person and, with a membership, its Opportunity."""
    connection = pipeline_db.connection_name
    start, end = partition_window(context)
    parts = []
    with pipeline_db.engine().connect() as conn:
        for lo, hi in _chunks(start, end):
            payments = read_raw(conn, "payments", connection, created_from=lo, created_to=hi)
            parts.append(frames.note_targets_frame(payments, connection))
    targets = pd.concat(parts, ignore_index=True)
    kinds = targets["_target_kind"].value_counts().to_dict()
    _row_count(context, targets, **{f"to_{k}": int(v) for k, v in kinds.items()})
    return targets
