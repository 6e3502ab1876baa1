"""The Log Analytics data of one World: generated rows in DuckDB, what each workspace shows,
and KQL execution (duckdb-kql) with the service's typed result shape.

Data follows configuration: a row of registry R for table T at time t is in workspace W iff a
diagnostic setting version of R active at t sends T to W in resource-specific mode
(`events.compute_routes`), and it is visible once t <= the emulated now.

Layout in the one in-memory DuckDB database:
- `raw_<table>`: every generated row of every registry generated so far (TenantId empty).
  Registries are generated lazily, the first time a query needs one of their workspaces
  (their AzureMetrics rows once a query reads that table), up to a horizon past now that
  grows when the clock passes it. Rows are written once: copying
  them per workspace costs ~2 us a row (seconds for a large fleet), and every clock advance
  would repeat it. Registry tables hold an integer key per registry (`events.RESOURCE_KEY`,
  in id order) instead of `_ResourceId`, and each batch is written in key order.
- `routes_v<version>`: which registry's rows (id and key) of which table reach which
  workspace when, for one `world.version` (settings, registries and the clock only change
  through a version bump); `activity_v<version>`: which subscription's activity log reaches
  which workspace. A query sees its workspaces through temporary views joining the raw rows
  with these (plus the clock, resource and `timespan` filters), so a version's tables are
  dropped only once no running query uses them. `_ResourceId` (and what follows from it)
  comes from the routing row: a filter on it is evaluated over the routing rows, and the
  join passes the surviving keys' range down to the scan of the raw rows, which then reads
  only the row groups holding those registries. (Filtering the raw rows themselves by id
  cost ~1 s of CPU per query at 10,000 registries.)
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb
import duckdb_kql

from emulator.loganalytics import events, schemas
from emulator.loganalytics.events import Route, naive_utc
from emulator.loganalytics.schemas import AZURE_ACTIVITY, AZURE_METRICS, TABLES
from emulator.loganalytics.translation import Translation, Translator
from emulator.scenario import RegistrySpec

if TYPE_CHECKING:
    from emulator.state import World

DEFAULT_HORIZON = timedelta(hours=24)
# Extend the generated range this long before the clock reaches its end.
HORIZON_MARGIN = timedelta(hours=1)
COLUMN_CACHE_SIZE = 256
METRICS_GRAIN = timedelta(hours=1)
QUERY_COLUMNS: dict[str, list[str]] = {t: schemas.columns(t) for t in TABLES}

assert all(cols[0][0] == "TenantId" for cols in TABLES.values()), "TenantId must come first"


class QueryError(Exception):
    """A failed query, in Log Analytics terms (the routes turn it into the error body)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        inner: dict[str, Any] | None = None,
    ) -> None:
        detail = f" ({details[0].get('message')})" if details else ""
        super().__init__(f"{status} {code}: {message}{detail}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.inner = inner


@dataclass(frozen=True)
class Scope:
    """What a query sees: the union of these workspaces' tables, optionally only rows whose
    _ResourceId is `prefix` or under it (resource-centric queries)."""

    workspaces: tuple[str, ...]  # customer ids, lower case
    prefix: str | None = None


@dataclass
class QueryResult:
    columns: list[tuple[str, str]]  # (name, Kusto type)
    rows: list[list[Any]]
    truncated: bool = False
    stats: dict[str, Any] = field(default_factory=dict)

    def table(self) -> dict[str, Any]:
        return {
            "name": "PrimaryResult",
            "columns": [{"name": n, "type": t} for n, t in self.columns],
            "rows": self.rows,
        }


@dataclass
class _Snapshot:
    version: int
    now: datetime  # aware UTC
    visible_until: datetime  # now minus the ingestion delay
    routes_by_ws: dict[str, list[Route]]
    routes_by_rid: dict[str, list[Route]]
    activity_ws: dict[str, str]  # subscription id -> customer id of its activity workspace


class LogStore:
    """Thread-safe: generation and materialisation happen under one lock; queries run on
    their own DuckDB cursors in parallel."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._lock = threading.RLock()
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET TimeZone='UTC'")
        events.create_raw_tables(self._con)
        self._snapshot: _Snapshot | None = None
        self._known: dict[str, RegistrySpec] = {}
        # registry id -> events.RESOURCE_KEY; handed out in id order, so the auditor's sorted
        # chunks of ids are narrow key ranges (registries known later get later keys).
        self._keys: dict[str, int] = {}
        # registry id -> (the spec, fingerprint) rows were generated for
        self._generated: dict[str, tuple[RegistrySpec, str]] = {}
        # (version, workspace, with AzureMetrics) ready to query
        self._prepared: set[tuple[int, str, bool]] = set()
        self._metrics: set[str] = set()  # registries whose AzureMetrics rows exist
        self._gen_end: datetime | None = None
        self._route_tables: set[int] = set()  # versions whose routes_v/activity_v exist
        self._activity_loaded = 0  # activity records already in raw_AzureActivity
        self._pins: Counter[int] = Counter()
        self.generations = 0  # registries generated (tests check laziness)
        self.translator = Translator(QUERY_COLUMNS)
        self._columns_lock = threading.Lock()
        self._column_cache: OrderedDict[tuple[str, datetime], list[tuple[str, str]]] = OrderedDict()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # ------------------------------------------------------------------ knobs

    def _extra(self, key: str, default: float) -> float:
        value = self.world.knobs.logs.extra.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return default
        return float(value)

    @property
    def horizon(self) -> timedelta:
        return timedelta(hours=self._extra("horizon_hours", DEFAULT_HORIZON.total_seconds() / 3600))

    # ------------------------------------------------------------------ snapshot

    def _snap(self) -> _Snapshot:
        """Routes and the clock as of the world's current version (caller holds _lock)."""
        world = self.world
        with world.lock:
            version = world.version
            if self._snapshot is not None and self._snapshot.version == version:
                return self._snapshot
            now = world.now()
            for reg in world.registries():
                self._known[reg.id.lower()] = reg
            for rid in sorted(r for r in self._known if r not in self._keys):
                self._keys[rid] = len(self._keys)
            delay = timedelta(minutes=self._extra("first_data_delay_minutes", 0.0))
            by_rid: dict[str, list[Route]] = {}
            by_ws: dict[str, list[Route]] = {}

            def resolve(arm_id: str) -> str | None:
                ws = world.workspace_by_id(arm_id)
                return ws.customer_id.lower() if ws is not None else None

            for rid in self._known:
                history = world.setting_history(rid)
                routes = events.compute_routes(rid, history, resolve, delay=delay)
                if routes:
                    by_rid[rid] = routes
                    for r in routes:
                        by_ws.setdefault(r.workspace, []).append(r)
            activity_ws: dict[str, str] = {}
            for sub in world.subscriptions():
                if sub.activity_log_workspace:
                    ws_id = resolve(sub.activity_log_workspace)
                    if ws_id:
                        activity_ws[sub.id.lower()] = ws_id
            records = world.activity_records()
        delay_s = self._extra("ingestion_delay_seconds", 0.0)
        snap = _Snapshot(version, now, now - timedelta(seconds=delay_s), by_ws, by_rid, activity_ws)
        self._extend_horizon(now)
        self._reload_activity(records)
        self._snapshot = snap
        return snap

    def _window(self, since: datetime | None = None) -> events.Window:
        assert self._gen_end is not None
        return events.Window(self.world.scenario.now, self._gen_end, since)

    def _extend_horizon(self, now: datetime) -> None:
        """Generate further ahead when the clock gets near the end of what exists."""
        base = max(now, self.world.scenario.now)
        if self._gen_end is not None and base + HORIZON_MARGIN < self._gen_end:
            return
        end = base + self.horizon
        end = end.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        old, self._gen_end = self._gen_end, end
        if old is not None and self._generated:
            window = self._window(since=old)
            self._generate([spec for spec, _ in self._generated.values()], window)
            self._generate_metrics([self._generated[r][0] for r in self._metrics], window)

    def _reload_activity(self, records: list[Any]) -> None:
        """Append new activity records (the world only ever appends them)."""

        def tenant_of(sub: str) -> str:
            spec = self.world.subscription(sub)
            return spec.tenant_id if spec is not None else self.world.tenant_id

        raw = events.raw_table(AZURE_ACTIVITY)
        if len(records) < self._activity_loaded:
            self._con.execute(f'DELETE FROM "{raw}"')  # noqa: S608 - our table name
            self._activity_loaded = 0
        fresh = records[self._activity_loaded :]
        events.insert_activity(self._con, events.activity_rows(fresh, tenant_of))
        self._activity_loaded = len(records)

    # ------------------------------------------------------------------ generation

    def _tenant(self, reg: RegistrySpec) -> str:
        sub = self.world.subscription(reg.subscription)
        return sub.tenant_id if sub is not None else self.world.tenant_id

    def _in_key_order(self, regs: Iterable[RegistrySpec]) -> list[RegistrySpec]:
        # Rows are written in the order of their generators: in key order, a row group of the
        # raw tables holds a narrow range of keys for a query's scan to skip by.
        return sorted(regs, key=lambda reg: self._keys[reg.id.lower()])

    def _generate(self, regs: Iterable[RegistrySpec], window: events.Window) -> None:
        rows: list[tuple[Any, ...]] = []
        for reg in self._in_key_order(regs):
            key = self._keys[reg.id.lower()]
            rows.extend(events.generator_rows(reg, self._tenant(reg), window, key))
        events.insert_events(self._con, rows)

    def _generate_metrics(self, regs: Iterable[RegistrySpec], window: events.Window) -> None:
        """AzureMetrics rows (from the repository rows: generate those first)."""
        events.insert_metrics(self._con, self._in_key_order(regs), window, self._keys)

    def _ensure_generated(self, registry_ids: Iterable[str], *, metrics: bool) -> None:
        """Login and repository rows of these registries, and their AzureMetrics rows when
        `metrics`: a quarter of the generation time, for a table the auditor never reads.
        Either is a pure function of the registry, whenever it is generated."""
        registry_ids = list(registry_ids)
        todo: list[RegistrySpec] = []
        stale: list[str] = []
        for rid in registry_ids:
            reg = self._known.get(rid)
            if reg is None:
                continue
            done = self._generated.get(rid)
            if done is not None and done[0] is reg:
                continue
            fp = events.fingerprint(reg)
            if done is not None and done[1] == fp:
                self._generated[rid] = (reg, fp)
                continue
            if done is not None:
                stale.append(rid)  # re-created with other generators: start afresh
            todo.append(reg)
            self._generated[rid] = (reg, fp)
        if todo:
            events.delete_registry_rows(self._con, [self._keys[rid] for rid in stale])
            self._metrics.difference_update(stale)
            self._generate(todo, self._window())
            self.generations += len(todo)
        if metrics:
            fresh = [r for r in registry_ids if r in self._generated and r not in self._metrics]
            if fresh:
                self._generate_metrics([self._generated[r][0] for r in fresh], self._window())
                self._metrics.update(fresh)

    # ------------------------------------------------------------------ routing tables

    def _routing(self, snap: _Snapshot) -> None:
        """routes_v<version> and activity_v<version> for this snapshot (once per version)."""
        if snap.version in self._route_tables:
            return
        far = events.FAR_FUTURE
        keys = self._keys
        rows = [
            (
                ws,
                r.registry_id,
                keys[r.registry_id],
                r.table,
                naive_utc(r.start),
                naive_utc(r.end) if r.end else far,
            )
            for ws, routes in snap.routes_by_ws.items()
            for r in routes
        ]
        columns = [
            ("ws", "VARCHAR"),
            ("rid", "VARCHAR"),
            (events.RESOURCE_KEY, "INTEGER"),
            ("tbl", "VARCHAR"),
            ("t0", "TIMESTAMP"),
            ("t1", "TIMESTAMP"),
        ]
        events.load_rows(self._con, "routes_load", columns, rows)
        v = snap.version
        # Version numbers are ints: nothing from outside reaches these names.
        self._con.execute(f"CREATE OR REPLACE TABLE routes_v{v} AS SELECT * FROM routes_load")  # noqa: S608
        self._con.execute("DROP TABLE routes_load")
        acts = sorted(snap.activity_ws.items())
        events.load_rows(self._con, "activity_load", [("sub", "VARCHAR"), ("ws", "VARCHAR")], acts)
        self._con.execute(f"CREATE OR REPLACE TABLE activity_v{v} AS SELECT * FROM activity_load")  # noqa: S608
        self._con.execute("DROP TABLE activity_load")
        self._route_tables.add(v)

    def _collect(self) -> None:
        """Drop routing tables of old versions no query uses any more."""
        current = self._snapshot.version if self._snapshot else -1
        for v in [v for v in self._route_tables if v < current and not self._pins[v]]:
            self._con.execute(f"DROP TABLE IF EXISTS routes_v{v}")
            self._con.execute(f"DROP TABLE IF EXISTS activity_v{v}")
            self._route_tables.discard(v)
        self._prepared = {p for p in self._prepared if p[0] >= current}

    def _prepare(self, snap: _Snapshot, workspaces: Iterable[str], *, metrics: bool) -> None:
        """Rows generated (AzureMetrics only with `metrics`) and routing tables ready for a
        query over these workspaces."""
        ready = {(v, ws) for v, ws, m in self._prepared if m or not metrics}
        fresh = [ws for ws in workspaces if (snap.version, ws) not in ready]
        if fresh:
            needed = {r.registry_id for ws in fresh for r in snap.routes_by_ws.get(ws, [])}
            self._ensure_generated(needed, metrics=metrics)
            self._prepared.update((snap.version, ws, metrics) for ws in fresh)
        self._routing(snap)

    def warm(self, workspaces: Iterable[str] | None = None) -> None:
        """Generate now what queries over these workspaces (default: all) will need."""
        with self._lock:
            snap = self._snap()
            chosen = workspaces if workspaces is not None else snap.routes_by_ws
            self._prepare(snap, [w.lower() for w in chosen], metrics=True)

    # ------------------------------------------------------------------ scopes

    def workspace_scope(self, customer_ids: Iterable[str]) -> Scope:
        return Scope(tuple(dict.fromkeys(c.lower() for c in customer_ids)))

    def resource_scope(self, resource_id: str) -> Scope | None:
        """Rows of a resource (or everything under a subscription/resource group) in every
        workspace they reach; a workspace's own ARM id means that workspace. None when the
        id names nothing in the estate."""
        rid = "/" + resource_id.strip("/").lower()
        ws = self.world.workspace_by_id(rid)
        if ws is not None:
            return Scope((ws.customer_id.lower(),))
        with self._lock:
            snap = self._snap()
            under = [r for r in snap.routes_by_rid if r == rid or r.startswith(rid + "/")]
            known = self.world.registry(rid) is not None or any(
                r == rid or r.startswith(rid + "/") for r in self._known
            )
        parts = rid.split("/")
        sub = parts[2] if len(parts) > 2 and parts[1] == "subscriptions" else ""
        if not known and not (len(parts) == 3 and self.world.subscription(sub) is not None):
            return None
        found = {route.workspace for r in under for route in snap.routes_by_rid[r]}
        if sub in snap.activity_ws:
            found.add(snap.activity_ws[sub])
        return Scope(tuple(sorted(found)), prefix=rid)

    # ------------------------------------------------------------------ queries

    def query(
        self,
        scope: Scope,
        kql: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        max_rows: int = 500_000,
    ) -> QueryResult:
        """Run `kql` over `scope`; `start`/`end` (the request's timespan) filter TimeGenerated
        of every table first. Raises QueryError for what the engine cannot run."""
        began = time.perf_counter()
        with self._lock:
            snap = self._snap()
        translation = self._translate(kql, snap.now)
        # Only the tables the SQL may read get a view (a millisecond or two each) and, for
        # AzureMetrics, rows.
        text = translation.sql.lower()
        tables = [t for t in TABLES if t.lower() in text]
        with self._lock:
            self._prepare(snap, scope.workspaces, metrics=AZURE_METRICS in tables)
            self._pins[snap.version] += 1
            cur = self._con.cursor()
        try:
            cur.execute("SET TimeZone='UTC'")
            for table in tables:
                cur.execute(_view_sql(table, snap, scope, start, end))
            return self._run(cur, translation, max_rows, began)
        finally:
            cur.close()
            with self._lock:
                self._pins[snap.version] -= 1
                if not self._pins[snap.version]:
                    del self._pins[snap.version]
                self._collect()

    def _translate(self, kql: str, now: datetime) -> Translation:
        try:
            return self.translator.to_sql(kql, naive_utc(now))
        except duckdb_kql.KqlUnsupportedError as exc:
            raise _engine_error("UnsupportedQueryError", exc) from None
        except duckdb_kql.KqlError as exc:
            raise _engine_error("SemanticError", exc) from None

    def _columns(
        self, cur: duckdb.DuckDBPyConnection, translation: Translation
    ) -> list[tuple[str, str]]:
        """(name, DuckDB type) of the result's columns. Binding a 30 KB query costs about as
        much as running it, so they are kept per shape of query (same tables and columns)."""
        shape = translation.shape
        with self._columns_lock:
            known = self._column_cache.get(shape)
            if known is not None:
                self._column_cache.move_to_end(shape)
                return known
        sql, params = translation.sql, translation.parameters
        rel = cur.sql(sql, params=params) if params else cur.sql(sql)
        columns = [(name, str(t)) for name, t in zip(rel.columns, rel.types, strict=True)]
        if params is None:  # parameter values could change a type
            with self._columns_lock:
                self._column_cache[shape] = columns
                while len(self._column_cache) > COLUMN_CACHE_SIZE:
                    self._column_cache.popitem(last=False)
        return columns

    def _run(
        self,
        cur: duckdb.DuckDBPyConnection,
        translation: Translation,
        max_rows: int,
        began: float,
    ) -> QueryResult:
        sql, params = translation.sql, translation.parameters
        try:
            columns = self._columns(cur, translation)
            exprs = ", ".join(_output_expr(name, duck) for name, duck in columns)
            # duckdb-kql's own SQL, wrapped to render values the way Log Analytics types them.
            wrapped = f"SELECT {exprs} FROM ({sql}) AS q LIMIT {int(max_rows) + 1}"  # noqa: S608
            raw_rows = cur.execute(wrapped, params).fetchall()
        except duckdb.Error as exc:
            raise _engine_error("SemanticError", exc) from None
        kinds = [_kusto_type(duck) for _, duck in columns]
        truncated = len(raw_rows) > max_rows
        rows = _json_rows(raw_rows[:max_rows], kinds)
        elapsed = time.perf_counter() - began
        return QueryResult(
            columns=[(name, kind) for (name, _), kind in zip(columns, kinds, strict=True)],
            rows=rows,
            truncated=truncated,
            stats={"executionTime": round(elapsed, 6), "rows": len(rows)},
        )


# --------------------------------------------------------------------------- helpers


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _view_sql(
    table: str, snap: _Snapshot, scope: Scope, start: datetime | None, end: datetime | None
) -> str:
    """The per-query view of one table: its rows in the scope's workspaces, visible by now,
    under the scope's resource and inside the request's timespan."""
    v = snap.version
    until = snap.visible_until
    if table == AZURE_METRICS:
        until -= METRICS_GRAIN  # an hourly aggregate arrives once its hour is over
    conds = [f"r.TimeGenerated <= {_sql_ts(until)}"]
    if scope.prefix is not None:
        p = _sql_str(scope.prefix)
        rid = "r._ResourceId" if table == AZURE_ACTIVITY else events.ROUTE_RESOURCE_ID
        conds.append(f"({rid} = {p} OR starts_with({rid}, {p} || '/'))")
    if start is not None:
        conds.append(f"r.TimeGenerated >= {_sql_ts(start)}")
    if end is not None:
        conds.append(f"r.TimeGenerated <= {_sql_ts(end)}")
    raw = events.raw_table(table)
    key = events.RESOURCE_KEY
    view = f'CREATE OR REPLACE TEMP VIEW "{table}" AS SELECT'
    if not scope.workspaces:
        nothing = "(SELECT NULL::VARCHAR AS rid) w"  # for the columns read from a route
        return f"""{view} {events.select_list(table, "''")} FROM "{raw}" r, {nothing} WHERE false"""
    wss = ", ".join(_sql_str(w) for w in scope.workspaces)
    if table == AZURE_ACTIVITY:
        join = f"JOIN activity_v{v} w ON w.sub = r._SubscriptionId AND w.ws IN ({wss})"
    else:
        join = (
            f"JOIN routes_v{v} w ON w.{key} = r.{key} AND w.tbl = {_sql_str(table)} "
            f"AND w.ws IN ({wss}) AND r.TimeGenerated >= w.t0 AND r.TimeGenerated < w.t1"
        )
    columns = events.select_list(table, "w.ws")
    return f"""{view} {columns} FROM "{raw}" r {join} WHERE {" AND ".join(conds)}"""


def _sql_ts(value: datetime) -> str:
    return f"TIMESTAMP '{naive_utc(value).isoformat(' ')}'"


_INT = {"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT"}
_LONG = {"BIGINT", "UINTEGER", "UBIGINT", "HUGEINT", "UHUGEINT"}
_REAL = {"FLOAT", "DOUBLE", "REAL"}


def _kusto_type(duck: str) -> str:
    """The Kusto column type Log Analytics would report for a DuckDB result type."""
    t = duck.upper()
    if t == "BOOLEAN":
        return "bool"
    if t in _INT:
        return "int"
    if t in _LONG:
        return "long"
    if t in _REAL or t.startswith("DECIMAL"):
        return "real"
    if t.startswith("TIMESTAMP") or t == "DATE":
        return "datetime"
    if t == "INTERVAL":
        return "timespan"
    if t == "UUID":
        return "guid"
    if t == "JSON" or t.endswith("]") or t.startswith(("STRUCT", "MAP", "UNION")):
        return "dynamic"
    return "string"


def _output_expr(name: str, duck: str) -> str:
    col = '"' + name.replace('"', '""') + '"'
    kind = _kusto_type(duck)
    if kind == "dynamic" and duck.upper() != "JSON":
        return f"to_json({col})::VARCHAR AS {col}"
    if kind in ("dynamic", "guid") or (kind == "string" and duck.upper() != "VARCHAR"):
        return f"{col}::VARCHAR AS {col}"
    if kind == "real" and duck.upper().startswith("DECIMAL"):
        return f"{col}::DOUBLE AS {col}"
    return col


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a Z, fractional seconds only when present (as Log Analytics)."""
    v = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if v.year >= 1000:  # isoformat pads years to four digits, strftime's %Y only from 1000 on
        text = v.isoformat(timespec="microseconds")  # several times cheaper than strftime
        return (text.rstrip("0") if v.microsecond else text[:19]) + "Z"
    text = v.strftime("%Y-%m-%dT%H:%M:%S")
    if v.microsecond:
        text += f".{v.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_timespan(value: timedelta) -> str:
    """Kusto's [-][d.]hh:mm:ss[.fffffff]."""
    total_us = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)
    days, rest = divmod(total_us, 86_400_000_000)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    text = f"{sign}{f'{days}.' if days else ''}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + (f".{micros * 10:07d}" if micros else "")


