"""A PostgREST-compatible REST server (``/rest/v1``) over a real PostgreSQL, for tests.

Each request runs in one transaction as ``authenticator`` after ``SET LOCAL ROLE <jwt role>`` and
``request.jwt.claims``, so grants, RLS, constraints and functions are the database's own. The
behaviour is pinned by ``tests/conformance``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import psycopg
from psycopg import sql

from tests.devstack.faults import Fault, FaultPlan, RequestLog, RequestRecord, redact_headers
from tests.devstack.keys import ApiKeys, JwtError, decode_jwt, looks_like_jwt
from tests.devstack.pgrst_query import (
    ApiRequestError,
    Field,
    Filter,
    QueryParams,
    ReadContext,
    ReadNode,
    SelectItem,
    parse_query,
    render_read,
    render_where,
)
from tests.devstack.schema_cache import Function, SchemaCache, Table, load_schema_cache

T = TypeVar("T")
REST_PREFIX = "/rest/v1/"
OBJECT_MEDIA_TYPE = "application/vnd.pgrst.object+json"
JSON_MEDIA_TYPE = "application/json"
READ_METHODS = frozenset({"GET", "HEAD"})
SOURCE = sql.Identifier("pgrst_source")
ROW = sql.Identifier("_pgrst_t")
DB_UNAVAILABLE_RETRY_AFTER = "1"


# ============================================================================================
# Database access
# ============================================================================================
class PoolTimeout(Exception):
    pass


class ConnectionPool:
    """A small thread-safe pool of autocommit connections (transactions are explicit)."""

    def __init__(self, dsn: str, max_size: int = 10, acquire_timeout: float = 10.0) -> None:
        self.dsn = dsn
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self._idle: list[psycopg.Connection[Any]] = []
        self._size = 0
        self._cond = threading.Condition()

    def connect(self) -> psycopg.Connection[Any]:
        # prepare_threshold=None: prepared plans break on "SELECT t.*" after ALTER TABLE.
        return psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None, connect_timeout=5)

    def acquire(self) -> psycopg.Connection[Any]:
        deadline = time.monotonic() + self.acquire_timeout
        with self._cond:
            while not self._idle and self._size >= self.max_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeout
                self._cond.wait(remaining)
            if self._idle:
                return self._idle.pop()
            self._size += 1
        try:
            return self.connect()
        except BaseException:
            self._forget()
            raise

    def release(self, conn: psycopg.Connection[Any], *, broken: bool = False) -> None:
        if broken or conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(Exception):
                conn.close()
            self._forget()
            return
        with self._cond:
            self._idle.append(conn)
            self._cond.notify()

    def _forget(self) -> None:
        with self._cond:
            self._size -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._size -= len(idle)
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


# ============================================================================================
# Requests and responses
# ============================================================================================
@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def query_pairs(self) -> list[tuple[str, str]]:
        # parse_qsl turns "+" into a space, exactly as PostgREST (WAI) does.
        return parse_qsl(self.query, keep_blank_values=True)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    role: str | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        return cls(status, json.dumps(payload).encode(), merged)

    @classmethod
    def error(cls, err: ApiRequestError) -> Response:
        payload = err.body() if err.code is not None or err.details is not None else _gateway_body(err)
        return cls.json(err.status, payload, err.headers)


def _gateway_body(err: ApiRequestError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": err.message}
    if err.hint:
        body["hint"] = err.hint
    return body


@dataclass
class Preferences:
    return_mode: str = "minimal"
    count: str | None = None
    resolution: str | None = None
    applied: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, header: str | None) -> Preferences:
        prefs = cls()
        for token in (header or "").split(","):
            name, _, value = token.strip().partition("=")
            if name == "return" and value in ("minimal", "representation", "headers-only"):
                prefs.return_mode = value
                prefs.applied.append(f"return={value}")
            elif name == "count" and value in ("exact", "planned", "estimated"):
                prefs.count = value
                prefs.applied.append(f"count={value}")
            elif name == "resolution" and value in ("merge-duplicates", "ignore-duplicates"):
                prefs.resolution = value
                prefs.applied.append(f"resolution={value}")
        return prefs

    def header(self, keep: tuple[str, ...] = ("return", "count", "resolution")) -> dict[str, str]:
        applied = [item for item in self.applied if item.split("=")[0] in keep]
        return {"Preference-Applied": ", ".join(applied)} if applied else {}


@dataclass
class AuthContext:
    role: str
    claims: dict[str, Any]
    # PostgREST's "authed": the request runs as another role than the anonymous one (42501 → 403
    # instead of 401). Decided by the role, not by the presence of a JWT: the anon key is a JWT.
    authenticated: bool


@dataclass
class QueryResult:
    body: str | None
    count: int
    total: int | None


# ============================================================================================
# Errors
# ============================================================================================
def pg_error_status(sqlstate: str, authenticated: bool) -> int:
    """PostgREST's SQLSTATE → HTTP status table."""
    exact = {
        "23503": 409,
        "23505": 409,
        "25006": 405,
        "P0001": 400,
        "42883": 404,
        "42P01": 404,
        "42P17": 500,
        "53400": 500,
        "57P01": 503,
    }
    if sqlstate in exact:
        return exact[sqlstate]
    if sqlstate == "42501":
        return 403 if authenticated else 401
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:]) if 100 <= int(sqlstate[2:]) <= 599 else 500
    by_class = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500, "38": 500}
    by_class |= {"39": 500, "3B": 500, "40": 500, "53": 503, "54": 413, "55": 500, "57": 500, "58": 500}
    by_class |= {"F0": 500, "HV": 500, "P0": 500, "XX": 500}
    return by_class.get(sqlstate[:2], 400)


