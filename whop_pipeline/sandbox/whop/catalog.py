"""Static material the dataset generator draws from: currencies, product and variant templates, name
pools and the hand-picked members that every dataset must contain (the cases the CRM mapping has to
get right: no email, case-duplicate emails, business buyers, unicode, commas, one-word names).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Currency:
    code: str
    decimals: int  # minor-unit digits: 2 for usd, 0 for jpy (a zero-decimal currency)
    symbol: str
    usd_micros: int  # US dollars per major unit, in millionths (a fixed, made-up rate)
    country: str


CURRENCIES: dict[str, Currency] = {
    c.code: c
    for c in (
        Currency("usd", 2, "$", 1_000_000, "US"),
        Currency("eur", 2, "€", 1_080_000, "DE"),
        Currency("jpy", 0, "¥", 6_700, "JP"),
        Currency("gbp", 2, "£", 1_270_000, "GB"),
    )
}


@dataclass(frozen=True)
class PlanTemplate:
    title: str
    plan_type: str  # renewal | one_time
    initial: int  # minor units
    renewal: int  # minor units, 0 for one-time
    period_days: int | None
    trial_days: int | None = None
    expiration_days: int | None = None
    visibility: str = "visible"


@dataclass(frozen=True)
class ProductTemplate:
    title: str
    headline: str
    currency: str
    plans: tuple[PlanTemplate, ...]


PRODUCT_TEMPLATES: tuple[ProductTemplate, ...] = (
    ProductTemplate(
        "Signals Pro",
        "Daily trade alerts with entries, exits and risk notes.",
        "usd",
        (
            PlanTemplate("Monthly", "renewal", 0, 4900, 30, trial_days=7),
            PlanTemplate("Yearly", "renewal", 0, 49000, 365),
            PlanTemplate("Lifetime", "one_time", 29900, 0, None),
        ),
    ),
    ProductTemplate(
        "Options Academy",
        "A course and community for options traders.",
        "eur",
        (
            PlanTemplate("Monthly", "renewal", 0, 1900, 30),
            PlanTemplate("Quarterly", "renewal", 2500, 4900, 90),
        ),
    ),
    ProductTemplate(
        "東京 Trading Club",
        "Tokyo session breakdowns, in Japanese and English.",
        "jpy",
        (
            PlanTemplate("Monthly", "renewal", 0, 4900, 30),
            PlanTemplate("1-year pass", "one_time", 39000, 0, None, expiration_days=365),
        ),
    ),
    ProductTemplate(
        "Sneaker Drops UK",
        "Restock monitors and early links.",
        "gbp",
        (
            PlanTemplate("Weekly", "renewal", 0, 900, 7),
            PlanTemplate("Monthly", "renewal", 0, 2900, 30),
            PlanTemplate("Founders (hidden)", "renewal", 0, 1900, 30, visibility="hidden"),
        ),
    ),
    ProductTemplate(
        "Crypto Desk",
        "On-chain research notes, twice a week.",
        "usd",
        (
            PlanTemplate("Monthly", "renewal", 0, 9900, 30),
            PlanTemplate("Setup call", "one_time", 15000, 0, None),
        ),
    ),
    ProductTemplate(
        "Résumé Review",
        "A one-off review of your CV by a recruiter.",
        "eur",
        (PlanTemplate("Single review", "one_time", 7900, 0, None),),
    ),
)

# Extra products for bigger datasets reuse the templates under these names.
EXTRA_PRODUCT_NAMES = (
    "Futures Lab",
    "Dividend Digest",
    "Forex Morning Call",
    "Reseller Toolkit",
    "Macro Weekly",
    "Small Caps Radar",
    "Prop Firm Prep",
    "Earnings Edge",
)

FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Lucas", "Mia", "Mateo", "Sofia", "Elijah",
    "Amelia", "Hugo", "Chloé", "Léa", "Björn", "Søren", "Małgorzata", "Dmitri", "Ayşe", "Émile",
    "Priya", "Arjun", "Fatima", "Omar", "Yuki", "Haruto", "Mei", "Wei", "Chiamaka", "Kwame",
    "Isabella", "Santiago", "Camila", "Diego", "Ingrid", "Lars", "Siobhán", "Niamh", "Zoë", "Renée",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Johnson", "Garcia", "Müller", "Rossi", "Dubois", "Nowak", "Kowalski", "Jensen",
    "Andersson", "Yılmaz", "Tanaka", "Suzuki", "Wang", "Chen", "Patel", "Singh", "Okafor", "Mensah",
    "O'Brien", "Martínez", "González", "da Silva", "van der Berg", "Nguyễn", "Kim", "Park",
    "Ivanova", "Costa", "Papadopoulos",
)  # fmt: skip
EMAIL_DOMAINS = ("example.com", "example.org", "mail.example.net", "inbox.example.com")
BUSINESS_NAMES = ("Initech, Inc.", "Globex Corporation", "Umbrella Trading GmbH", "Acme, Ltd.")


@dataclass(frozen=True)
class SpecialMember:
    """A member profile that every dataset contains at least once."""

    case: str
    name: str | None  # the user's name; None for business buyers and users without one
    email: str | None
    username: str | None
    business: bool = False
    display_name: str | None = None


SPECIAL_MEMBERS: tuple[SpecialMember, ...] = (
    SpecialMember("no_email", "Ana Silva", None, "anasilva"),
    SpecialMember("no_email", "Tomás Ortega", None, "tortega"),
    SpecialMember("duplicate_email", "Jordan Lee", "Jordan.Lee@example.com", "jordanlee"),
    SpecialMember("duplicate_email", "J. Lee", "jordan.lee@EXAMPLE.com", "jlee_trades"),
    SpecialMember("business", None, None, None, business=True, display_name="Initech, Inc."),
    SpecialMember("business", None, None, None, business=True, display_name="Globex Corporation"),
    SpecialMember("unicode", "Zoë Ångström", "zoe.angstrom@example.com", "zoe_a"),
    SpecialMember("unicode", "李小龙", "xiaolong.li@example.com", "lixiaolong"),
    SpecialMember("comma", "Smith, John", "john.smith@example.org", "jsmith"),
    SpecialMember("one_word", "Madonna", "madonna@example.com", "madonna"),
    SpecialMember("no_name", None, "quiet.user@example.net", "quietuser"),
)

FAILURES = (
    ("insufficient_funds", "Your card has insufficient funds."),
    ("expired_card", "Your card has expired."),
    ("generic_decline", "Your card was declined."),
    ("invalid_cvc", "Your card's security code is incorrect."),
)
CANCEL_OPTIONS = (
    ("too_expensive", "Too expensive for me right now"),
    ("unused", "I wasn't using it"),
    ("switching", "Moving to another service"),
    ("missing_features", None),
    ("other", None),
)
