"""Schema bootstrap: read the workspace's metadata, then create what the pipeline needs and is
missing (README.md#the-mapping, docs/twenty-api.md#custom-fields). Idempotent: present things are
left alone; nothing is recreated or deleted."""

from __future__ import annotations

from dataclasses import dataclass, field

from whop_pipeline.crm.mapping import EXTRA_STAGES
from whop_pipeline.twenty.client import TwentyBadRequest, TwentyClient
from whop_pipeline.twenty.models import Capabilities

PRODUCT_OBJECT = {
    "nameSingular": "whopProduct",
    "namePlural": "whopProducts",
    "labelSingular": "Whop product",
    "labelPlural": "Whop products",
    "description": "Products sold on Whop, kept in sync by whop-pipeline",
    "icon": "IconBox",
}


@dataclass(frozen=True)
class FieldSpec:
    object: str
    name: str
    type: str
    label: str
    unique: bool = False

    def body(self, object_id: str) -> dict:
        return {
            "objectMetadataId": object_id,
            "type": self.type,
            "name": self.name,
            "label": self.label,
            "description": "Kept in sync from Whop by whop-pipeline",
            "isNullable": True,
            "isUnique": self.unique,
        }


CUSTOM_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("person", "whopUserId", "TEXT", "Whop user id", unique=True),
    FieldSpec("person", "whopUsername", "TEXT", "Whop username"),
    FieldSpec("person", "whopProfileUrl", "LINKS", "Whop profile"),
    FieldSpec("opportunity", "whopMembershipId", "TEXT", "Whop membership id", unique=True),
    FieldSpec("opportunity", "whopMembershipStatus", "TEXT", "Whop membership status"),
    FieldSpec("opportunity", "whopRenewalDate", "DATE_TIME", "Whop renewal date"),
    FieldSpec("opportunity", "whopProductName", "TEXT", "Whop product"),
    FieldSpec("note", "whopPaymentId", "TEXT", "Whop payment id", unique=True),
    FieldSpec("whopProduct", "whopProductId", "TEXT", "Whop product id", unique=True),
    FieldSpec("whopProduct", "whopRoute", "TEXT", "Whop route"),
    # Customer health (README.md#customer-health): written by the health records, never by the sync.
    FieldSpec("person", "whopLifetimeValue", "CURRENCY", "Whop lifetime value"),
    FieldSpec("person", "whopMonthlyRevenue", "CURRENCY", "Whop monthly revenue"),
    FieldSpec("person", "whopCustomerSince", "DATE_TIME", "Whop customer since"),
    FieldSpec("person", "whopLastPaymentAt", "DATE_TIME", "Whop last payment"),
    FieldSpec("person", "whopFailedPayments90d", "NUMBER", "Whop failed payments (90 days)"),
    FieldSpec("person", "whopChurnRisk", "NUMBER", "Whop churn risk"),
    FieldSpec("person", "whopChurnRiskReasons", "TEXT", "Whop churn risk reasons"),
    FieldSpec("person", "whopLeadScore", "NUMBER", "Whop lead score"),
    FieldSpec("person", "whopLeadScoreReasons", "TEXT", "Whop lead score reasons"),
    FieldSpec("opportunity", "whopChurnRisk", "NUMBER", "Whop churn risk"),
    FieldSpec("opportunity", "whopChurnRiskReasons", "TEXT", "Whop churn risk reasons"),
)
STAGE_LOOK = {"NEGOTIATION": ("Negotiation", "orange"), "LOST": ("Lost", "red")}


class SchemaConflict(RuntimeError):
    """The workspace has a field of ours in a shape we cannot use; a person must decide."""


@dataclass
class SchemaReport:
    created: list[str] = field(default_factory=list)
    present: int = 0


def _check_existing(spec: FieldSpec, caps: Capabilities) -> bool:
    existing = caps.object(spec.object).fields.get(spec.name)
    if existing is None:
        return False
    where = f"{spec.object}.{spec.name}"
    if existing.type != spec.type:
        raise SchemaConflict(
            f"{where} exists as {existing.type}, expected {spec.type}: rename or remove it in "
            "Twenty (Settings → Data model); whop-pipeline never changes a field's type."
        )
    if spec.unique and not existing.is_unique:
        raise SchemaConflict(
            f"{where} exists but is not unique, so upserts could not match on it and would "
            "create duplicates: mark it unique in Twenty (Settings → Data model)."
        )
    return True


def missing_schema(caps: Capabilities) -> list[str]:
    """What ``ensure_schema`` would create in this workspace (for dry runs)."""
    missing = [] if "whopProduct" in caps.objects else ["object whopProduct"]
    for spec in CUSTOM_FIELDS:
        obj = caps.objects.get(spec.object)
        if obj is None or not obj.has(spec.name):
            missing.append(f"field {spec.object}.{spec.name}")
    absent = [v for v in EXTRA_STAGES if v not in caps.stage_values()]
    if absent:
        missing.append(f"stages {', '.join(absent)}")
    return missing


def ensure_schema(client: TwentyClient) -> tuple[Capabilities, SchemaReport]:
    """Discover, create what is missing, and return the workspace's (updated) capabilities."""
    report = SchemaReport()
    caps = Capabilities(objects=client.objects())
    if "whopProduct" not in caps.objects:
        client.create_object(PRODUCT_OBJECT)
        report.created.append("object whopProduct")
        caps = Capabilities(objects=client.objects())

    for spec in CUSTOM_FIELDS:
        if _check_existing(spec, caps):
            report.present += 1
            continue
        try:
            client.create_field(spec.body(caps.object(spec.object).id))
        except TwentyBadRequest:
            # Another run may have created it between our read and our write.
            caps = Capabilities(objects=client.objects())
            if not _check_existing(spec, caps):
                raise
            report.present += 1
            continue
        report.created.append(f"field {spec.object}.{spec.name}")

    stage = caps.object("opportunity").fields.get("stage")
    if stage is None:
        raise SchemaConflict("opportunity has no 'stage' field: unknown Twenty schema")
    options = list(stage.options or [])
    values = {o["value"] for o in options}
    missing = [value for value in EXTRA_STAGES if value not in values]
    if missing:
        # `options` is a full replacement: send every existing option back, ids included.
        for value in missing:
            label, color = STAGE_LOOK[value]
            options.append(
                {"value": value, "label": label, "color": color, "position": len(options)}
            )
        client.update_field(stage.id, {"options": options})
        report.created.append(f"stages {', '.join(missing)}")
    else:
        report.present += 1

    if report.created:
        caps = Capabilities(objects=client.objects())
    return caps, report
