"""Typed Whop API v1 objects (docs/whop-api.md#members, #memberships, #payments, #products-and-plans).

Only the fields the pipeline reads are declared; every other field is kept (``extra="allow"``) so the
raw mirror stores the object whole. Enums are plain strings: an unknown status passes through instead
of failing a page. A missing required field raises ``WhopSchemaError`` naming the endpoint, the item
and the field.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class WhopModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The object as JSON, unknown fields included (what the raw mirror stores)."""
        return self.model_dump(mode="json")


class Money(WhopModel):
    amount: str  # decimal string in major units ("49.00", JPY "4900"): never a float
    currency: str
    decimals: int | None = None
    display_decimals: int | None = None


class UserRef(WhopModel):
    id: str
    username: str | None = None
    name: str | None = None


class ProductRef(WhopModel):
    id: str
    title: str


class Member(WhopModel):
    id: str
    created_at: dt.datetime
    display_name: str | None = None
    email: str | None = None
    user: UserRef | None = None
    access_level: str
    status: str


class Plan(WhopModel):
    """A variant (formerly plan). Prices here are floats in major units, unlike Money."""

    id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    title: str | None = None
    currency: str
    plan_type: str
    product: ProductRef | None = None


class Product(WhopModel):
    id: str
    title: str
    route: str
    created_at: dt.datetime
    updated_at: dt.datetime
    visibility: str | None = None


class Membership(WhopModel):
    id: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    user_id: str | None = None
    member_id: str | None = None
    product_id: str
    product: ProductRef
    plan_id: str
    initial_price: Money
    renewal_price: Money | None = None
    cancel_at_period_end: bool
    current_period_end: dt.datetime | None = None
    canceled_at: dt.datetime | None = None


class Payment(WhopModel):
    id: str
    status: str
    substatus: str
    created_at: dt.datetime
    updated_at: dt.datetime
    paid_at: dt.datetime | None = None
    membership_id: str | None = None
    member_id: str | None = None
    product_id: str | None = None
    plan_id: str | None = None
    user: UserRef | None = None
    customer_email: str | None = None
    currency: str
    total: Money | None = None
    billing_reason: str | None = None
    failure_message: str | None = None


class PageInfo(WhopModel):
    end_cursor: str | None = None
    start_cursor: str | None = None
    has_next_page: bool
    has_previous_page: bool = False


class WhopSchemaError(ValueError):
    """A Whop object that lacks a required field or has one of the wrong type."""


T = TypeVar("T", bound=WhopModel)


class Page(BaseModel, Generic[T]):
    model_config = ConfigDict(frozen=True)

    data: list[T]
    page_info: PageInfo


def parse_object(model: type[T], raw: Any, where: str) -> T:
    """Validate one object; on failure say which endpoint, which object and which fields."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        object_id = raw.get("id", "?") if isinstance(raw, dict) else "?"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<object>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise WhopSchemaError(f"{where}: {model.__name__} {object_id}: {problems}") from None


def parse_page(model: type[T], raw: Any, where: str) -> Page[T]:
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise WhopSchemaError(
            f"{where}: expected a list response with 'data', got {type(raw).__name__}"
        )
    page_info = parse_object(PageInfo, raw.get("page_info"), f"{where} page_info")
    items = [parse_object(model, item, f"{where} item {i}") for i, item in enumerate(raw["data"])]
    return Page[model](data=items, page_info=page_info)  # type: ignore[valid-type]


RESOURCES: dict[str, type[WhopModel]] = {
    "members": Member,
    "products": Product,
    "variants": Plan,
    "memberships": Membership,
    "payments": Payment,
}
