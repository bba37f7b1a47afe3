"""Transform assets: raw mirror → CRM frames (pandas). They read the mirror through ``from_mirror``
(pure ``frames`` functions underneath); the frames reach the load assets through
``CrmFrameIOManager``."""

import dagster as dg
import pandas as pd

from whop_pipeline.crm import from_mirror
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.whop.assets import whop_members, whop_memberships, whop_payments, whop_products
from whop_pipeline.whop.partitions import DAILY, partition_window

CRM_IO_MANAGER = "crm_io_manager"

transform = {"group_name": "crm", "kinds": {"pandas"}, "io_manager_key": CRM_IO_MANAGER}


def _row_count(context: dg.AssetExecutionContext, frame: pd.DataFrame, **extra: int) -> None:
    context.add_output_metadata({"dagster/row_count": len(frame), **extra})


@dg.asset(deps=[whop_members, whop_payments], **transform)
def crm_people(context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase) -> pd.DataFrame:
    """One Twenty Person per Whop user (or business buyer), emails de-duplicated ignoring case."""
    with pipeline_db.engine().connect() as conn:
        people = from_mirror.people(conn, pipeline_db.connection_name)
    primary = people["emails.primaryEmail"].notna()
    shared = people["emails.additionalEmails"].notna()
    _row_count(
        context,
        people,
        with_primary_email=int(primary.sum()),
        shared_email=int(shared.sum()),
        without_email=int((~primary & ~shared).sum()),
    )
    return people


@dg.asset(deps=[whop_products], **transform)
def crm_products(context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase) -> pd.DataFrame:
    """One ``whopProduct`` record per Whop product."""
    with pipeline_db.engine().connect() as conn:
        products = from_mirror.products(conn, pipeline_db.connection_name)
    _row_count(context, products)
    return products


@dg.asset(deps=[whop_memberships, whop_members], **transform, **DAILY)
def crm_opportunities(
    context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase
) -> pd.DataFrame:
    """One Opportunity per membership created in the partitions: stage, amount, renewal date."""
    with pipeline_db.engine().connect() as conn:
        opportunities = from_mirror.opportunities(
            conn, pipeline_db.connection_name, window=partition_window(context)
        )
    stages = opportunities["stage"].value_counts().to_dict()
    _row_count(context, opportunities, **{f"stage_{k}": int(v) for k, v in stages.items()})
    return opportunities


@dg.asset(deps=[whop_payments, whop_products], **transform, **DAILY)
def crm_notes(context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase) -> pd.DataFrame:
    """One Note per payment created in the partitions, titled with status, amount and product."""
    with pipeline_db.engine().connect() as conn:
        notes = from_mirror.notes(
            conn, pipeline_db.connection_name, window=partition_window(context)
        )
    _row_count(context, notes)
    return notes


@dg.asset(deps=[whop_payments], **transform, **DAILY)
def crm_note_targets(
    context: dg.AssetExecutionContext, pipeline_db: PipelineDatabase
) -> pd.DataFrame:
    """Links from each payment's Note to its Person and, with a membership, its Opportunity."""
    with pipeline_db.engine().connect() as conn:
        targets = from_mirror.note_targets(
            conn, pipeline_db.connection_name, window=partition_window(context)
        )
    kinds = targets["_target_kind"].value_counts().to_dict()
    _row_count(context, targets, **{f"to_{k}": int(v) for k, v in kinds.items()})
    return targets