def pg_error_response(exc: psycopg.Error, auth: AuthContext | None) -> Response:
    diag = exc.diag
    sqlstate = diag.sqlstate
    if sqlstate is None:
        return connection_lost_response()
    authenticated = auth.authenticated if auth else False
    status = pg_error_status(sqlstate, authenticated)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    body = {
        "code": sqlstate,
        "details": diag.message_detail,
        "hint": diag.message_hint,
        "message": diag.message_primary,
    }
    return Response.json(status, body, headers)


def connection_lost_response() -> Response:
    body = {
        "code": "PGRST001",
        "details": None,
        "hint": None,
        "message": "Database client error. Retrying the connection.",
    }
    return Response.json(503, body, {"Retry-After": DB_UNAVAILABLE_RETRY_AFTER})


def singular_error(count: int) -> ApiRequestError:
    return ApiRequestError(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        f"The result contains {count} rows",
    )


def invalid_body_error(details: str | None = None) -> ApiRequestError:
    return ApiRequestError(400, "PGRST102", "Empty or invalid json", details)


# ============================================================================================
# Headers helpers
# ============================================================================================
def content_range(lower: int, returned: int, total: int | None) -> str:
    total_text = "*" if total is None else str(total)
    if returned > 0 and total != 0:
        return f"{lower}-{lower + returned - 1}/{total_text}"
    return f"*/{total_text}"


def range_status(lower: int, returned: int, total: int | None) -> int:
    if total is None:
        return 200
    if lower > total:
        return 416
    return 206 if returned < total else 200


def parse_range_header(value: str | None) -> tuple[int, int | None] | None:
    """``Range: 0-9`` → (offset 0, limit 10); ``Range: 5-`` → (5, None)."""
    if not value:
        return None
    _, _, spec = value.rpartition("=")
    start, sep, end = spec.strip().partition("-")
    if not sep or not start.isdigit() or (end and not end.isdigit()):
        return None
    first = int(start)
    return first, (int(end) - first + 1 if end else None)


