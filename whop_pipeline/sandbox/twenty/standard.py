"""The standard workspace the emulator starts from: Person, Company, Opportunity, Note and
NoteTarget with the fields, stages and relations of docs/twenty-api.md#standard-objects."""

from __future__ import annotations

from typing import Any

from whop_pipeline.sandbox.twenty.schema import (
    ObjectMeta,
    add_relation,
    capitalize,
    metadata_id,
    new_field,
    new_object,
    sql_literal,
)

# (name, type, label, extra attributes), per docs/twenty-api.md#standard-objects. Standard TEXT
# fields default to '' as in Twenty.
_TEXT_DEFAULT = {"default_value": sql_literal("")}
STANDARD_OBJECTS: dict[str, dict[str, Any]] = {
    "person": {
        "plural": "people",
        "labels": ("Person", "People"),
        "fields": [
            ("name", "FULL_NAME", "Name", {}),
            (
                "emails",
                "EMAILS",
                "Emails",
                {"is_unique": True, "settings": {"maxNumberOfValues": 1}},
            ),
            ("linkedinLink", "LINKS", "Linkedin", {}),
            ("xLink", "LINKS", "X", {}),
            ("jobTitle", "TEXT", "Job Title", _TEXT_DEFAULT),
            ("phones", "PHONES", "Phones", {}),
            ("city", "TEXT", "City", _TEXT_DEFAULT),
            ("avatarUrl", "TEXT", "Avatar", {"is_system": True, **_TEXT_DEFAULT}),
        ],
    },
    "company": {
        "plural": "companies",
        "labels": ("Company", "Companies"),
        "fields": [
            ("name", "TEXT", "Name", _TEXT_DEFAULT),
            ("domainName", "LINKS", "Domain Name", {"is_unique": True}),
            ("employees", "NUMBER", "Employees", {}),
            ("linkedinLink", "LINKS", "Linkedin", {}),
            ("xLink", "LINKS", "X", {}),
            ("annualRecurringRevenue", "CURRENCY", "ARR", {}),
            ("address", "ADDRESS", "Address", {}),
            ("idealCustomerProfile", "BOOLEAN", "ICP", {"default_value": False}),
        ],
    },
    "opportunity": {
        "plural": "opportunities",
        "labels": ("Opportunity", "Opportunities"),
        "fields": [
            ("name", "TEXT", "Name", _TEXT_DEFAULT),
            ("amount", "CURRENCY", "Amount", {}),
            ("closeDate", "DATE_TIME", "Close date", {}),
            (
                "stage",
                "SELECT",
                "Stage",
                {"is_nullable": False, "default_value": sql_literal("NEW")},
            ),
        ],
    },
    "note": {
        "plural": "notes",
        "labels": ("Note", "Notes"),
        "fields": [
            ("title", "TEXT", "Title", _TEXT_DEFAULT),
            ("bodyV2", "RICH_TEXT", "Body", {}),
            ("body", "TEXT", "Body (deprecated)", {"description": "Deprecated - use bodyV2"}),
        ],
    },
    "noteTarget": {
        "plural": "noteTargets",
        "labels": ("Note Target", "Note Targets"),
        "fields": [],
        "is_system": True,
    },
}

# The five default stages, nothing else (no NEGOTIATION, WON or LOST):
# docs/twenty-api.md#select-options.
DEFAULT_STAGES = [
    ("NEW", "New", "red"),
    ("SCREENING", "Screening", "purple"),
    ("MEETING", "Meeting", "sky"),
    ("PROPOSAL", "Proposal", "turquoise"),
    ("CUSTOMER", "Customer", "yellow"),
]

# (object, field, target object, inverse field, on delete, field type), see
# docs/twenty-api.md#relations. NoteTarget's target links depend on the server line
# (docs/twenty-api.md#notetarget-links): MORPH_RELATION ``targetPerson``… since v1.17, RELATION
# ``person``… before.
BASE_RELATIONS = [
    ("person", "company", "company", "people", "SET_NULL", "RELATION"),
    (
        "opportunity",
        "pointOfContact",
        "person",
        "pointOfContactForOpportunities",
        "SET_NULL",
        "RELATION",
    ),
    ("opportunity", "company", "company", "opportunities", "SET_NULL", "RELATION"),
    ("noteTarget", "note", "note", "noteTargets", "CASCADE", "RELATION"),
]


def note_target_link_name(style: str, target_singular: str) -> str:
    return f"target{capitalize(target_singular)}" if style == "current" else target_singular


def note_target_relation(style: str, target_singular: str) -> tuple[str, ...]:
    kind = "MORPH_RELATION" if style == "current" else "RELATION"
    name = note_target_link_name(style, target_singular)
    return ("noteTarget", name, target_singular, "noteTargets", "CASCADE", kind)


def build_standard_objects(note_target_style: str, now: str) -> dict[str, ObjectMeta]:
    objects: dict[str, ObjectMeta] = {}
    for singular, spec in STANDARD_OBJECTS.items():
        obj = new_object(
            singular,
            spec["plural"],
            spec["labels"],
            now,
            is_custom=False,
            is_system=spec.get("is_system", False),
        )
        for name, type_, label, extra in spec["fields"]:
            obj.fields[name] = new_field(obj, name, type_, label, now, **extra)
        if "name" in obj.fields:
            obj.label_identifier_field_id = obj.fields["name"].id
        obj.refresh()
        objects[singular] = obj
    stage = objects["opportunity"].fields["stage"]
    stage.options = [
        {
            "id": metadata_id("option", stage.id, value),
            "value": value,
            "label": label,
            "position": position,
            "color": color,
        }
        for position, (value, label, color) in enumerate(DEFAULT_STAGES)
    ]
    relations = BASE_RELATIONS + [
        note_target_relation(note_target_style, target)
        for target in ("person", "company", "opportunity")
    ]
    for spec in relations:
        add_relation(objects, spec, now)
    return objects
