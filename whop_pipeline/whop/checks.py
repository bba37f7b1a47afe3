"""Asset checks on the raw mirror: problems a user must hear about, not discover in the CRM."""

import dagster as dg
import sqlalchemy as sa

from whop_pipeline.store import connections
from whop_pipeline.store.resource import PipelineDatabase
from whop_pipeline.store.tables import raw_members, raw_memberships
from whop_pipeline.whop import webhooks_api
from whop_pipeline.whop.assets import whop_members
from whop_pipeline.whop.resource import WhopResource

SAMPLE = 10


@dg.asset_check(asset=whop_members, description="Members carry emails (needs member:email:read).")
def whop_member_emails_present(pipeline_db: PipelineDatabase) -> dg.AssetCheckResult:
    with pipeline_db.engine().connect() as conn:
        total, with_email = conn.execute(
            sa.select(sa.func.count(), sa.func.count(raw_members.c.email)).where(
                raw_members.c.connection == pipeline_db.connection
            )
        ).one()
    metadata = {
        "connection": pipeline_db.connection,
        "members": total,
        "with_email": with_email,
        "without_email": total - with_email,
    }
    if total and not with_email:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"None of {total} members has an email: the Whop API key most likely lacks the "
                "member:email:read permission, so people would reach the CRM without emails and "
                "could not be matched to existing contacts. Grant member:email:read and re-run."
            ),
            metadata=metadata,
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata)


# On whop_members: it runs after memberships and payments and reads the members they name.
@dg.asset_check(asset=whop_members, description="Every membership's member is in the mirror.")
def whop_membership_members_present(pipeline_db: PipelineDatabase) -> dg.AssetCheckResult:
    orphans = (
        sa.select(raw_memberships.c.id, raw_memberships.c.member_id)
        .outerjoin(
            raw_members,
            sa.and_(
                raw_members.c.connection == raw_memberships.c.connection,
                raw_members.c.id == raw_memberships.c.member_id,
            ),
        )
        .where(
            raw_memberships.c.connection == pipeline_db.connection,
            raw_memberships.c.member_id.is_not(None),
            raw_members.c.id.is_(None),
        )
    )
    with pipeline_db.engine().connect() as conn:
        missing = conn.execute(
            sa.select(sa.func.count()).select_from(orphans.subquery())
        ).scalar_one()
        sample = conn.execute(orphans.limit(SAMPLE)).all()
    metadata = {
        "connection": pipeline_db.connection,
        "memberships_without_member": missing,
        "sample": dg.MetadataValue.json([{"membership": m, "member": b} for m, b in sample]),
    }
    return dg.AssetCheckResult(
        passed=missing == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            None
            if missing == 0
            else f"{missing} memberships name a member that is not in the mirror, and Whop did "
            "not return it: the sample lists them; a full sync re-reads every member."
        ),
        metadata=metadata,
    )


@dg.asset_check(
    asset="whop_webhook_inbox",
    description="The Whop webhook the pipeline registered for the run's connection is enabled and "
    "delivering (Whop disables an endpoint that fails for 3 days).",
)
def whop_webhook_healthy(pipeline_db: PipelineDatabase, whop: WhopResource) -> dg.AssetCheckResult:
    name = pipeline_db.connection
    with pipeline_db.engine().connect() as conn:
        row = connections.get(conn, name)
    metadata: dict[str, object] = {"connection": name}
    if row is None or not row.whop_webhook_id:
        metadata["webhook"] = "none registered by the pipeline"
        return dg.AssetCheckResult(
            passed=True,
            metadata=metadata,
            description="No webhook registered by the pipeline (an API-key connection receives "
            "the deliveries of a webhook made in the Whop dashboard).",
        )
    with whop.client() as client:
        hook = webhooks_api.get(client, row.whop_webhook_id)
    metadata["webhook"] = row.whop_webhook_id
    replay = f"then `whop-pipeline webhooks replay --connection {name}` brings back what was missed"
    if hook is None:
        problem = (
            f"Whop no longer knows webhook {row.whop_webhook_id}: connect Whop again (settings "
            "page) to register a new one, " + replay
        )
    elif not hook.enabled:
        problem = (
            f"Whop disabled webhook {hook.id} ({hook.disabled_reason or 'disabled'}): make sure "
            f"{hook.url} answers 200, enable it again in Whop, " + replay
        )
    elif hook.failing_since or hook.consecutive_failures:
        problem = (
            f"deliveries to {hook.url} have failed since {hook.failing_since} "
            f"({hook.consecutive_failures} in a row); Whop disables it after 3 days: make sure "
            "the receiver is reachable, " + replay
        )
    else:
        problem = None
    if hook is not None:
        metadata |= {
            "enabled": hook.enabled,
            "failing_since": hook.failing_since or "",
            "consecutive_failures": hook.consecutive_failures,
        }
    return dg.AssetCheckResult(
        passed=problem is None,
        severity=dg.AssetCheckSeverity.ERROR,
        description=problem,
        metadata=metadata,
    )
