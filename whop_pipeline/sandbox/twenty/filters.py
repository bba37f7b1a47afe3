"""The ``filter`` parameter of REST list calls (docs/twenty-api.md#filters): parsing and
evaluation.

Parsing mirrors Twenty's ``input-request-parsers``: a filter without a root conjunction is wrapped
in ``and(...)``; ``in`` takes a bracketed list split naively on ``,`` with quotes stripped and no
trimming. Evaluation follows SQL: a comparison against a null value is false except ``is:NULL``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from whop_pipeline.sandbox.twenty.errors import bad_request
from whop_pipeline.sandbox.twenty.schema import COMPOSITE_SUBFIELDS, ObjectMeta
from whop_pipeline.sandbox.twenty.values import format_datetime, parse_datetime

COMPARATORS = [
    "eq",
    "neq",
    "in",
    "containsAny",
    "is",
    "gt",
    "gte",
    "lt",
    "lte",
    "startsWith",
    "endsWith",
    "like",
    "ilike",
]
CONJUNCTION = re.compile(r"^(and|or|not)\(")
BASE_FILTER = re.compile(r"^(.+)\[(.+)\]:(.+)$", re.DOTALL)
NUMERIC_TYPES = frozenset({"NUMBER", "NUMERIC", "POSITION", "RATING"})


@dataclass(frozen=True)
class Condition:
    path: tuple[str, ...]
    comparator: str
    value: Any  # str, or list[str] for in / containsAny


@dataclass(frozen=True)
class Junction:
    kind: str  # "and" | "or"
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Negation:
    item: Node


Node = Condition | Junction | Negation
Predicate = Callable[[dict[str, Any]], bool]


# ---- parsing ----------------------------------------------------------------------------------


def check_brackets(query: str) -> None:
    diff = query.count("(") - query.count(")")
    if diff:
        count = abs(diff)
        kind = "close" if diff > 0 else "open"
        hint = f"{count} {kind} bracket{'s are' if count > 1 else ' is'}"
        raise bad_request(f"'filter' invalid. {hint} missing in the query")


def split_top_level(content: str) -> list[str]:
    """``parseFilterContent``: split on commas outside parentheses, brackets and quotes."""
    parts, current = [], []
    depth, in_brackets, in_double, in_single = 0, False, False, False
    for char in content:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char in "[]":
            in_brackets = not in_brackets
        elif char == '"':
            in_double = not in_double
        elif char == "'":
            in_single = not in_single
        if char == "," and depth == 0 and not (in_brackets or in_double or in_single):
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _conjunction(query: str) -> tuple[str, str] | None:
    """``and(...)`` / ``or(...)`` / ``not(...)`` spanning the whole string, else None."""
    match = CONJUNCTION.match(query)
    if not match or not query.endswith(")"):
        return None
    depth = 0
    for index in range(match.end() - 1, len(query)):
        depth += {"(": 1, ")": -1}.get(query[index], 0)
        if depth == 0 and index != len(query) - 1:
            return None
    return match.group(1), query[match.end() : -1]


def strip_quotes(value: str) -> str:
    if len(value) >= 2 and value[0] in "\"'" and value[-1] in "\"'":
        return value[1:-1]
    return value


def parse_condition(text: str) -> Condition:
    if not BASE_FILTER.match(text):
        raise bad_request(f"'filter' invalid for '{text}'. eg: price[gte]:10")
    fields, comparator, value = "", "", ""
    fill_fields, fill_comparator, fill_value = True, False, False
    for char in text:  # the same character walk as parseBaseFilter
        if fill_value:
            value += char
        if char == "]" and not fill_value:
            fill_comparator = False
        if char == ":" and not fill_comparator:
            fill_value = True
        if fill_comparator:
            comparator += char
        if char == "[" and fill_fields:
            fill_fields, fill_comparator = False, True
        if fill_fields:
            fields += char
    if comparator not in COMPARATORS:
        raise bad_request(
            f"'filter' invalid for '{text}', comparator {comparator} not in {', '.join(COMPARATORS)}"
        )
    parsed: Any
    if comparator in ("in", "containsAny"):
        if not (value.startswith("[") and value.endswith("]")):
            raise bad_request(
                f"'filter' invalid for '{comparator}' operator. Received '{value}' but array value "
                f"expected eg: 'field[{comparator}]:[value_1,value_2]'"
            )
        parsed = [strip_quotes(item) for item in value[1:-1].split(",")]
    elif comparator == "is":
        parsed = value
    else:
        parsed = strip_quotes(value)
    return Condition(tuple(fields.split(".")), comparator, parsed)


def parse_node(text: str) -> Node:
    conjunction = _conjunction(text)
    if conjunction is None:
        return parse_condition(text)
    kind, inner = conjunction
    items = tuple(parse_node(part) for part in split_top_level(inner))
    if kind == "not":
        if len(items) != 1:
            raise bad_request(
                "'filter' invalid. 'not' conjunction should contain only 1 condition. "
                "eg: not(field[eq]:1)"
            )
        return Negation(items[0])
    return Junction(kind, items)


def parse_filter(query: str) -> Node:
    check_brackets(query)
    if _conjunction(query) is None:
        query = f"and({query})"
    return parse_node(query)


def mentions_deleted_at(node: Node) -> bool:
    """Twenty reads soft-deleted rows when the filter names ``deletedAt``."""
    if isinstance(node, Condition):
        return node.path[0] == "deletedAt"
    if isinstance(node, Negation):
        return mentions_deleted_at(node.item)
    return any(mentions_deleted_at(item) for item in node.items)


# ---- evaluation -------------------------------------------------------------------------------


def leaf_type(obj: ObjectMeta, path: Sequence[str]) -> str:
    """The type of the value a path reaches; 400 if the path names no field (``check-fields``)."""
    table = f"_{obj.name_singular}" if obj.is_custom else obj.name_singular
    missing = bad_request(f"field '{'.'.join(path)}' does not exist in '{table}' object")
    meta = obj.by_input_key.get(path[0])
    if meta is None or (meta.relation is not None and path[0] != meta.join_column):
        raise missing
    if meta.type in COMPOSITE_SUBFIELDS:
        subfields = COMPOSITE_SUBFIELDS[meta.type]
        if len(path) != 2 or path[1] not in subfields:
            raise missing
        return subfields[path[1]].type
    if len(path) != 1:
        raise missing
    return "UUID" if meta.join_column else meta.type


def get_path(record: dict[str, Any], path: Sequence[str]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def coerce(raw: str, type_: str) -> Any:
    if type_ in NUMERIC_TYPES:
        try:
            return float(raw)
        except ValueError:
            raise bad_request(f'invalid input syntax for type numeric: "{raw}"') from None
    if type_ == "BOOLEAN":
        return raw.lower() == "true"
    if type_ == "DATE_TIME":
        moment = parse_datetime(raw)
        if moment is None:
            raise bad_request(f'invalid input syntax for type timestamp with time zone: "{raw}"')
        return format_datetime(moment)
    if type_ == "UUID":
        return raw.lower()
    return raw


def like_pattern(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(
        ".*" if char == "%" else "." if char == "_" else re.escape(char) for char in pattern
    )
    return re.compile(f"^{regex}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _comparison(condition: Condition, type_: str) -> Callable[[Any], bool]:
    comparator, raw = condition.comparator, condition.value
    if comparator == "is":
        if raw.upper() not in ("NULL", "NOT_NULL"):
            raise bad_request(
                f"'filter' invalid for 'is' operator. Received '{raw}' but NULL "
                "or NOT_NULL expected"
            )
        want_null = raw.upper() == "NULL"
        return lambda value: (value is None) == want_null
    if comparator in ("in", "containsAny"):
        wanted = {coerce(item, type_) for item in raw}
        if comparator == "in":
            return lambda value: value is not None and value in wanted
        return lambda value: isinstance(value, list) and any(item in wanted for item in value)
    target = coerce(raw, type_)
    numeric = type_ in NUMERIC_TYPES
    tests: dict[str, Callable[[Any], bool]] = {
        "eq": lambda value: value == target,
        "neq": lambda value: value != target,
        "gt": lambda value: value > target,
        "gte": lambda value: value >= target,
        "lt": lambda value: value < target,
        "lte": lambda value: value <= target,
        "startsWith": lambda value: str(value).startswith(raw),
        "endsWith": lambda value: str(value).endswith(raw),
    }
    if comparator in ("like", "ilike"):
        pattern = like_pattern(raw, comparator == "ilike")
        tests[comparator] = lambda value: bool(pattern.match(str(value)))
    test = tests[comparator]

    def compare(value: Any) -> bool:
        if value is None:
            return False
        if numeric and not isinstance(value, int | float):
            return False
        try:
            return test(value)
        except TypeError:
            return False

    return compare


def compile_filter(node: Node, obj: ObjectMeta) -> Predicate:
    if isinstance(node, Condition):
        compare = _comparison(node, leaf_type(obj, node.path))
        path = node.path
        if len(path) == 1:
            key = path[0]
            return lambda record: compare(record.get(key))
        return lambda record: compare(get_path(record, path))
    if isinstance(node, Negation):
        inner = compile_filter(node.item, obj)
        return lambda record: not inner(record)
    predicates = [compile_filter(item, obj) for item in node.items]
    if node.kind == "and":
        return lambda record: all(predicate(record) for predicate in predicates)
    return lambda record: any(predicate(record) for predicate in predicates)
