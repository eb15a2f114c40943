"""PostgREST's schema cache: tables, columns, keys, foreign keys and functions of the exposed schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

QualifiedName = tuple[str, str]

_COLUMNS_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnum
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
ORDER BY n.nspname, c.relname, a.attnum
"""

_KEY_COLUMNS = """
array(SELECT a.attname FROM unnest({keys}) WITH ORDINALITY k(num, ord)
      JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.num ORDER BY k.ord)
"""

_UNIQUE_SQL = f"""
SELECT n.nspname, c.relname, con.contype, {_KEY_COLUMNS.format(keys="con.conkey", rel="con.conrelid")}
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE con.contype IN ('p', 'u') AND n.nspname = ANY(%(schemas)s)
ORDER BY con.conname
"""

_FOREIGN_KEYS_SQL = f"""
SELECT con.conname,
       cn.nspname, c.relname, {_KEY_COLUMNS.format(keys="con.conkey", rel="con.conrelid")},
       pn.nspname, p.relname, {_KEY_COLUMNS.format(keys="con.confkey", rel="con.confrelid")}
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class p ON p.oid = con.confrelid
JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE con.contype = 'f' AND cn.nspname = ANY(%(schemas)s) AND pn.nspname = ANY(%(schemas)s)
ORDER BY con.conname
"""

_FUNCTIONS_SQL = """
SELECT n.nspname, p.proname,
       coalesce(p.proargnames, '{}'::text[]),
       coalesce(p.proargmodes::text[], '{}'::text[]),
       array(SELECT format_type(t, NULL)
             FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY u(t, o)
             ORDER BY o),
       p.pronargdefaults, p.proretset, format_type(p.prorettype, NULL), t.typtype,
       rn.nspname, rc.relname, p.provolatile
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_type t ON t.oid = p.prorettype
LEFT JOIN pg_class rc ON rc.oid = t.typrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE n.nspname = ANY(%(schemas)s) AND p.prokind = 'f'
ORDER BY p.oid
"""

_ROLE_SETTINGS_SQL = """
SELECT r.rolname, unnest(s.setconfig)
FROM pg_db_role_setting s
JOIN pg_roles r ON r.oid = s.setrole
WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
"""

# Settings PostgREST re-applies for the impersonated role inside each request transaction.
ROLE_SETTINGS_APPLIED = frozenset({"statement_timeout", "lock_timeout"})


@dataclass
class Table:
    schema: str
    name: str
    columns: list[str] = field(default_factory=list)
    column_types: dict[str, str] = field(default_factory=dict)
    primary_key: tuple[str, ...] = ()
    unique_keys: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def qualified(self) -> QualifiedName:
        return (self.schema, self.name)


@dataclass(frozen=True)
class ForeignKey:
    name: str
    child: QualifiedName
    child_columns: tuple[str, ...]
    parent: QualifiedName
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class Param:
    name: str
    type_name: str
    has_default: bool


@dataclass(frozen=True)
class Function:
    """``return_kind`` is one of: composite, scalar, void."""

    schema: str
    name: str
    params: tuple[Param, ...]
    returns_set: bool
    return_kind: str
    return_type: str
    return_table: QualifiedName | None
    out_columns: tuple[Param, ...]
    volatility: str

    @property
    def required_names(self) -> set[str]:
        return {p.name for p in self.params if not p.has_default}

    @property
    def param_names(self) -> set[str]:
        return {p.name for p in self.params}

    @property
    def single_unnamed_json(self) -> bool:
        return (
            len(self.params) == 1
            and not self.params[0].name
            and self.params[0].type_name in {"json", "jsonb"}
        )


@dataclass
class SchemaCache:
    schemas: list[str]
    tables: dict[QualifiedName, Table] = field(default_factory=dict)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    functions: dict[QualifiedName, list[Function]] = field(default_factory=dict)
    role_settings: dict[str, dict[str, str]] = field(default_factory=dict)


def _load_tables(conn: psycopg.Connection[Any], schemas: list[str]) -> dict[QualifiedName, Table]:
    tables: dict[QualifiedName, Table] = {}
    for schema, name, column, type_name, _num in conn.execute(_COLUMNS_SQL, {"schemas": schemas}):
        table = tables.setdefault((schema, name), Table(schema, name))
        if column is not None:
            table.columns.append(column)
            table.column_types[column] = type_name
    for schema, name, kind, columns in conn.execute(_UNIQUE_SQL, {"schemas": schemas}):
        keyed = tables.get((schema, name))
        if keyed is None:
            continue
        if kind == "p":
            keyed.primary_key = tuple(columns)
        keyed.unique_keys.append(tuple(columns))
    return tables


def _load_foreign_keys(conn: psycopg.Connection[Any], schemas: list[str]) -> list[ForeignKey]:
    rows = conn.execute(_FOREIGN_KEYS_SQL, {"schemas": schemas})
    return [
        ForeignKey(name, (c_schema, c_name), tuple(c_cols), (p_schema, p_name), tuple(p_cols))
        for name, c_schema, c_name, c_cols, p_schema, p_name, p_cols in rows
    ]


def _split_arguments(
    names: list[str], modes: list[str], types: list[str], n_defaults: int
) -> tuple[tuple[Param, ...], tuple[Param, ...]]:
    inputs: list[tuple[str, str]] = []
    outputs: list[Param] = []
    for index, type_name in enumerate(types):
        mode = modes[index] if modes else "i"
        name = names[index] if index < len(names) else ""
        if mode in ("i", "b", "v"):
            inputs.append((name, type_name))
        if mode in ("o", "b", "t"):
            outputs.append(Param(name, type_name, False))
    first_default = len(inputs) - n_defaults
    params = tuple(Param(name, t, i >= first_default) for i, (name, t) in enumerate(inputs))
    return params, tuple(outputs)


def _return_kind(type_name: str, typtype: str, outputs: tuple[Param, ...]) -> str:
    if type_name == "void":
        return "void"
    if typtype == "c" or (type_name == "record" and outputs):
        return "composite"
    return "scalar"


def _load_functions(conn: psycopg.Connection[Any], schemas: list[str]) -> dict[QualifiedName, list[Function]]:
    functions: dict[QualifiedName, list[Function]] = {}
    for row in conn.execute(_FUNCTIONS_SQL, {"schemas": schemas}):
        schema, name, arg_names, modes, types, n_defaults, retset, rettype, typtype, r_schema, r_name, vol = (
            row
        )
        params, outputs = _split_arguments(arg_names, modes, types, n_defaults)
        function = Function(
            schema=schema,
            name=name,
            params=params,
            returns_set=retset,
            return_kind=_return_kind(rettype, typtype, outputs),
            return_type=rettype,
            return_table=(r_schema, r_name) if r_name else None,
            out_columns=outputs,
            volatility=vol,
        )
        functions.setdefault((schema, name), []).append(function)
    return functions


def _load_role_settings(conn: psycopg.Connection[Any]) -> dict[str, dict[str, str]]:
    settings: dict[str, dict[str, str]] = {}
    for role, setting in conn.execute(_ROLE_SETTINGS_SQL):
        key, _, value = setting.partition("=")
        if key in ROLE_SETTINGS_APPLIED:
            settings.setdefault(role, {})[key] = value
    return settings


def load_schema_cache(conn: psycopg.Connection[Any], schemas: list[str]) -> SchemaCache:
    return SchemaCache(
        schemas=list(schemas),
        tables=_load_tables(conn, schemas),
        foreign_keys=_load_foreign_keys(conn, schemas),
        functions=_load_functions(conn, schemas),
        role_settings=_load_role_settings(conn),
    )
