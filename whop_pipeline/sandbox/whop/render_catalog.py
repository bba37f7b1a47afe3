"""Products and variants (also served as plans on the deprecated ``/plans`` path), list and
retrieve shapes, and the active-membership counts they report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from whop_pipeline.sandbox.dataset import VALID_STATUSES, Plan, Product, WhopDataset, iso
from whop_pipeline.sandbox.whop.money import formatted_price, major_float, money

Counts = tuple[Counter, Counter]  # active memberships by product id, by plan id


def member_counts(ds: WhopDataset) -> Counts:
    """Active (access-granting) memberships per product and per plan."""
    by_product: Counter = Counter()
    by_plan: Counter = Counter()
    for ms in ds.memberships:
        if ms.status in VALID_STATUSES:
            by_product[ms.product_id] += 1
            by_plan[ms.plan_id] += 1
    return by_product, by_plan


def _public_plan(plan: Plan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "title": plan.title,
        "plan_type": plan.plan_type,
        "initial_price": money(plan.initial_minor, plan.currency),
        "renewal_price": money(plan.renewal_minor, plan.currency),
        "billing_period": float(plan.billing_period_days) if plan.billing_period_days else None,
        "expiration_days": float(plan.expiration_days) if plan.expiration_days else None,
        "unlimited_stock": True,
        "visibility": plan.visibility,
    }


def render_plan(
    ds: WhopDataset, plan: Plan, *, detail: bool = False, counts: Counts | None = None
) -> dict[str, Any]:
    """A variant (``GET /variants``) and equally a plan (``GET /plans``, the deprecated path)."""
    by_plan = (counts or member_counts(ds))[1]
    product = ds.get("products", plan.product_id)
    cur = plan.currency
    due = plan.initial_minor + (0 if plan.trial_period_days else plan.renewal_minor)
    body: dict[str, Any] = {
        "id": plan.id,
        "title": plan.title,
        "description": None,
        "created_at": iso(plan.created_at),
        "updated_at": iso(plan.updated_at),
        "account": {"id": ds.account.id, "title": ds.account.title},
        "product": {"id": product.id, "title": product.title},
        "currency": cur,
        "plan_type": plan.plan_type,
        "release_method": "buy_now",
        "visibility": plan.visibility,
        "initial_price": major_float(plan.initial_minor, cur),
        "renewal_price": major_float(plan.renewal_minor, cur),
        "initial_price_due": money(due, cur),
        "formatted_price": formatted_price(plan),
        "billing_period": float(plan.billing_period_days) if plan.billing_period_days else None,
        "trial_period_days": float(plan.trial_period_days) if plan.trial_period_days else None,
        "expiration_days": float(plan.expiration_days) if plan.expiration_days else None,
        "member_count": float(by_plan[plan.id]),
        "stock": None,
        "unlimited_stock": True,
        "split_pay_required_payments": None,
        "internal_notes": None,
        "metadata": {},
        "purchase_url": f"https://whop.com/checkout/{plan.id}",
        "adaptive_pricing_enabled": False,
        "attributes": None,
        "cancel_discount_intervals": None,
        "cancel_discount_percentage": None,
        "offer_cancel_discount": False,
        "checkout_styling": None,
        "custom_fields": [],
        "image": None,
        "invoice": None,
        "payment_method_configuration": None,
        "sku": None,
        "strike_through_initial_price": None,
        "strike_through_renewal_price": None,
        "three_ds_level": None,
    }
    if detail:
        body["tax_type"] = "unspecified"
        body["collect_tax"] = False
        body["deletable"] = False
        body["effective_payment_method_configuration"] = {
            "enabled": ["card"],
            "disabled": [],
            "include_platform_defaults": True,
        }
    return body


def render_product(
    ds: WhopDataset, product: Product, *, detail: bool = False, counts: Counts | None = None
) -> dict[str, Any]:
    counts = counts or member_counts(ds)
    plans = [p for p in ds.plans if p.product_id == product.id]
    visible = [p for p in plans if p.visibility == "visible"]
    account = ds.account
    body: dict[str, Any] = {
        "id": product.id,
        "title": product.title,
        "route": product.route,
        "created_at": iso(product.created_at),
        "updated_at": iso(product.updated_at),
        "headline": product.headline,
        "description": product.description,
        "visibility": product.visibility,
        "external_identifier": None,
        "labels": [],
        "metadata": {},
        "member_count": float(counts[0][product.id]),
        "verified": False,
        "average_review_rating": 0.0,
        "published_reviews_count": 0.0,
        "gallery_images": [],
        "account": {"id": account.id, "title": account.title, "route": account.route},
        "variant_attributes": None,
        "default_plan": _public_plan(visible[0]) if visible else None,
    }
    if detail:
        body.update(
            custom_cta="join",
            custom_cta_url=None,
            custom_statement_descriptor=None,
            marketplace_status="not_available",
            global_affiliate_percentage=None,
            global_affiliate_status="disabled",
            member_affiliate_percentage=None,
            member_affiliate_status="disabled",
            owner_user={
                "id": "user_" + account.id[4:],
                "username": account.route,
                "name": account.title,
            },
            product_tax_code=None,
            variants=[render_plan(ds, p, counts=counts) for p in plans],
        )
    return body
