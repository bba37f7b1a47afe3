"""The ``health`` group: the churn and lead models (trained weekly, stored per connection and
versioned, checked on a later window than they learned from) and the customer health records
(scored daily and for the people a webhook batch touched). docs/health.md explains each number."""

import datetime as dt
import math
from typing import Any

import dagster as dg

from whop_pipeline.health import scoring
from whop_pipeline.health.records import OPPORTUNITY_HEALTH, PERSON_HEALTH
from whop_pipeline.store import crm
from whop_pipeline.store.resource import PipelineDatabase

MODEL_DEPS = ["whop_memberships", "whop_payments", "whop_products"]

# Why these thresholds (docs/health.md#checks):
# - ROC AUC 0.65: at 0.5 a score ranks a leaving customer above a staying one no better than a coin;
#   below ~0.65 a seller sorting by the score gains little over sorting by the one obvious flag.
# - Brier skill > 0: the model must beat always predicting the holdout's own base rate.
# - Calibration: in every decile of the holdout the mean predicted rate is within 0.05 of the
#   observed one (a risk of 30 means about 30 in 100 such customers leave within 30 days, give or
#   take 5), or within three standard errors (sqrt(p(1 − p) / rows)) when the decile is too small
#   for 0.05 to be measurable: 35 rows at p = 0.5 cannot tell 0.5 from 0.6. Three, not two: with
#   ten deciles a perfectly calibrated model would miss a two-error band somewhere 37% of the time,
#   a three-error band about 3% of the time.
MIN_ROC_AUC = 0.65
MIN_BRIER_SKILL = 0.0
MAX_CALIBRATION_GAP = 0.05
CALIBRATION_STANDARD_ERRORS = 3


class HealthConfig(dg.Config):
    as_of: str | None = None
    """Score or train as of this ISO time (UTC) instead of now: reproducible runs and tests."""


def _now(config: HealthConfig) -> dt.datetime:
    if not config.as_of:
        return dt.datetime.now(dt.UTC)
    moment = dt.datetime.fromisoformat(config.as_of.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"as_of {config.as_of!r} has no time zone: give one, e.g. +00:00")
    return moment.astimezone(dt.UTC)


def brier_skill(metrics: dict[str, Any]) -> float | None:
    """1 − Brier / the Brier of always predicting the holdout's base rate."""
    rows, positives, brier = (
        metrics.get("holdout_rows"),
        metrics.get("holdout_positives"),
        metrics.get("brier"),
    )
    if not rows or brier is None:
        return None
    rate = positives / rows
    reference = rate * (1 - rate)
    return 1 - brier / reference if reference else None


def allowed_gap(decile: dict[str, Any]) -> float:
    """How far a decile's observed rate may sit from its predicted one (see above)."""
    p = min(max(decile["predicted"], 0.0), 1.0)
    error = math.sqrt(p * (1 - p) / max(decile["rows"], 1))
    return max(MAX_CALIBRATION_GAP, CALIBRATION_STANDARD_ERRORS * error)