# ============================================================================================
# The API
# ============================================================================================
class RestApi:
    """Turns one ``Request`` into one ``Response``; knows nothing about sockets."""

    def __init__(
        self,
        authenticator_dsn: str,
        *,
        db_schemas: list[str],
        keys: ApiKeys,
        anon_role: str = "anon",
        max_rows: int | None = 1000,
        pool_size: int = 10,
        pool_timeout: float = 10.0,
    ) -> None:
        if not db_schemas:
            raise ValueError("db_schemas must name at least one schema")
        self.db_schemas = list(db_schemas)
        self.keys = keys
        self.anon_role = anon_role
        self.max_rows = max_rows
        self.pool = ConnectionPool(authenticator_dsn, pool_size, pool_timeout)
        self._cache_lock = threading.Lock()
        self._cache: SchemaCache | None = None
        self.reload_count = 0

    # -- schema cache -----------------------------------------------------------------------
    def reload_schema(self) -> None:
        with self.pool.connect() as conn:
            cache = load_schema_cache(conn, self.db_schemas)
        with self._cache_lock:
            self._cache = cache
            self.reload_count += 1

    @property
    def cache(self) -> SchemaCache:
        with self._cache_lock:
            cache = self._cache
        if cache is None:
            self.reload_schema()
            return self.cache
        return cache

    # -- entry point --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        auth: AuthContext | None = None
        try:
            if not request.path.startswith(REST_PREFIX):
                return Response.error(ApiRequestError(404, None, "no Route matched with those values"))
            auth = self.authenticate(request)
            response = self._route(request, auth)
        except ApiRequestError as err:
            response = Response.error(err)
        except PoolTimeout:
            response = Response.error(
                ApiRequestError(504, "PGRST003", "Timed out acquiring connection from connection pool.")
            )
        except psycopg.Error as exc:
            response = pg_error_response(exc, auth)
        response.role = auth.role if auth else None
        if len(self.db_schemas) > 1 and response.status < 500 and "Content-Profile" not in response.headers:
            response.headers["Content-Profile"] = self._schema_for(request, strict=False)
        return response

    # -- auth ---------------------------------------------------------------------------------
    def authenticate(self, request: Request) -> AuthContext:
        apikey = request.header("apikey") or dict(request.query_pairs).get("apikey")
        if not apikey:
            raise ApiRequestError(
                401,
                None,
                "No API key found in request",
                hint="No `apikey` request header or url param was found.",
            )
        opaque_role = self._check_apikey(apikey)
        authorization = request.header("authorization")
        if authorization and authorization[:7].lower() == "bearer ":
            claims = self._verify_bearer(authorization[7:].strip())
            role = str(claims.get("role") or self.anon_role)
            return AuthContext(role, claims, role != self.anon_role)
        if opaque_role is not None:
            # The Supabase gateway swaps an opaque key for a short-lived JWT of its role.
            claims = {"role": opaque_role, "iss": "supabase"}
            return AuthContext(opaque_role, claims, opaque_role != self.anon_role)
        return AuthContext(self.anon_role, {"role": self.anon_role}, False)

    def _check_apikey(self, apikey: str) -> str | None:
        opaque = self.keys.opaque_roles()
        if apikey in opaque:
            return opaque[apikey]
        if looks_like_jwt(apikey):
            with contextlib.suppress(JwtError):
                decode_jwt(apikey, self.keys.jwt_secret, verify_times=False)
                return None
        raise ApiRequestError(
            401, None, "Invalid API key", hint="Double check your Supabase `anon` or `service_role` API key."
        )

    def _verify_bearer(self, token: str) -> dict[str, Any]:
        try:
            return decode_jwt(token, self.keys.jwt_secret)
        except JwtError as err:
            challenge = f'Bearer error="invalid_token", error_description="{err.message}"'
            raise ApiRequestError(
                401, err.code, err.message, headers={"WWW-Authenticate": challenge}
            ) from err

    # -- routing ------------------------------------------------------------------------------
    def _schema_for(self, request: Request, *, strict: bool = True) -> str:
        name = "accept-profile" if request.method in READ_METHODS else "content-profile"
        wanted = request.header(name)
        if wanted is None:
            return self.db_schemas[0]
        if wanted not in self.db_schemas:
            if not strict:
                return self.db_schemas[0]
            raise ApiRequestError(
                406, "PGRST106", f"The schema must be one of the following: {', '.join(self.db_schemas)}"
            )
        return wanted

    def _route(self, request: Request, auth: AuthContext) -> Response:
        resource = unquote(request.path[len(REST_PREFIX) :]).strip("/")
        schema = self._schema_for(request)
        if resource == "":
            return Response.json(200, {"swagger": "2.0", "info": {"title": "devstack"}, "paths": {}})
        if resource.startswith("rpc/"):
            if request.method not in ("GET", "HEAD", "POST"):
                raise ApiRequestError(405, "PGRST101", "Only GET, HEAD or POST are allowed on functions")
            return self._rpc(request, auth, schema, resource[4:])
        table = self.cache.tables.get((schema, resource))
        if table is None:
            raise ApiRequestError(
                404, "PGRST205", f"Could not find the table '{schema}.{resource}' in the schema cache"
            )
        handlers: dict[str, Callable[[Request, AuthContext, Table], Response]] = {
            "GET": self._read,
            "HEAD": self._read,
            "POST": self._insert,
            "PATCH": self._update,
            "DELETE": self._delete,
            "PUT": self._put,
        }
        handler = handlers.get(request.method)
        if handler is None:
            raise ApiRequestError(405, "PGRST117", f"Unsupported HTTP method: {request.method}")
        return handler(request, auth, table)

    # -- transactions -------------------------------------------------------------------------
    def _begin(self, conn: psycopg.Connection[Any], read_only: bool) -> None:
        mode = " READ ONLY" if read_only else ""
        conn.execute(f"BEGIN ISOLATION LEVEL READ COMMITTED{mode}")

    def _acquire_and_begin(self, read_only: bool) -> psycopg.Connection[Any]:
        conn = self.pool.acquire()
        try:
            self._begin(conn, read_only)
        except psycopg.OperationalError:
            # A pooled connection that died with the server (restart): retry once on a new one.
            self.pool.release(conn, broken=True)
            conn = self.pool.acquire()
            try:
                self._begin(conn, read_only)
            except psycopg.OperationalError:
                self.pool.release(conn, broken=True)
                raise
        return conn

    def _set_request_context(
        self, conn: psycopg.Connection[Any], request: Request, auth: AuthContext, schema: str
    ) -> None:
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(auth.role)))
        search_path = ", ".join(f'"{s}"' for s in (schema, "public", "extensions"))
        settings = {
            "request.jwt.claims": json.dumps(auth.claims),
            "request.method": request.method,
            "request.path": request.path,
            "request.headers": json.dumps({k: v for k, v in request.headers.items() if k != "cookie"}),
            "search_path": search_path,
            **self.cache.role_settings.get(auth.role, {}),
        }
        calls = sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, true)").format(sql.Literal(k), sql.Literal(v))
            for k, v in settings.items()
        )
        conn.execute(sql.SQL("SELECT {}").format(calls))

    def _in_transaction(
        self,
        request: Request,
        auth: AuthContext,
        schema: str,
        read_only: bool,
        work: Callable[[psycopg.Connection[Any]], T],
    ) -> T:
        try:
            conn = self._acquire_and_begin(read_only)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable from exc
        broken = False
        try:
            self._set_request_context(conn, request, auth, schema)
            result = work(conn)
            conn.execute("COMMIT")
            return result
        except psycopg.OperationalError as exc:
            broken = exc.diag.sqlstate is None
            raise
        finally:
            if (
                not broken
                and not conn.closed
                and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
            ):
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            self.pool.release(conn, broken=broken or conn.closed)

    def _run_query(
        self, request: Request, auth: AuthContext, schema: str, read_only: bool, query: sql.Composable
    ) -> QueryResult:
        def work(conn: psycopg.Connection[Any]) -> QueryResult:
            row = conn.execute(sql.Composed([query])).fetchone()
            assert row is not None
            result = QueryResult(row[0], int(row[1]), None if row[2] is None else int(row[2]))
            if self._wants_object(request) and result.count != 1:
                raise singular_error(result.count)  # raised inside: the transaction rolls back
            return result

        return self._in_transaction(request, auth, schema, read_only, work)

    # -- negotiation --------------------------------------------------------------------------
    def _wants_object(self, request: Request) -> bool:
        return self._media_type(request) == OBJECT_MEDIA_TYPE

    def _media_type(self, request: Request) -> str:
        accept = request.header("accept")
        if not accept:
            return JSON_MEDIA_TYPE
        offered = [part.split(";")[0].strip().lower() for part in accept.split(",")]
        for media in offered:
            if media in (OBJECT_MEDIA_TYPE, "application/vnd.pgrst.object"):
                return OBJECT_MEDIA_TYPE
            if media in (JSON_MEDIA_TYPE, "*/*", "application/*"):
                return JSON_MEDIA_TYPE
        raise ApiRequestError(
            406, "PGRST107", f"None of these media types are available: {', '.join(offered)}"
        )

    def _body_response(
        self, status: int, request: Request, body: str | None, headers: dict[str, str]
    ) -> Response:
        if body is None:
            return Response(status, b"", headers)
        media = self._media_type(request)
        headers = {"Content-Type": f"{media}; charset=utf-8", **headers}
        return Response(status, body.encode(), headers)

    def _parse_json_body(self, request: Request, *, allow_empty: bool = False) -> Any:
        content_type = (request.header("content-type") or JSON_MEDIA_TYPE).split(";")[0].strip().lower()
        if content_type not in (JSON_MEDIA_TYPE, OBJECT_MEDIA_TYPE):
            raise ApiRequestError(415, "PGRST107", f"The Content-Type '{content_type}' is not supported")
        if not request.body.strip():
            if allow_empty:
                return {}
            raise invalid_body_error()
        try:
            return json.loads(request.body)
        except ValueError as exc:
            raise invalid_body_error(str(exc)) from exc

    # -- reads --------------------------------------------------------------------------------
    def _range(self, request: Request, params: QueryParams) -> ReadNode:
        node = params.node()
        requested = parse_range_header(request.header("range")) if request.method in READ_METHODS else None
        if requested is not None:
            start, size = requested
            node.offset = node.offset or start
            if size is not None:
                node.limit = size if node.limit is None else min(node.limit, size)
        return node

    def _read(self, request: Request, auth: AuthContext, table: Table) -> Response:
        params = parse_query(request.query_pairs)
        prefs = Preferences.parse(request.header("prefer"))
        node = self._range(request, params)
        ctx = ReadContext(self.cache, params)
        alias = ctx.new_alias()
        source = sql.Identifier(table.schema, table.name)
        read = render_read(ctx, source, alias, table, params.select, max_rows=self.max_rows)
        total: sql.Composable | None = None
        if prefs.count:
            total = sql.SQL("(SELECT count(*) FROM {} AS {} WHERE {})").format(
                source, alias, render_where(node.conditions, alias)
            )
        body_mode = "first" if self._wants_object(request) else "array"
        result = self._run_query(request, auth, table.schema, True, wrap_result(read, body_mode, total))
        return self._ranged_response(request, prefs, node.offset or 0, result)

    def _ranged_response(
        self, request: Request, prefs: Preferences, lower: int, result: QueryResult
    ) -> Response:
        status = range_status(lower, result.count, result.total)
        headers = {
            "Content-Range": content_range(lower, result.count, result.total),
            **prefs.header(("count",)),
        }
        if status == 416:
            err = ApiRequestError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                f"An offset of {lower} was requested, but there are only {result.total} rows.",
                headers=headers,
            )
            return Response.error(err)
        return self._body_response(status, request, result.body, headers)

    # -- writes -------------------------------------------------------------------------------
    def _mutation_read(
        self, params: QueryParams, table: Table, prefs: Preferences
    ) -> tuple[ReadContext, sql.Composable]:
        """The SELECT over the rows a mutation returned (root filters were already applied)."""
        root = params.node()
        params.nodes[()] = ReadNode(order=root.order)
        ctx = ReadContext(self.cache, params)
        items: list[SelectItem] = params.select
        if prefs.return_mode == "headers-only":
            items = [Field(column) for column in table.primary_key] or [Field("*")]
        return ctx, render_read(ctx, SOURCE, ctx.new_alias(), table, items)

    def _execute_mutation(
        self,
        request: Request,
        auth: AuthContext,
        table: Table,
        params: QueryParams,
        prefs: Preferences,
        *,
        mutation: sql.Composable,
    ) -> QueryResult:
        query: sql.Composable
        if prefs.return_mode == "minimal":
            query = sql.SQL(
                "WITH {} AS ({} RETURNING 1) SELECT NULL::text, count(*), NULL::bigint FROM {}"
            ).format(SOURCE, mutation, SOURCE)
        else:
            _, read = self._mutation_read(params, table, prefs)
            returning = sql.SQL("{} RETURNING {}.*").format(
                mutation, sql.Identifier(table.schema, table.name)
            )
            body_mode = "first" if self._wants_object(request) else "array"
            query = sql.SQL("WITH {} AS ({}) {}").format(
                SOURCE, returning, wrap_result(read, body_mode, None)
            )
        return self._run_query(request, auth, table.schema, False, query)

    def _insert_rows(self, request: Request, params: QueryParams) -> list[dict[str, Any]]:
        payload = self._parse_json_body(request)
        rows = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(row, dict) for row in rows):
            raise invalid_body_error("All elements must be JSON objects")
        return rows

    def _insert_columns(self, rows: list[dict[str, Any]], params: QueryParams, table: Table) -> list[str]:
        columns = params.columns or list(dict.fromkeys(key for row in rows for key in row))
        for column in columns:
            if column not in table.columns:
                raise ApiRequestError(
                    400,
                    "PGRST204",
                    f"Could not find the '{column}' column of '{table.name}' in the schema cache",
                )
        return columns

    def _insert_statement(
        self,
        table: Table,
        rows: list[dict[str, Any]],
        columns: list[str],
        params: QueryParams,
        prefs: Preferences,
    ) -> sql.Composable:
        target = sql.Identifier(table.schema, table.name)
        if not columns:
            if len(rows) != 1:
                raise invalid_body_error("Rows without any column can only be inserted one at a time")
            return sql.SQL("INSERT INTO {} DEFAULT VALUES").format(target)
        names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        statement = sql.SQL(
            "INSERT INTO {t} ({c}) SELECT {c} FROM json_populate_recordset(NULL::{t}, {b}::json) _"
        ).format(t=target, c=names, b=sql.Literal(json.dumps(rows)))
        return sql.SQL("{}{}").format(statement, self._on_conflict(table, columns, params, prefs))

    def _on_conflict(
        self, table: Table, columns: list[str], params: QueryParams, prefs: Preferences
    ) -> sql.Composable:
        conflict = params.on_conflict or list(table.primary_key)
        if prefs.resolution is None or not conflict:
            return sql.SQL("")
        target = sql.SQL(", ").join(sql.Identifier(c) for c in conflict)
        if prefs.resolution == "ignore-duplicates":
            return sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(target)
        updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns)
        return sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(target, updates)

    def _insert(self, request: Request, auth: AuthContext, table: Table) -> Response:
        params = parse_query(request.query_pairs)
        prefs = Preferences.parse(request.header("prefer"))
        rows = self._insert_rows(request, params)
        columns = self._insert_columns(rows, params, table)
        if not rows:
            return self._write_response(request, prefs, 201, QueryResult("[]", 0, None), table, insert=True)
        statement = self._insert_statement(table, rows, columns, params, prefs)
        result = self._execute_mutation(request, auth, table, params, prefs, mutation=statement)
        return self._write_response(request, prefs, 201, result, table, insert=True)

    def _put(self, request: Request, auth: AuthContext, table: Table) -> Response:
        params = parse_query(request.query_pairs)
        prefs = Preferences.parse(request.header("prefer"))
        prefs.resolution = "merge-duplicates"
        rows = self._insert_rows(request, params)
        conditions = params.node().conditions
        pk_filters = {
            c.column: c.value
            for c in conditions
            if isinstance(c, Filter) and c.operator == "eq" and not c.negated
        }
        if (
            not table.primary_key
            or set(pk_filters) != set(table.primary_key)
            or len(conditions) != len(pk_filters)
        ):
            raise ApiRequestError(
                405, "PGRST105", "Filters must include all and only primary key columns with 'eq' operators"
            )
        if len(rows) != 1 or any(str(rows[0].get(k)) != v for k, v in pk_filters.items()):
            raise ApiRequestError(400, "PGRST115", "Payload values do not match URL in primary key column(s)")
        params.node().conditions = []
        columns = self._insert_columns(rows, params, table)
        statement = self._insert_statement(table, rows, columns, params, prefs)
        result = self._execute_mutation(request, auth, table, params, prefs, mutation=statement)
        status = 200 if prefs.return_mode == "representation" else 204
        return self._write_response(request, prefs, status, result, table)

    def _update(self, request: Request, auth: AuthContext, table: Table) -> Response:
        params = parse_query(request.query_pairs)
        prefs = Preferences.parse(request.header("prefer"))
        payload = self._parse_json_body(request)
        if not isinstance(payload, dict):
            raise invalid_body_error("PATCH expects a single JSON object")
        columns = self._insert_columns([payload], params, table)
        target = sql.Identifier(table.schema, table.name)
        where = render_where(params.node().conditions, target)
        if not columns:
            where = sql.SQL("FALSE")
            columns = list(table.columns[:1])
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = _pgrst_body.{0}").format(sql.Identifier(c)) for c in columns
        )
        statement = sql.SQL(
            "UPDATE {t} SET {a}"
            " FROM (SELECT * FROM json_populate_record(NULL::{t}, {b}::json)) AS _pgrst_body WHERE {w}"
        ).format(t=target, a=assignments, b=sql.Literal(json.dumps(payload)), w=where)
        result = self._execute_mutation(request, auth, table, params, prefs, mutation=statement)
        status = 200 if prefs.return_mode == "representation" else 204
        return self._write_response(request, prefs, status, result, table)

    def _delete(self, request: Request, auth: AuthContext, table: Table) -> Response:
        params = parse_query(request.query_pairs)
        prefs = Preferences.parse(request.header("prefer"))
        target = sql.Identifier(table.schema, table.name)
        statement = sql.SQL("DELETE FROM {} WHERE {}").format(
            target, render_where(params.node().conditions, target)
        )
        result = self._execute_mutation(request, auth, table, params, prefs, mutation=statement)
        status = 200 if prefs.return_mode == "representation" else 204
        return self._write_response(request, prefs, status, result, table)

    def _write_response(
        self,
        request: Request,
        prefs: Preferences,
        status: int,
        result: QueryResult,
        table: Table,
        *,
        insert: bool = False,
    ) -> Response:
        total = result.count if prefs.count else None
        lower_range = "*/" + ("*" if total is None else str(total))
        headers = {"Content-Range": lower_range if insert else content_range(0, result.count, total)}
        headers |= prefs.header()
        if prefs.return_mode == "headers-only":
            location = self._location(table, result.body)
            if location:
                headers["Location"] = location
            return Response(status if insert else 204, b"", headers)
        body = result.body if prefs.return_mode == "representation" else None
        return self._body_response(status, request, body, headers)

    def _location(self, table: Table, body: str | None) -> str | None:
        rows = json.loads(body) if body else []
        first = rows[0] if isinstance(rows, list) and rows else rows
        if not isinstance(first, dict) or not table.primary_key:
            return None
        query = "&".join(f"{quote(k)}=eq.{quote(str(first.get(k)))}" for k in table.primary_key)
        return f"/{table.name}?{query}"

    # -- RPC ----------------------------------------------------------------------------------
    def _rpc(self, request: Request, auth: AuthContext, schema: str, name: str) -> Response:
        candidates = self.cache.functions.get((schema, name), [])
        if request.method == "POST":
            args = self._parse_json_body(request, allow_empty=True)
            param_names: set[str] = set().union(*(f.param_names for f in candidates)) if candidates else set()
            params = parse_query(request.query_pairs)
        else:
            param_names = set().union(*(f.param_names for f in candidates)) if candidates else set()
            params = parse_query(request.query_pairs, rpc_param_names=param_names)
            args = dict(params.rpc_args)
        function = self._pick_function(schema, name, candidates, args)
        call = render_call(function, args)
        prefs = Preferences.parse(request.header("prefer"))
        read_only = request.method in READ_METHODS or function.volatility in ("s", "i")
        if function.return_kind == "void":
            void_call = sql.SQL("SELECT NULL::text, count(*), NULL::bigint FROM {} AS pgrst_call").format(
                call
            )
            self._run_query(request, auth, schema, read_only, void_call)
            return Response(204, b"", {})
        result = self._run_query(
            request, auth, schema, read_only, self._rpc_query(request, function, call, params, prefs)
        )
        if function.returns_set:
            return self._ranged_response(request, prefs, params.node().offset or 0, result)
        return self._body_response(200, request, result.body, {})

    def _pick_function(self, schema: str, name: str, candidates: list[Function], args: Any) -> Function:
        keys = set(args) if isinstance(args, dict) else set()
        matching = [
            f
            for f in candidates
            if (isinstance(args, dict) and f.required_names <= keys <= f.param_names) or f.single_unnamed_json
        ]
        if len(matching) == 1:
            return matching[0]
        if len(matching) > 1:
            choices = ", ".join(_signature(f) for f in matching)
            raise ApiRequestError(
                300, "PGRST203", f"Could not choose the best candidate function between: {choices}"
            )
        listed = ", ".join(sorted(keys))
        described = f"({listed})" if keys else " without parameters"
        searched = f"with parameters {listed}" if keys else "without parameters"
        hint = f"Perhaps you meant to call the function {_signature(candidates[0])}" if candidates else None
        raise ApiRequestError(
            404,
            "PGRST202",
            f"Could not find the function {schema}.{name}{described} in the schema cache",
            f"Searched for the function {schema}.{name} {searched} or with a single unnamed json/jsonb "
            "parameter, but no matches were found in the schema cache.",
            hint=hint,
        )

    def _rpc_query(
        self,
        request: Request,
        function: Function,
        call: sql.Composable,
        params: QueryParams,
        prefs: Preferences,
    ) -> sql.Composable:
        single = self._wants_object(request) or not function.returns_set
        if function.return_kind == "scalar":
            source = sql.SQL("SELECT pgrst_call.pgrst_scalar FROM {} AS pgrst_call(pgrst_scalar)").format(
                call
            )
            everything = sql.SQL("SELECT * FROM {}").format(SOURCE)
            body_mode = "scalar_first" if single else "scalar_array"
            return sql.SQL("WITH {} AS ({}) {}").format(
                SOURCE, source, wrap_result(everything, body_mode, None)
            )
        source = sql.SQL("SELECT pgrst_call.* FROM {} AS pgrst_call").format(call)
        table = self.cache.tables.get(function.return_table) if function.return_table else None
        ctx = ReadContext(self.cache, params)
        alias = ctx.new_alias()
        max_rows = self.max_rows if function.returns_set else None
        read = render_read(ctx, SOURCE, alias, table, params.select, max_rows=max_rows)
        total: sql.Composable | None = None
        if prefs.count and function.returns_set:
            total = sql.SQL("(SELECT count(*) FROM {} AS {} WHERE {})").format(
                SOURCE, alias, render_where(params.node().conditions, alias)
            )
        body_mode = "first" if single else "array"
        return sql.SQL("WITH {} AS MATERIALIZED ({}) {}").format(
            SOURCE, source, wrap_result(read, body_mode, total)
        )