# Kinds whose values DuckDB already hands over as JSON needs them: ints, bools, and text
# (dynamic and guid columns are cast to VARCHAR by _output_expr); None stays None.
_AS_IS = frozenset({"bool", "int", "long", "dynamic", "guid"})


def _json_rows(raw_rows: list[tuple[Any, ...]], kinds: list[str]) -> list[list[Any]]:
    """Rows as the response holds them (see _json_value), converting only what needs it."""
    convert = [(i, kind) for i, kind in enumerate(kinds) if kind not in _AS_IS]
    rows = [list(row) for row in raw_rows]
    for i, kind in convert:
        for row in rows:
            value = row[i]
            if type(value) is datetime:
                row[i] = format_datetime(value)
            elif kind != "string" or not isinstance(value, str):
                row[i] = _json_value(value, kind)
    return rows


def _json_value(value: Any, kind: str) -> Any:
    if value is None:
        # Kusto strings are never null (duckdb-kql gives null, e.g. for a column that only
        # some tables of a union have).
        return "" if kind == "string" else None
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return format_datetime(datetime(value.year, value.month, value.day))
    if isinstance(value, timedelta):
        return format_timespan(value)
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _engine_error(code: str, exc: Exception) -> QueryError:
    """An error of the emulator's engine for a query Kusto itself accepted."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = (
        f"The emulator's KQL engine (duckdb-kql) cannot run this query: {text}. The query is "
        f"valid Kusto; rephrase it with operators duckdb-kql supports."
        if code == "UnsupportedQueryError"
        else f"The emulator's KQL engine (duckdb-kql) rejected the query: {text}"
    )
    return QueryError(
        400,
        "BadArgumentError",
        "The request had some invalid properties",
        details=[{"code": code, "message": message}],
        inner={"code": code, "message": message},
    )