def calibration_misses(metrics: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The deciles outside their allowed gap; None without a calibration table."""
    deciles = metrics.get("calibration") or []
    if not deciles:
        return None
    return [d for d in deciles if abs(d["predicted"] - d["observed"]) > allowed_gap(d)]


def model_checks(asset: str, model: Any) -> list[dg.AssetCheckResult]:
    """The four checks of a trained model; a rule (thin history) is not validated and says so."""
    metrics = model.metrics
    warn = dg.AssetCheckSeverity.WARN
    if model.chosen == "rule":
        unvalidated = {"status": dg.MetadataValue.text(f"rule in use: {model.reason}")}
        return [
            dg.AssetCheckResult(
                asset_key=asset, check_name=name, passed=False, severity=warn, metadata=unvalidated
            )
            for name in ("holdout_roc_auc", "holdout_brier", "calibration", "has_signal")
        ]
    auc, skill, misses = metrics["roc_auc"], brier_skill(metrics), calibration_misses(metrics)
    deciles = metrics.get("calibration") or []
    table = [
        f"{d['decile']}: predicted {d['predicted']:.3f}, observed {d['observed']:.3f}, "
        f"allowed ±{allowed_gap(d):.3f} ({d['rows']} rows)"
        for d in deciles
    ]
    gaps = [abs(d["predicted"] - d["observed"]) for d in deciles]
    return [
        dg.AssetCheckResult(
            asset_key=asset,
            check_name="holdout_roc_auc",
            passed=auc >= MIN_ROC_AUC,
            metadata={
                "roc_auc": auc,
                "threshold": MIN_ROC_AUC,
                "baseline_auc": metrics.get("baseline_auc"),
                "baseline_feature": metrics.get("baseline_feature") or "",
            },
        ),
        dg.AssetCheckResult(
            asset_key=asset,
            check_name="holdout_brier",
            passed=skill is not None and skill > MIN_BRIER_SKILL,
            metadata={"brier": metrics.get("brier"), "brier_skill": skill},
        ),
        dg.AssetCheckResult(
            asset_key=asset,
            check_name="calibration",
            passed=misses == [],
            severity=warn,
            metadata={
                "largest_gap": max(gaps) if gaps else None,
                "deciles_outside": len(misses) if misses is not None else None,
                "threshold": MAX_CALIBRATION_GAP,
                "deciles": dg.MetadataValue.md("\n".join(f"- {line}" for line in table)),
            },
        ),
        dg.AssetCheckResult(
            asset_key=asset,
            check_name="has_signal",
            passed=not model.no_signal,
            severity=warn,
            description=f"no signal: {model.reason}; scores are withheld"
            if model.no_signal
            else None,
            metadata={"roc_auc": auc, "no_signal": model.no_signal},
        ),
    ]


CHECK_NAMES = ("holdout_roc_auc", "holdout_brier", "calibration", "has_signal")


def _model_asset(kind: str, name: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        deps=MODEL_DEPS,
        group_name="health",
        kinds={"scikitlearn", "pandas"},
        description=description,
        check_specs=[dg.AssetCheckSpec(check, asset=name) for check in CHECK_NAMES],
    )
    def model_asset(
        context: dg.AssetExecutionContext, config: HealthConfig, pipeline_db: PipelineDatabase
    ) -> dg.MaterializeResult:
        now = _now(config)
        report = scoring.train_and_store(
            pipeline_db.engine(), pipeline_db.connection, kind, now, progress=context.log.info
        )
        model, metrics = report.model, report.model.metrics
        return dg.MaterializeResult(
            metadata={
                "connection": pipeline_db.connection,
                "dagster/row_count": report.rows,
                "version": report.version,
                "chosen": model.chosen,
                "no_signal": model.no_signal,
                "reason": model.reason or "",
                "roc_auc": metrics.get("roc_auc"),
                "baseline_auc": metrics.get("baseline_auc"),
                "brier": metrics.get("brier"),
                "positives": metrics.get("positives", 0),
                "snapshots": report.snapshots,
                "train_window": dg.MetadataValue.json(metrics.get("train_window")),
                "holdout_window": dg.MetadataValue.json(metrics.get("holdout_window")),
                "trained_as_of": now.isoformat(),
            },
            check_results=model_checks(name, model),
        )

    return model_asset


churn_model = _model_asset(
    scoring.CHURN,
    "churn_model",
    "Churn model: chance an active membership ends within 30 days, learned from this account.",
)
lead_model = _model_asset(
    scoring.LEAD,
    "lead_model",
    "Lead model: chance a person without a paid membership starts one within 30 days.",
)


@dg.asset(
    deps=["churn_model", "lead_model", "crm_people", "crm_opportunities"],
    group_name="health",
    kinds={"pandas", "sql"},
)
def customer_health(
    context: dg.AssetExecutionContext, config: HealthConfig, pipeline_db: PipelineDatabase
) -> dg.MaterializeResult:
    """Lifetime value, recurring revenue, churn risk and lead score per customer, as CRM records."""
    engine, connection = pipeline_db.engine(), pipeline_db.connection
    report = scoring.score(engine, connection, _now(config), log=context.log.info)
    with engine.connect() as conn:
        people = crm.count_records(conn, connection, PERSON_HEALTH)
    return dg.MaterializeResult(
        metadata={
            "connection": connection,
            "dagster/row_count": people,
            "memberships_scored": report.memberships_scored,
            "people_scored": report.people,
            "people_at_risk": report.people_at_risk,
            "leads_scored": report.leads,
            "people_changed": report.changed_count(PERSON_HEALTH),
            "opportunities_changed": report.changed_count(OPPORTUNITY_HEALTH),
            "churn_model": f"v{report.churn_version} ({report.churn_state})",
            "lead_model": f"v{report.lead_version} ({report.lead_state})",
        }
    )
