"""PostgREST's query language (select, filters, logic trees, order, limit) parsed and rendered as SQL.

Every piece of user input reaches SQL through ``psycopg.sql`` (Identifier/Literal); type names
come only from the schema cache.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from tests.devstack.schema_cache import ForeignKey, SchemaCache, Table


class ApiRequestError(Exception):
    """An error answered by the REST layer itself (PGRSTxxx), not by PostgreSQL."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        details: Any = None,
        *,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}


def parse_error(message: str, details: str | None = None) -> ApiRequestError:
    return ApiRequestError(400, "PGRST100", message, details)


# --------------------------------------------------------------------------------------------
# Parsed forms
# --------------------------------------------------------------------------------------------
OPERATORS: dict[str, str] = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "LIKE",
    "ilike": "ILIKE",
    "match": "~",
    "imatch": "~*",
    "cs": "@>",
    "cd": "<@",
    "ov": "&&",
}
IS_VALUES = {"null": "NULL", "not_null": "NOT NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
SAFE_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*( [A-Za-z_][A-Za-z0-9_]*)*(\[\])?")
LOGIC_KEYS = ("or", "and", "not.or", "not.and")
NODE_ATTRIBUTES = ("order", "limit", "offset", "select", *LOGIC_KEYS)
RESERVED_ROOT_KEYS = {"select", "order", "limit", "offset", "on_conflict", "columns", "apikey", *LOGIC_KEYS}


@dataclass
class Filter:
    column: str
    operator: str
    value: str
    negated: bool = False


@dataclass
class Logic:
    conjunction: str  # "or" | "and"
    children: list[Filter | Logic]
    negated: bool = False


Condition = Filter | Logic


@dataclass
class OrderTerm:
    column: str
    descending: bool = False
    nulls: str | None = None  # "first" | "last"


@dataclass
class Field:
    column: str  # "*" for all columns
    alias: str | None = None
    cast: str | None = None


@dataclass
class Embed:
    relation: str
    alias: str | None
    hint: str | None
    inner: bool
    items: list[Field | Embed]

    @property
    def key(self) -> str:
        return self.alias or self.relation


SelectItem = Field | Embed


@dataclass
class ReadNode:
    conditions: list[Condition] = field(default_factory=list)
    order: list[OrderTerm] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


@dataclass
class QueryParams:
    select: list[SelectItem] = field(default_factory=lambda: [Field("*")])
    nodes: dict[tuple[str, ...], ReadNode] = field(default_factory=dict)
    on_conflict: list[str] | None = None
    columns: list[str] | None = None
    rpc_args: dict[str, str] = field(default_factory=dict)

    def node(self, path: tuple[str, ...] = ()) -> ReadNode:
        return self.nodes.setdefault(path, ReadNode())


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------
def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split on ``separator`` outside parentheses and double quotes (backslash escapes quotes)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted, escaped = 0, False, False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted or depth != 0:
        raise parse_error(f"failed to parse ({text})", "unbalanced quotes or parentheses")
    parts.append("".join(current))
    return parts


def unquote(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def parse_in_list(value: str) -> list[str]:
    if not (value.startswith("(") and value.endswith(")")):
        raise parse_error(f"failed to parse filter (in.{value})", "expected a list in parentheses")
    inner = value[1:-1]
    if inner == "":
        return []
    return [unquote(item) for item in split_top_level(inner)]


def parse_filter(column: str, raw: str, *, in_logic: bool = False) -> Filter:
    negated = raw.startswith("not.")
    rest = raw[4:] if negated else raw
    operator, sep, value = rest.partition(".")
    if not sep or (operator not in OPERATORS and operator not in ("in", "is")):
        raise parse_error(f"failed to parse filter ({raw})", f"unknown operator in '{raw}'")
    if operator == "is" and value.lower() not in IS_VALUES:
        raise parse_error(
            f"failed to parse filter ({raw})", "is. accepts null, not_null, true, false, unknown"
        )
    if operator == "in":
        parse_in_list(value)  # validate early
    elif in_logic:
        value = unquote(value)
    return Filter(column.strip(), operator, value, negated)


def parse_logic(key: str, raw: str) -> Logic:
    negated = key.startswith("not.")
    conjunction = key.removeprefix("not.")
    if not (raw.startswith("(") and raw.endswith(")")):
        raise parse_error(f"failed to parse logic tree ({raw})", "expected a list in parentheses")
    children: list[Condition] = []
    for item in split_top_level(raw[1:-1]):
        nested = next((k for k in LOGIC_KEYS if item.startswith(k + "(")), None)
        if nested:
            children.append(parse_logic(nested, item[len(nested) :]))
            continue
        column, sep, rest = item.partition(".")
        if not sep:
            raise parse_error(f"failed to parse logic tree ({raw})", f"unexpected '{item}'")
        children.append(parse_filter(column, rest, in_logic=True))
    return Logic(conjunction, children, negated)


def parse_order(raw: str) -> list[OrderTerm]:
    terms: list[OrderTerm] = []
    for item in split_top_level(raw):
        column, *modifiers = item.strip().split(".")
        term = OrderTerm(column)
        for modifier in modifiers:
            if modifier in ("asc", "desc"):
                term.descending = modifier == "desc"
            elif modifier in ("nullsfirst", "nullslast"):
                term.nulls = modifier.removeprefix("nulls")
            else:
                raise parse_error(f"failed to parse order ({raw})", f"unexpected '{modifier}'")
        terms.append(term)
    return terms


def parse_non_negative(name: str, raw: str) -> int:
    if not raw.isdigit():
        raise parse_error(f"failed to parse {name} parameter ({raw})")
    return int(raw)


def _parse_field(text: str) -> Field:
    alias, sep, rest = text.partition(":")
    if not sep or rest.startswith(":"):
        alias, rest = "", text
    column, _, cast = rest.partition("::")
    return Field(column.strip(), alias.strip() or None, cast.strip() or None)


def _parse_embed(text: str) -> Embed:
    head, _, body = text.partition("(")
    alias, sep, target = head.partition(":")
    if not sep:
        alias, target = "", head
    relation, *marks = target.strip().split("!")
    inner = "inner" in marks
    hints = [m for m in marks if m not in ("inner", "left")]
    return Embed(relation, alias.strip() or None, hints[0] if hints else None, inner, parse_select(body[:-1]))


def parse_select(raw: str) -> list[SelectItem]:
    items: list[SelectItem] = []
    for part in split_top_level(raw):
        text = part.strip()
        if not text:
            continue
        if text.endswith(")") and "(" in text:
            items.append(_parse_embed(text))
        else:
            items.append(_parse_field(text))
    if not items:
        raise parse_error(f"failed to parse select parameter ({raw})")
    return items


def _apply_node_attribute(node: ReadNode, attribute: str, value: str) -> None:
    if attribute == "order":
        node.order = parse_order(value)
    elif attribute == "limit":
        node.limit = parse_non_negative("limit", value)
    elif attribute == "offset":
        node.offset = parse_non_negative("offset", value)
    else:
        node.conditions.append(parse_logic(attribute, value))


def _split_embedded_key(key: str) -> tuple[tuple[str, ...], str]:
    """``a.b.order`` → (("a", "b"), "order"); ``a.not.or`` → (("a",), "not.or")."""
    for attribute in sorted(NODE_ATTRIBUTES, key=len, reverse=True):
        if key.endswith("." + attribute):
            return tuple(key[: -len(attribute) - 1].split(".")), attribute
    *path, column = key.split(".")
    return tuple(path), column


def parse_query(pairs: list[tuple[str, str]], rpc_param_names: set[str] | None = None) -> QueryParams:
    """Parse PostgREST query-string pairs; with ``rpc_param_names`` those keys become RPC args."""
    params = QueryParams()
    for key, value in pairs:
        if rpc_param_names is not None and key in rpc_param_names:
            params.rpc_args[key] = value
        elif key == "select":
            params.select = parse_select(value)
        elif key == "on_conflict":
            params.on_conflict = [c.strip() for c in value.split(",") if c.strip()]
        elif key == "columns":
            params.columns = [unquote(c.strip()) for c in split_top_level(value) if c.strip()]
        elif key == "apikey":
            continue
        elif key in NODE_ATTRIBUTES:
            _apply_node_attribute(params.node(), key, value)
        elif "." in key:
            path, attribute = _split_embedded_key(key)
            if attribute in NODE_ATTRIBUTES:
                _apply_node_attribute(params.node(path), attribute, value)
            else:
                params.node(path).conditions.append(parse_filter(attribute, value))
        else:
            params.node().conditions.append(parse_filter(key, value))
    return params


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def render_condition(condition: Condition, alias: sql.Composable) -> sql.Composable:
    if isinstance(condition, Logic):
        joiner = sql.SQL(" OR " if condition.conjunction == "or" else " AND ")
        parts = [render_condition(child, alias) for child in condition.children]
        rendered: sql.Composable = sql.SQL("({})").format(joiner.join(parts) if parts else sql.SQL("TRUE"))
    else:
        rendered = _render_filter(condition, alias)
    return sql.SQL("NOT {}").format(rendered) if condition.negated else rendered


def _render_filter(flt: Filter, alias: sql.Composable) -> sql.Composable:
    column = sql.SQL("{}.{}").format(alias, sql.Identifier(flt.column))
    if flt.operator == "is":
        return sql.SQL("({} IS {})").format(column, sql.SQL(IS_VALUES[flt.value.lower()]))
    if flt.operator == "in":
        values = parse_in_list(flt.value)
        if not values:
            return sql.SQL("FALSE")
        return sql.SQL("({} IN ({}))").format(column, sql.SQL(", ").join(sql.Literal(v) for v in values))
    value = flt.value
    if flt.operator in ("like", "ilike"):
        value = value.replace("*", "%")
    if flt.operator == "ov" and value.startswith("(") and value.endswith(")"):
        value = "{" + value[1:-1] + "}"
    return sql.SQL("({} {} {})").format(column, sql.SQL(OPERATORS[flt.operator]), sql.Literal(value))


def render_order(terms: list[OrderTerm], alias: sql.Composable) -> sql.Composable:
    rendered = []
    for term in terms:
        part = sql.SQL("{}.{} {}").format(
            alias, sql.Identifier(term.column), sql.SQL("DESC" if term.descending else "ASC")
        )
        if term.nulls:
            part = sql.SQL("{} NULLS {}").format(part, sql.SQL(term.nulls.upper()))
        rendered.append(part)
    return sql.SQL(", ").join(rendered)


@dataclass(frozen=True)
class Relationship:
    target: Table
    is_array: bool
    pairs: tuple[tuple[str, str], ...]  # (origin column, target column)


def _relationship_error(origin: Table, target_name: str) -> ApiRequestError:
    return ApiRequestError(
        400,
        "PGRST200",
        f"Could not find a relationship between '{origin.name}' and '{target_name}' in the schema cache",
        f"Searched for a foreign key relationship between '{origin.name}' and '{target_name}' in the "
        f"schema '{origin.schema}', but no matches were found.",
    )


def _matches_hint(fk: ForeignKey, hint: str | None) -> bool:
    return hint is None or hint == fk.name or hint in fk.child_columns or hint in fk.parent_columns


def find_relationship(cache: SchemaCache, origin: Table, embed: Embed) -> Relationship:
    target = cache.tables.get((origin.schema, embed.relation))
    if target is None:
        raise _relationship_error(origin, embed.relation)
    found: list[Relationship] = []
    for fk in cache.foreign_keys:
        if not _matches_hint(fk, embed.hint):
            continue
        if fk.parent == origin.qualified and fk.child == target.qualified:
            one_to_one = tuple(fk.child_columns) in target.unique_keys
            found.append(
                Relationship(
                    target, not one_to_one, tuple(zip(fk.parent_columns, fk.child_columns, strict=True))
                )
            )
        elif fk.child == origin.qualified and fk.parent == target.qualified:
            found.append(
                Relationship(target, False, tuple(zip(fk.child_columns, fk.parent_columns, strict=True)))
            )
    if not found:
        raise _relationship_error(origin, embed.relation)
    if len(found) > 1:
        raise ApiRequestError(
            300,
            "PGRST201",
            f"Could not embed because more than one relationship was found for '{origin.name}' and "
            f"'{embed.relation}'",
            hint="Try changing the embedded resource to one of the foreign keys, e.g. 'rel!fk_name'.",
        )
    return found[0]


@dataclass
class ReadContext:
    cache: SchemaCache
    params: QueryParams
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def new_alias(self) -> sql.Identifier:
        return sql.Identifier(f"pgrst_{next(self.counter)}")


def _render_field(item: Field, alias: sql.Composable) -> sql.Composable:
    if item.column == "*":
        return sql.SQL("{}.*").format(alias)
    expression: sql.Composable = sql.SQL("{}.{}").format(alias, sql.Identifier(item.column))
    if item.cast:
        if not SAFE_TYPE_NAME.fullmatch(item.cast):
            raise parse_error(f"failed to parse select parameter (::{item.cast})")
        # Safe: the pattern admits only letters, digits, underscores and single spaces.
        expression = sql.SQL("CAST({} AS {})").format(expression, sql.SQL(item.cast))
    return sql.SQL("{} AS {}").format(expression, sql.Identifier(item.alias or item.column))


def _render_embed(
    ctx: ReadContext, origin: Table, origin_alias: sql.Composable, embed: Embed, path: tuple[str, ...]
) -> tuple[sql.Composable, sql.Composable | None]:
    """The embedded column, and for ``!inner`` a condition to add to the parent."""
    relation = find_relationship(ctx.cache, origin, embed)
    child_path = (*path, embed.key)
    child_alias = ctx.new_alias()
    join = sql.SQL(" AND ").join(
        sql.SQL("{}.{} = {}.{}").format(child_alias, sql.Identifier(t), origin_alias, sql.Identifier(o))
        for o, t in relation.pairs
    )
    source = sql.Identifier(*relation.target.qualified)
    read = render_read(ctx, source, child_alias, relation.target, embed.items, path=child_path, join=join)
    row = ctx.new_alias()
    if relation.is_array:
        column = sql.SQL("COALESCE((SELECT json_agg({row}) FROM ({read}) {row}), '[]'::json)").format(
            row=row, read=read
        )
    else:
        column = sql.SQL("(SELECT row_to_json({row}) FROM ({read}) {row})").format(row=row, read=read)
    inner = sql.SQL("EXISTS ({})").format(read) if embed.inner else None
    return sql.SQL("{} AS {}").format(column, sql.Identifier(embed.key)), inner


def render_read(
    ctx: ReadContext,
    source: sql.Composable,
    alias: sql.Identifier,
    table: Table | None,
    items: list[SelectItem],
    *,
    path: tuple[str, ...] = (),
    join: sql.Composable | None = None,
    max_rows: int | None = None,
) -> sql.Composable:
    """``SELECT <items> FROM <source> AS <alias> WHERE ... ORDER BY ... LIMIT ... OFFSET ...``."""
    node = ctx.params.nodes.get(path, ReadNode())
    columns: list[sql.Composable] = []
    where: list[sql.Composable] = [join] if join is not None else []
    for item in items:
        if isinstance(item, Field):
            columns.append(_render_field(item, alias))
            continue
        if table is None:
            raise _relationship_error(Table("", "result"), item.relation)
        column, inner = _render_embed(ctx, table, alias, item, path)
        columns.append(column)
        if inner is not None:
            where.append(inner)
    where += [render_condition(c, alias) for c in node.conditions]
    query = sql.SQL("SELECT {} FROM {} AS {}").format(sql.SQL(", ").join(columns), source, alias)
    if where:
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(where))
    if node.order:
        query = sql.SQL("{} ORDER BY {}").format(query, render_order(node.order, alias))
    limit = (
        node.limit if max_rows is None else min(node.limit if node.limit is not None else max_rows, max_rows)
    )
    if limit is not None:
        query = sql.SQL("{} LIMIT {}").format(query, sql.Literal(limit))
    if node.offset:
        query = sql.SQL("{} OFFSET {}").format(query, sql.Literal(node.offset))
    return query


def render_where(conditions: list[Condition], alias: sql.Composable) -> sql.Composable:
    if not conditions:
        return sql.SQL("TRUE")
    return sql.SQL(" AND ").join(render_condition(c, alias) for c in conditions)