class DatabaseUnavailable(Exception):
    """No connection to PostgreSQL could be made for this request."""


def _signature(function: Function) -> str:
    return f"{function.schema}.{function.name}({', '.join(p.name for p in function.params)})"


def render_call(function: Function, args: Any) -> sql.Composable:
    """``json_to_record(<args>) AS _pgrst_args(...), schema.fn(a := _pgrst_args.a, ...)``."""
    name = sql.Identifier(function.schema, function.name)
    if function.single_unnamed_json:
        return sql.SQL("{}({}::{})").format(
            name, sql.Literal(json.dumps(args)), sql.SQL(function.params[0].type_name)
        )
    given = [p for p in function.params if p.name in args]
    if not given:
        return sql.SQL("{}()").format(name)
    # Type names come from pg_catalog (format_type), never from the request.
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(p.name), sql.SQL(p.type_name)) for p in given
    )
    named = sql.SQL(", ").join(
        sql.SQL("{0} := _pgrst_args.{0}").format(sql.Identifier(p.name)) for p in given
    )
    return sql.SQL("json_to_record({}::json) AS _pgrst_args({}), {}({})").format(
        sql.Literal(json.dumps({p.name: args[p.name] for p in given})), definitions, name, named
    )


BODY_EXPRESSIONS = {
    "array": "coalesce(json_agg(_pgrst_t), '[]'::json)::text",
    "first": "(json_agg(_pgrst_t) -> 0)::text",
    "scalar_array": "coalesce(json_agg(_pgrst_t.pgrst_scalar), '[]'::json)::text",
    "scalar_first": "(json_agg(_pgrst_t.pgrst_scalar) -> 0)::text",
}


