"""Validation and normalization of one input value per field type, with Twenty's messages
(``data-arg-processor`` validators; docs/twenty-api.md#error-bodies,
docs/twenty-api.md#composite-fields).

Normalizations that matter for matching (docs/twenty-api.md#composite-fields): emails are
lower-cased (twentyhq/twenty#11042), link URLs get a lower-cased origin and no trailing slash
(``transformLinksValue``), rich text derives the missing ``blocknote`` or ``markdown`` half
(docs/twenty-api.md#note-body), date-times become one canonical ISO form.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Callable
from typing import Any

from whop_pipeline.sandbox.twenty.errors import bad_request, js_inspect
from whop_pipeline.sandbox.twenty.schema import COMPOSITE_SUBFIELDS, COMPOSITE_TYPES, FieldMeta

UUID_PATTERN = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
COMPOSITE_LABELS = {
    "EMAILS": "emails",
    "LINKS": "links",
    "PHONES": "phones",
    "FULL_NAME": "full name",
    "CURRENCY": "currency",
    "ADDRESS": "address",
    "RICH_TEXT": "rich text",
    "ACTOR": "actor",
}


def is_valid_uuid(value: Any) -> bool:
    return isinstance(value, str) and bool(UUID_PATTERN.match(value))


def now_iso() -> str:
    return format_datetime(dt.datetime.now(dt.UTC))


def format_datetime(moment: dt.datetime) -> str:
    """Twenty (Postgres timestamptz through JSON) answers ``2025-01-31T12:00:00.000Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_datetime(value: str) -> dt.datetime | None:
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def text(value: Any, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise bad_request(f'Invalid string value {js_inspect(value)} for text field "{key}"')
    return value


def number(value: Any, key: str) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_request(f'Invalid number value {js_inspect(value)} for field "{key}"')
    return value


def numeric(value: Any, key: str) -> int | float | None:
    """NUMERIC (e.g. ``amountMicros``) accepts numbers and numeric strings; integers stay exact."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise bad_request(
                f'Invalid numeric value {js_inspect(value)} for field "{key}"'
            ) from None
        value = parsed
    result = number(value, key)
    if isinstance(result, float) and result.is_integer():
        return int(result)
    return result


def boolean(value: Any, key: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise bad_request(f'Invalid boolean value {js_inspect(value)} for field "{key}"')
    return value


def date_time(value: Any, key: str) -> str | None:
    if value is None:
        return None
    moment = parse_datetime(value) if isinstance(value, str) else None
    if moment is None:
        raise bad_request(f'Invalid date time value {js_inspect(value)} for field "{key}"')
    return format_datetime(moment)


def date(value: Any, key: str) -> str | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return dt.date.fromisoformat(value[:10]).isoformat()
    except ValueError:
        pass
    raise bad_request(f'Invalid date value {js_inspect(value)} for field "{key}"')


def uuid_value(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if not is_valid_uuid(value):
        raise bad_request(f'Invalid UUID value {js_inspect(value)} for field "{key}"')
    return value.lower()


def string_array(value: Any, key: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise bad_request(f'Invalid array value {js_inspect(value)} for field "{key}"')
    return list(value)


def raw_json(value: Any, key: str) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict | list):
            return parsed
    raise bad_request(f'Invalid object value {js_inspect(value)} for field "{key}"')


def select(value: Any, key: str, options: list[str]) -> str | None:
    value = text(value, key)
    if value is not None and value not in options:
        raise bad_request(f'Invalid value {js_inspect(value)} for field "{key}"')
    return value


def multi_select(value: Any, key: str, options: list[str]) -> list[str] | None:
    values = string_array(value, key)
    for item in values or []:
        if item not in options:
            raise bad_request(f'Invalid value {js_inspect(value)} for field "{key}"')
    return values


def position(value: Any, key: str) -> Any:
    if value in ("first", "last"):
        return value
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f'Invalid position value {js_inspect(value)} for field "{key}"')
    return value


def url_with_lower_origin(url: str) -> str:
    """``lowercaseUrlOriginAndRemoveTrailingSlash``: scheme and host lower-cased, path kept."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host, slash, path = rest.partition("/")
    return ((scheme.lower() + "://" if sep else "") + host.lower() + slash + path).rstrip("/")


HEADING = re.compile(r"^(#{1,3})\s+(.*)$")
BULLET = re.compile(r"^\s*[-*]\s+")


def markdown_to_blocknote(markdown: str) -> str:
    """Derives BlockNote JSON from markdown as the server does on write
    (docs/twenty-api.md#note-body): one block per line, headings and bullet items recognized, plain
    paragraphs otherwise. Block ids derive from the text, so writing the same body twice stores the
    same JSON."""
    base = str(uuid.uuid5(uuid.NAMESPACE_URL, markdown))[:-4]
    blocks = []
    for index, line in enumerate(markdown.splitlines()):
        if not line.strip():
            continue
        block_type, props, content = "paragraph", {}, line
        heading = HEADING.match(line)
        if heading:
            block_type, props, content = (
                "heading",
                {"level": len(heading.group(1))},
                heading.group(2),
            )
        elif BULLET.match(line):
            block_type, content = "bulletListItem", BULLET.sub("", line, count=1)
        blocks.append(
            {
                "id": f"{base}{index:04x}",
                "type": block_type,
                "props": {
                    "textColor": "default",
                    "backgroundColor": "default",
                    "textAlignment": "left",
                    **props,
                },
                "content": [{"type": "text", "text": content, "styles": {}}],
                "children": [],
            }
        )
    return json.dumps(blocks)


def blocknote_to_markdown(blocknote: str) -> str | None:
    try:
        blocks = json.loads(blocknote)
    except ValueError:
        return None
    lines = []
    for block in blocks if isinstance(blocks, list) else []:
        content = "".join(
            part.get("text", "") for part in block.get("content") or [] if isinstance(part, dict)
        )
        if block.get("type") == "heading":
            content = "#" * int(block.get("props", {}).get("level", 1)) + " " + content
        elif block.get("type") == "bulletListItem":
            content = "- " + content
        lines.append(content)
    return "\n".join(lines)


def composite(meta: FieldMeta, value: Any, key: str) -> dict[str, Any] | None:
    """Validates a composite input. Returns only the subfields sent, so that an update merges
    them into the stored value (omitted subfields are kept); ``None`` clears every subfield."""
    value = raw_json(value, key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f'Invalid object value {js_inspect(value)} for field "{key}"')
    subfields = COMPOSITE_SUBFIELDS[meta.type]
    result: dict[str, Any] = {}
    for sub_name, sub_value in value.items():
        sub = subfields.get(sub_name)
        if sub is None:
            raise bad_request(
                f'Invalid subfield {sub_name} for {COMPOSITE_LABELS[meta.type]} field "{key}"'
            )
        path = f"{key}.{sub_name}"
        if sub.type == "TEXT" or sub.type == "SELECT":
            result[sub_name] = text(sub_value, path)
        elif sub.type == "NUMERIC":
            result[sub_name] = numeric(sub_value, path)
        elif sub.type == "UUID":
            result[sub_name] = uuid_value(sub_value, path)
        else:
            result[sub_name] = raw_json(sub_value, path)
    return normalize_composite(meta.type, result, key)


def normalize_composite(type_: str, value: dict[str, Any], key: str) -> dict[str, Any]:
    if type_ == "EMAILS":
        if isinstance(value.get("primaryEmail"), str):
            value["primaryEmail"] = value["primaryEmail"].strip().lower()
        if "additionalEmails" in value:
            emails = string_array(value["additionalEmails"], f"{key}.additionalEmails")
            value["additionalEmails"] = [email.strip().lower() for email in emails or []] or None
    elif type_ == "LINKS":
        if isinstance(value.get("primaryLinkUrl"), str) and value["primaryLinkUrl"]:
            value["primaryLinkUrl"] = url_with_lower_origin(value["primaryLinkUrl"])
    elif type_ == "RICH_TEXT":
        markdown, blocknote = value.get("markdown"), value.get("blocknote")
        if isinstance(markdown, str) and "blocknote" not in value:
            value["blocknote"] = markdown_to_blocknote(markdown)
        elif isinstance(blocknote, str) and "markdown" not in value:
            value["markdown"] = blocknote_to_markdown(blocknote)
    return value


SCALAR_VALIDATORS: dict[str, Callable[[Any, str], Any]] = {
    "TEXT": text,
    "NUMBER": number,
    "NUMERIC": numeric,
    "BOOLEAN": boolean,
    "DATE_TIME": date_time,
    "DATE": date,
    "UUID": uuid_value,
    "ARRAY": string_array,
    "RAW_JSON": raw_json,
    "FILES": raw_json,
    "POSITION": position,
    "TS_VECTOR": text,
}


def validate(meta: FieldMeta, value: Any, key: str) -> Any:
    """One input value, validated and normalized for storage."""
    if meta.type in COMPOSITE_TYPES:
        return composite(meta, value, key)
    if meta.type in ("SELECT", "RATING"):
        return select(value, key, meta.option_values)
    if meta.type == "MULTI_SELECT":
        return multi_select(value, key, meta.option_values)
    if meta.join_column:
        return uuid_value(value, key)
    return SCALAR_VALIDATORS[meta.type](value, key)