def wrap_result(read: sql.Composable, body_mode: str, total: sql.Composable | None) -> sql.Composable:
    """One row: (JSON body text, number of rows, total count or NULL)."""
    return sql.SQL("SELECT {}, count(*), {} FROM ({}) AS {}").format(
        sql.SQL(BODY_EXPRESSIONS[body_mode]),
        total if total is not None else sql.SQL("NULL::bigint"),
        read,
        ROW,
    )


# ============================================================================================
# HTTP plumbing
# ============================================================================================
class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, rest: RestServer) -> None:
        self.rest = rest
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_all_connections(self) -> None:
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body are two writes: with Nagle on, the body waits for the client's delayed
    # ACK of the head (about 40 ms per request on Linux). PostgREST (warp) sets TCP_NODELAY too.
    disable_nagle_algorithm = True
    server: _HttpServer
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        response = self.server.rest.serve(request)
        if response is None:
            self._drop()
            return
        self._send(response, include_body=request.method != "HEAD")

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, response: Response, *, include_body: bool) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if include_body and response.body:
            self.wfile.write(response.body)


# ============================================================================================
# The server
# ============================================================================================
class RestServer:
    """The REST server on a free loopback port; ``url`` is the Supabase URL (REST under /rest/v1)."""

    def __init__(
        self,
        authenticator_dsn: str,
        *,
        db_schemas: list[str] | tuple[str, ...] = ("public", "ops"),
        keys: ApiKeys | None = None,
        anon_role: str = "anon",
        max_rows: int | None = 1000,
        pool_size: int = 10,
        pool_timeout: float = 10.0,
    ) -> None:
        self.keys = keys or ApiKeys.generate()
        self.api = RestApi(
            authenticator_dsn,
            db_schemas=list(db_schemas),
            keys=self.keys,
            anon_role=anon_role,
            max_rows=max_rows,
            pool_size=pool_size,
            pool_timeout=pool_timeout,
        )
        self.faults = FaultPlan()
        self._log = RequestLog()
        self._http: _HttpServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> RestServer:
        if self._http is not None:
            return self
        self.api.reload_schema()
        self._stopping.clear()
        self._http = _HttpServer(self)
        serve = threading.Thread(target=self._http.serve_forever, name="restserver-http", daemon=True)
        listen = threading.Thread(target=self._listen_for_reloads, name="restserver-listen", daemon=True)
        self._threads = [serve, listen]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            http.close_all_connections()
            http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        self.api.pool.close()

    def __enter__(self) -> RestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- public properties ----------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("server not started")
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"{self.url}/rest/v1"

    @property
    def db_schemas(self) -> list[str]:
        return list(self.api.db_schemas)

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.snapshot()

    def clear_requests(self) -> None:
        self._log.clear()

    def reload_schema(self) -> None:
        self.api.reload_schema()

    # -- schema reload on NOTIFY pgrst ------------------------------------------------------------
    def _listen_for_reloads(self) -> None:
        while not self._stopping.is_set():
            try:
                with self.api.pool.connect() as conn:
                    conn.execute("LISTEN pgrst")
                    self.api.reload_schema()  # anything may have changed while disconnected
                    self._consume_notifications(conn)
            except psycopg.Error:
                self._stopping.wait(0.2)

    def _consume_notifications(self, conn: psycopg.Connection[Any]) -> None:
        while not self._stopping.is_set():
            for notification in conn.notifies(timeout=0.2):
                if notification.payload in ("", "reload schema"):
                    self.api.reload_schema()

    # -- request pipeline ----------------------------------------------------------------------
    def serve(self, request: Request) -> Response | None:
        """The answer to one request, or ``None`` to drop the connection without one."""
        if request.path.startswith("/__"):
            return self._admin(request)
        started = time.monotonic()
        record = RequestRecord(
            request.method,
            request.path,
            request.query,
            redact_headers(request.headers),
            len(request.body),
            request.body,
        )
        response = self._serve_with_faults(request, record)
        record.duration_ms = (time.monotonic() - started) * 1000
        if response is not None:
            record.status = response.status
            record.response_bytes = len(response.body)
            record.role = response.role
        self._log.add(record)
        return response

    def _serve_with_faults(self, request: Request, record: RequestRecord) -> Response | None:
        before = self.faults.take(request.method, request.path, after=False)
        if before is not None:
            record.fault = before.kind if before.kind != "status" else str(before.status)
            outcome = self._apply_fault(before)
            if before.kind != "delay":
                return outcome
        response = self._answer(request)
        after = self.faults.take(request.method, request.path, after=True)
        if after is not None:
            record.fault = f"after:{after.kind if after.kind != 'status' else after.status}"
            outcome = self._apply_fault(after)
            if after.kind != "delay":
                return outcome
        return response

    def _answer(self, request: Request) -> Response:
        try:
            return self.api.handle(request)
        except DatabaseUnavailable:
            return connection_lost_response()

    @staticmethod
    def _apply_fault(fault: Fault) -> Response | None:
        if fault.delay_ms:
            time.sleep(fault.delay_ms / 1000)
        if fault.kind != "status":
            return None
        headers = {"Content-Type": "application/json; charset=utf-8", **fault.headers}
        return Response(fault.status, fault.body.encode(), headers)

    # -- admin endpoints (loopback only; not logged, no faults) ------------------------------------
    def _admin(self, request: Request) -> Response:
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/__faults"): lambda _: Response.json(200, [f.to_dict() for f in self.faults.pending()]),
            ("POST", "/__faults"): self._push_faults,
            ("DELETE", "/__faults"): lambda _: self._done(self.faults.clear),
            ("GET", "/__requests"): lambda _: Response.json(200, [r.to_dict() for r in self.requests]),
            ("DELETE", "/__requests"): lambda _: self._done(self.clear_requests),
            ("POST", "/__reload"): lambda _: self._done(self.reload_schema),
        }
        route = routes.get((request.method, request.path.rstrip("/")))
        if route is None:
            return Response.json(404, {"message": "unknown admin path"})
        return route(request)

    @staticmethod
    def _done(action: Callable[[], None]) -> Response:
        action()
        return Response(204)

    def _push_faults(self, request: Request) -> Response:
        try:
            items = json.loads(request.body or b"[]")
            faults = [Fault.from_dict(item) for item in (items if isinstance(items, list) else [items])]
        except (ValueError, TypeError) as exc:
            return Response.json(400, {"message": f"invalid fault list: {exc}"})
        self.faults.push(*faults)
        return Response.json(201, [f.to_dict() for f in faults])


@contextlib.contextmanager
def running_server(authenticator_dsn: str, **options: Any) -> Iterator[RestServer]:
    server = RestServer(authenticator_dsn, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


__all__ = [
    "ApiRequestError",
    "ConnectionPool",
    "Fault",
    "FaultPlan",
    "RequestRecord",
    "RestApi",
    "RestServer",
    "content_range",
    "pg_error_status",
    "running_server",
]
