"""Realistic, deterministic log rows for the emulated registries, and where they are routed.

Rows are generated inside DuckDB with SQL (no per-row Python), so a fleet of thousands of
registries costs seconds, not minutes. Every random draw is `hash(generator seed, hour, event,
draw)`, which makes the rows a pure function of the scenario (for one DuckDB version: its
hash function is not a stable format): the same registry and generator give the same rows in
every run, and extending the generated time range (when the emulated clock moves past it) adds
rows without changing the earlier ones.

Event times follow a diurnal curve around `per_hour` (busier in the European afternoon), start
`hours` before the scenario's `now` (never before the registry was created), continue past
`now` up to the generation horizon (so rows appear as tests advance the clock), and stop at
`silent_since`. Which rows a workspace shows is decided separately by `compute_routes`: the
diagnostic settings that were active when each row was written.

Values the public docs do not pin down (azure-facts §1, UNVERIFIED; queries should compare
with `=~`/`contains`):
- ContainerRegistryLoginEvents.OperationName is always "Login"; ResultDescription "200", or
  "401" for a failed login; ResultType "Succeeded"/"Failed"; JwtId is empty on failures.
- ContainerRegistryRepositoryEvents.OperationName is "Pull", "Push", "Delete", "Untag",
  "PurgeTag" or "PurgeManifest"; ResultDescription "200" (pull), "201" (push), "202"
  (delete/untag/purge), failures "401"/"403"/"404".
- Identity holds what the caller authenticated as: a user's UPN, a service principal's or
  managed identity's GUID (whatever the scenario lists), the registry name for the admin user
  (scenario identity "admin" or "$admin"), and "<anonymous>" for anonymous pulls, which have no
  login row. Admin-enabled registries get ~10% admin-user logins on top of the listed ones.
- AzureMetrics rows are hourly (TimeGrain "PT1H", visible once the hour is over): StorageUsed
  every hour, plus Total/Successful Pull/Push counts (from the repository rows) in hours with
  repository events.
- AzureActivity: each activity record gives a "Started"/"Start" row and, up to 2 s later, the
  final status; ResourceId upper case, _ResourceId lower case, Properties/Claims/Authorization
  as JSON text with `_d` dynamic twins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from emulator import activity
from emulator.loganalytics import schemas
from emulator.loganalytics.schemas import (
    AZURE_ACTIVITY,
    AZURE_METRICS,
    LOGIN_EVENTS,
    REPOSITORY_EVENTS,
)
from emulator.scenario import CATEGORY_GROUPS, LOG_CATEGORIES, RegistrySpec

if TYPE_CHECKING:
    import duckdb

    from emulator.state import ActivityRecord, SettingVersion

ANONYMOUS_IDENTITY = "<anonymous>"
ADMIN_PLACEHOLDERS = frozenset({"admin", "$admin"})
LOGIN_OPERATION = "Login"
REPOSITORY_OPERATIONS = ("Pull", "Push", "Delete", "Untag", "PurgeTag", "PurgeManifest")
ANONYMOUS_PULL_SHARE = 0.3  # of pulls, on registries with anonymous pull enabled
ADMIN_LOGIN_SHARE = 0.1  # of logins, on registries with the admin user enabled
DEFAULT_METRICS_HOURS = 48.0
FAR_FUTURE = datetime(9999, 1, 1)

USER_AGENTS = [
    "docker/24.0.7 go/go1.20.10 git-commit/311b9ff kernel/5.15.0-1052-azure os/linux "
    "arch/amd64 UpstreamClient(Docker-Client/24.0.7 \\(linux\\))",
    "containerd/v1.7.15-1 (linux; amd64)",
    "azure-cli/2.61.0 (DEB) azsdk-python-containerregistry/1.2.0 Python/3.11.8 "
    "(Linux-5.15.0-1064-azure-x86_64-with-glibc2.35)",
    "docker/26.1.3 go/go1.21.10 git-commit/8e96db1 kernel/6.6.26-linuxkit os/linux "
    "arch/arm64 UpstreamClient(Docker-Client/26.1.3 \\(darwin\\))",
    "oras-go/2.5.0",
    "Helm/3.14.4",  # last: only helm chart repositories use it
]

# --------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Route:
    """Rows of `table` for one registry reach `workspace` (customer id) in [start, end)."""

    registry_id: str  # lower case, as _ResourceId
    table: str
    workspace: str  # customer id, lower case
    start: datetime  # aware UTC
    end: datetime | None  # None: still active


def enabled_tables(properties: dict[str, Any]) -> set[str]:
    """Tables a setting (REST properties) sends to its workspace in resource-specific mode.

    AzureDiagnostics mode (destination type null) sends to the AzureDiagnostics table, which is
    not modelled: such a setting routes nothing here. Names compare case-insensitively."""
    dest = properties.get("logAnalyticsDestinationType")
    if not properties.get("workspaceId") or not isinstance(dest, str):
        return set()
    if dest.lower() != "dedicated":
        return set()
    out: set[str] = set()
    groups = {g.lower(): cats for g, cats in CATEGORY_GROUPS.items()}
    categories = {c.lower(): c for c in LOG_CATEGORIES}
    for entry in properties.get("logs") or []:
        if not isinstance(entry, dict) or entry.get("enabled") is not True:
            continue
        cat, group = entry.get("category"), entry.get("categoryGroup")
        if isinstance(cat, str) and cat.lower() in categories:
            out.add(categories[cat.lower()])
        elif isinstance(group, str) and group.lower() in groups:
            out.update(groups[group.lower()])
    for entry in properties.get("metrics") or []:
        if (
            isinstance(entry, dict)
            and entry.get("enabled") is True
            and str(entry.get("category", "")).lower() == "allmetrics"
        ):
            out.add(AZURE_METRICS)
    return out


def compute_routes(
    registry_id: str,
    history: Iterable[SettingVersion],
    resolve_workspace: Callable[[str], str | None],
    *,
    delay: timedelta = timedelta(0),
) -> list[Route]:
    """Routes of one registry from its setting history, overlapping intervals merged (two
    settings sending one table to one workspace do not duplicate rows). `resolve_workspace`
    maps a workspace ARM id to its customer id, or None for a workspace outside the estate
    (another tenant): rows sent there are not queryable here. `delay` postpones the first
    data after each setting version starts (Azure: up to 90 minutes)."""
    spans: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
    for version in history:
        tables = enabled_tables(version.properties)
        if not tables:
            continue
        ws = resolve_workspace(str(version.properties["workspaceId"]))
        if ws is None:
            continue
        start = version.start + delay
        end = version.end.astimezone(UTC) if version.end is not None else None
        end_key = end or FAR_FUTURE.replace(tzinfo=UTC)
        if start >= end_key:
            continue
        for table in tables:
            spans.setdefault((table, ws.lower()), []).append((start, end_key))
    rid = registry_id.lower()
    routes: list[Route] = []
    for (table, ws), items in sorted(spans.items()):
        items.sort()
        merged = [list(items[0])]
        for s, e in items[1:]:
            if s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        for s, e in merged:
            routes.append(Route(rid, table, ws, s, None if e.year == FAR_FUTURE.year else e))
    return routes


# --------------------------------------------------------------------------- generators


def naive_utc(value: datetime) -> datetime:
    """DuckDB TIMESTAMP values are naive UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


_seed = activity.seed


def _resolve_identity(identity: str, registry: RegistrySpec) -> str:
    return registry.name if identity.lower() in ADMIN_PLACEHOLDERS else identity


def fingerprint(registry: RegistrySpec) -> str:
    """Changes when anything the generated rows depend on changes."""
    parts = [
        registry.name,
        registry.subscription,
        registry.resource_group,
        registry.location,
        registry.admin_user_enabled,
        registry.anonymous_pull_enabled,
        registry.created_at,
        [vars(g) for g in registry.events],
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Window:
    """What to generate: each generator's events from `hours` before `scenario_now` up to
    `end` (the generation horizon), only those at or after `since` when given (extending an
    earlier generation without repeating it)."""

    scenario_now: datetime
    end: datetime
    since: datetime | None = None

    def clip(self, start: datetime) -> datetime:
        return max(start, self.since) if self.since is not None else start


_GEN_COLUMNS: list[tuple[str, str]] = [
    ("gid", "BIGINT"),
    ("rk", "INTEGER"),
    ("rid", "VARCHAR"),
    ("name", "VARCHAR"),
    ("sub", "VARCHAR"),
    ("loc", "VARCHAR"),
    ("utenant", "VARCHAR"),
    ("kind", "VARCHAR"),
    ("burst", "BOOLEAN"),
    ("per_hour", "DOUBLE"),
    ("cnt", "BIGINT"),
    ("t0", "TIMESTAMP"),
    ("t1", "TIMESTAMP"),
    ("failure_rate", "DOUBLE"),
    ("idents", "VARCHAR[]"),
    ("ips", "VARCHAR[]"),
    ("repos", "VARCHAR[]"),
    ("c_pull", "DOUBLE"),
    ("c_push", "DOUBLE"),
    ("c_delete", "DOUBLE"),
    ("c_untag", "DOUBLE"),
    ("anon", "BOOLEAN"),
    ("admin", "BOOLEAN"),
]


def generator_rows(
    registry: RegistrySpec, user_tenant: str, window: Window, key: int
) -> list[tuple[Any, ...]]:
    """Parameter rows (in _GEN_COLUMNS order) for every event generator and burst of
    `registry`; user_tenant is the Entra tenant written to UserTenantId, `key` the registry's
    key in the raw tables (see RESOURCE_KEY)."""
    rows: list[tuple[Any, ...]] = []
    rid = registry.id.lower()
    created = registry.created_at
    for index, gen in enumerate(registry.events):
        total = sum(gen.mix.values()) or 1.0
        cumulative, acc = {}, 0.0
        for op in ("pull", "push", "delete", "untag"):
            acc += gen.mix.get(op, 0.0) / total
            cumulative[f"c_{op}"] = acc
        common = {
            "rk": key,
            "rid": rid,
            "name": registry.name,
            "sub": registry.subscription.lower(),
            "loc": registry.location,
            "utenant": user_tenant,
            "kind": gen.kind,
            "failure_rate": gen.failure_rate,
            "repos": list(gen.repositories),
            "anon": registry.anonymous_pull_enabled,
            "admin": registry.admin_user_enabled,
            **cumulative,
        }
        gid = _seed(rid, index, gen.kind, gen.seed)
        t0 = window.scenario_now - timedelta(hours=gen.hours)
        if created is not None:
            t0 = max(t0, created)
        t0 = window.clip(t0)
        t1 = window.end if gen.silent_since is None else min(window.end, gen.silent_since)
        if t1 > t0 and gen.per_hour > 0:
            identities = [_resolve_identity(i, registry) for i in gen.identities]
            rows.append(
                _gen_row(common, gid=gid, burst=False, per_hour=gen.per_hour, cnt=0, t0=t0,
                         t1=t1, idents=identities, ips=list(gen.ips))
            )  # fmt: skip
        if gen.burst:
            b = gen.burst
            end = window.scenario_now - timedelta(hours=float(b["agoHours"]))
            start = end - timedelta(minutes=float(b["minutes"]))
            if gen.silent_since is not None:
                end = min(end, gen.silent_since)
            if created is not None:
                start = max(start, created)
            if window.since is not None and start < window.since:
                continue  # generated with the earlier window
            if end > start and int(b["count"]) > 0:
                identity = _resolve_identity(str(b["identity"]), registry)
                rows.append(
                    _gen_row(common, gid=_seed(gid, "burst"), burst=True, per_hour=0.0,
                             cnt=int(b["count"]), t0=start, t1=end, idents=[identity],
                             ips=[str(b["ip"])])
                )  # fmt: skip
    return rows


def _gen_row(common: dict[str, Any], **fields: Any) -> tuple[Any, ...]:
    row = {**common, **fields, "t0": naive_utc(fields["t0"]), "t1": naive_utc(fields["t1"])}
    return tuple(row[name] for name, _ in _GEN_COLUMNS)


# --------------------------------------------------------------------------- SQL

_MACROS = """
CREATE OR REPLACE MACRO u01(x) AS (x >> 11)::DOUBLE / 9007199254740992.0;
CREATE OR REPLACE MACRO draw(gid, h, j, k) AS u01(hash(gid, h, j, k));
CREATE OR REPLACE MACRO guid_of(a, b) AS printf('%08x-%04x-4%03x-%04x-%012x',
    a >> 32, (a >> 16) & 65535, a & 4095, ((b >> 48) & 16383) | 32768, b & 281474976710655);
CREATE OR REPLACE MACRO sha256_of(a) AS printf('sha256:%016x%016x%016x%016x',
    hash(a, 1), hash(a, 2), hash(a, 3), hash(a, 4));
CREATE OR REPLACE MACRO pick(xs, u) AS xs[1 + least(floor(len(xs) * u)::BIGINT, len(xs) - 1)];
"""

# Every generated event: normal generators per hour bucket, bursts evenly over their minutes.
# Unnesting in the select list (not a lateral join) keeps the rows in the order of `gens`,
# which is key order (see RESOURCE_KEY), bursts last.
_EVENTS_SQL = """
WITH hours AS (
    SELECT *, unnest(range(floor(epoch(t0) / 3600)::BIGINT, ceil(epoch(t1) / 3600)::BIGINT)) AS h
    FROM gens
    WHERE NOT burst AND per_hour > 0
), counts AS (
    SELECT *, floor(per_hour * (1 + 0.6 * cos(2 * pi() * ((h % 24) - 14) / 24))
                    + draw(gid, h, -1, 0))::BIGINT AS n
    FROM hours
), ev AS (
    SELECT *, make_timestamp(((h * 3600 + draw(gid, h, j, 1) * 3600) * 1000000)::BIGINT) AS ts
    FROM (SELECT * EXCLUDE (n), unnest(range(n)) AS j FROM counts)
    UNION ALL
    SELECT *, make_timestamp((epoch_us(t0) + (j + draw(gid, 0, j, 1)) / cnt
                              * (epoch_us(t1) - epoch_us(t0)))::BIGINT) AS ts
    FROM (SELECT *, 0 AS h, unnest(range(cnt)) AS j FROM gens WHERE burst)
)
SELECT *, burst OR draw(gid, h, j, 4) < failure_rate AS failed
FROM ev
WHERE ts >= t0 AND ts < t1 AND kind = $kind
"""

_LOGIN_SELECT = f"""
WITH events AS (@EVENTS@)
SELECT
    ts AS TimeGenerated,
    '{LOGIN_OPERATION}' AS OperationName,
    CASE WHEN NOT burst AND admin AND draw(gid, h, j, 2) < {ADMIN_LOGIN_SHARE} THEN name
         ELSE pick(idents, draw(gid, h, j, 3) ** 2) END AS Identity,
    loc AS Region,
    CASE WHEN failed THEN 'Failed' ELSE 'Succeeded' END AS ResultType,
    CASE WHEN failed THEN '401' ELSE '200' END AS ResultDescription,
    pick(ips, draw(gid, h, j, 6) ** 2) AS CallerIpAddress,
    (CASE WHEN failed THEN 3 + floor(draw(gid, h, j, 7) * 25)
          ELSE 18 + floor(-ln(1 - draw(gid, h, j, 7)) * 90) END)::BIGINT::VARCHAR AS DurationMs,
    rk,
    (780 + floor(draw(gid, h, j, 9) * 260))::DOUBLE AS _BilledSize,
    (1 + least(floor(draw(gid, h, j, 8) ** 2 * 5), 4))::TINYINT AS ua,
    gid, h, j
FROM events
"""  # noqa: S608 - constants only; values are bound parameters

_REPOSITORY_SELECT = f"""
WITH events AS (@EVENTS@), ops AS (
    SELECT *,
        CASE WHEN op_u < c_pull THEN 'Pull'
             WHEN op_u < c_push THEN 'Push'
             WHEN op_u < c_delete THEN 'Delete'
             WHEN op_u < c_untag THEN 'Untag'
             WHEN draw(gid, h, j, 11) < 0.5 THEN 'PurgeTag'
             ELSE 'PurgeManifest' END AS op,
        pick(repos, draw(gid, h, j, 13) ** 2) AS repo,
        floor(draw(gid, h, j, 14) ** 2 * 8)::BIGINT AS tag_no
    FROM (SELECT *, CASE WHEN burst THEN 0.0 ELSE draw(gid, h, j, 10) END AS op_u FROM events)
), named AS (
    SELECT *,
        op = 'Pull' AND NOT burst AND anon
            AND draw(gid, h, j, 12) < {ANONYMOUS_PULL_SHARE} AS anonymous,
        CASE WHEN op IN ('Delete', 'PurgeManifest') THEN ''
             WHEN tag_no = 0 THEN 'latest'
             ELSE '1.' || (hash(rid, repo) % 12)::VARCHAR || '.' || tag_no::VARCHAR END AS tag,
        repo ILIKE '%helm%' OR repo ILIKE '%chart%' AS helm,
        draw(gid, h, j, 15) AS media_u
    FROM ops
)
SELECT
    ts AS TimeGenerated,
    op AS OperationName,
    CASE WHEN anonymous THEN '{ANONYMOUS_IDENTITY}'
         ELSE pick(idents, draw(gid, h, j, 3) ** 2) END AS Identity,
    repo AS Repository,
    tag AS Tag,
    CASE WHEN helm OR (media_u >= 0.6 AND media_u < 0.9)
              THEN 'application/vnd.oci.image.manifest.v1+json'
         WHEN media_u >= 0.9 THEN 'application/vnd.oci.image.index.v1+json'
         ELSE 'application/vnd.docker.distribution.manifest.v2+json' END AS MediaType,
    CASE WHEN helm THEN 'application/vnd.cncf.helm.config.v1+json'
         WHEN media_u >= 0.6 AND media_u < 0.9 THEN 'application/vnd.oci.image.config.v1+json'
         ELSE '' END AS ArtifactType,
    -- the manifest's size: the same for every pull of one tag
    CASE WHEN op IN ('Pull', 'Push') THEN 420 + hash(rid, repo, tag, tag_no, 5) % 11800
         ELSE 0 END::INTEGER AS Size,
    loc AS Region,
    CASE WHEN failed THEN 'Failed' ELSE 'Succeeded' END AS ResultType,
    CASE WHEN failed AND burst THEN '401'
         WHEN failed THEN CASE WHEN draw(gid, h, j, 17) < 0.6 THEN '401'
                               WHEN draw(gid, h, j, 17) < 0.8 THEN '403' ELSE '404' END
         WHEN op = 'Pull' THEN '200'
         WHEN op = 'Push' THEN '201'
         ELSE '202' END AS ResultDescription,
    pick(ips, draw(gid, h, j, 6) ** 2) AS CallerIpAddress,
    (CASE WHEN failed THEN 4 + floor(draw(gid, h, j, 7) * 30)
          WHEN op = 'Push' THEN 150 + floor(-ln(1 - draw(gid, h, j, 7)) * 900)
          ELSE 12 + floor(-ln(1 - draw(gid, h, j, 7)) * 120) END)::BIGINT::VARCHAR AS DurationMs,
    CASE WHEN anonymous THEN '' ELSE utenant END AS UserTenantId,
    rk,
    (900 + floor(draw(gid, h, j, 9) * 400))::DOUBLE AS _BilledSize,
    (CASE WHEN helm THEN {len(USER_AGENTS)}
          ELSE 1 + least(floor(draw(gid, h, j, 8) ** 2 * 5), 4) END)::TINYINT AS ua,
    gid, h, j
FROM named
"""  # noqa: S608 - constants only; values are bound parameters

# StorageUsed rows come out in the order of `mgens` (key order), the activity counts (from an
# aggregate) in no particular order.
_METRICS_SQL = f"""
WITH hours AS (
    SELECT *, unnest(range(floor(epoch(t0) / 3600)::BIGINT, ceil(epoch(t1) / 3600)::BIGINT)) AS h
    FROM mgens
), storage AS (
    SELECT rid, rk, name, rg, sub, h, 'StorageUsed' AS metric, 'Bytes' AS unit,
           -- 0.5-20 GB, growing slowly through the year
           floor((5e8 + u01(hash(rid, 'size')) * 2e10) * (1 + 0.00005 * (h % 8760)))
               AS value, 1.0 AS samples
    FROM hours
), counts AS (
    SELECT r.rk, date_trunc('hour', r.TimeGenerated) AS hour,
           count(*) FILTER (WHERE r.OperationName = 'Pull') AS pulls,
           count(*) FILTER (WHERE r.OperationName = 'Pull'
                            AND r.ResultDescription LIKE '2%') AS ok_pulls,
           count(*) FILTER (WHERE r.OperationName = 'Push') AS pushes,
           count(*) FILTER (WHERE r.OperationName = 'Push'
                            AND r.ResultDescription LIKE '2%') AS ok_pushes
    FROM raw_{REPOSITORY_EVENTS} r
    WHERE r.rk IN (SELECT rk FROM mgens)
    GROUP BY ALL
), activity AS (
    SELECT m.rid, m.rk, m.name, m.rg, m.sub, (epoch(c.hour) / 3600)::BIGINT AS h, v.metric,
           'Count' AS unit, v.value, v.value AS samples
    FROM counts c JOIN mgens m ON m.rk = c.rk
         AND c.hour >= date_trunc('hour', m.t0) AND c.hour < m.t1,
         LATERAL (VALUES ('TotalPullCount', c.pulls::DOUBLE),
                         ('SuccessfulPullCount', c.ok_pulls::DOUBLE),
                         ('TotalPushCount', c.pushes::DOUBLE),
                         ('SuccessfulPushCount', c.ok_pushes::DOUBLE)) v(metric, value)
    WHERE v.value > 0
), rows_ AS (
    SELECT * FROM storage UNION ALL SELECT * FROM activity
)
SELECT
    make_timestamp(h * 3600 * 1000000) AS TimeGenerated,
    upper('/subscriptions/' || sub || '/resourcegroups/' || rg
          || '/providers/microsoft.containerregistry/registries/' || name) AS ResourceId,
    'Metric' AS OperationName, '' AS OperationVersion, 'AllMetrics' AS Category,
    '' AS ResultType, '' AS ResultSignature, '' AS ResultDescription,
    NULL::BIGINT AS DurationMs, '' AS CallerIpAddress, '' AS CorrelationId,
    upper(name) AS Resource, upper(rg) AS ResourceGroup,
    'MICROSOFT.CONTAINERREGISTRY' AS ResourceProvider, sub AS SubscriptionId,
    metric AS MetricName, value AS Total, samples AS Count, value AS Maximum, value AS Minimum,
    CASE WHEN samples > 0 THEN value / samples ELSE value END AS Average,
    'PT1H' AS TimeGrain, unit AS UnitName,
    '' AS Confidence, '' AS Description, '' AS FirstReportedDateTime,
    '' AS IndicatorThreatType, '' AS IsActive, '' AS LastReportedDateTime, '' AS MaliciousIP,
    '' AS RemoteIPCountry, NULL::DOUBLE AS RemoteIPLatitude, NULL::DOUBLE AS RemoteIPLongitude,
    NULL::INTEGER AS Severity, '' AS TLPLevel,
    rk,
    (520 + floor(u01(hash(rid, h, metric)) * 60))::DOUBLE AS _BilledSize
FROM rows_
"""  # noqa: S608 - constants only; values are bound parameters


def raw_table(table: str) -> str:
    return f"raw_{table}"


def _agents_sql() -> str:
    return "[" + ", ".join("'" + a.replace("'", "''") + "'" for a in USER_AGENTS) + "]"


# Registry tables store a small integer key per registry instead of its ~130-character
# _ResourceId; the id comes from the routing row `w` each raw row is joined with
# (store._view_sql). Filters on the id (every `_ResourceId in~ (...)`) then run over a few
# thousand routing rows instead of millions of events, and the join hands the matching keys'
# range to the scan of the raw rows, stored in key order.
RESOURCE_KEY = "rk"
ROUTE_RESOURCE_ID = "w.rid"

# Columns computed when a table is read instead of stored with every row: constants, what
# follows from _ResourceId, and the ids and digests drawn for each event from its (generator,
# hour, index) as generation would (those take half the time of generating the rows, and few
# queries read them). Generation writes about half as much this way.
_CORRELATION_ID = "guid_of(hash(r.gid, r.h, r.j, 22), hash(r.gid, r.h, r.j, 23))"
_COMMON_DERIVED = {
    "SourceSystem": "'Azure'",
    "_ResourceId": ROUTE_RESOURCE_ID,
    "_SubscriptionId": f"split_part({ROUTE_RESOURCE_ID}, '/', 3)",
}
DERIVED: dict[str, dict[str, str]] = {
    LOGIN_EVENTS: {
        **_COMMON_DERIVED,
        "Category": f"'{LOGIN_EVENTS}'",
        "Type": f"'{LOGIN_EVENTS}'",
        # empty for failed logins
        "JwtId": "CASE WHEN r.ResultType = 'Failed' THEN '' "
        "ELSE guid_of(hash(r.gid, r.h, r.j, 20), hash(r.gid, r.h, r.j, 21)) END",
        "CorrelationId": _CORRELATION_ID,
        "_IsBillable": "'True'",
        "LoginServer": f"split_part({ROUTE_RESOURCE_ID}, '/', 9) || '.azurecr.io'",
        "UserAgent": f"{_agents_sql()}[r.ua]",
    },
    REPOSITORY_EVENTS: {
        **_COMMON_DERIVED,
        "Category": f"'{REPOSITORY_EVENTS}'",
        "Type": f"'{REPOSITORY_EVENTS}'",
        # the tag number is drawn as in generation (tag_no)
        "Digest": f"sha256_of(hash({ROUTE_RESOURCE_ID}, r.Repository, r.Tag, "
        "floor(draw(r.gid, r.h, r.j, 14) ** 2 * 8)::BIGINT))",
        "CorrelationId": _CORRELATION_ID,
        "_IsBillable": "'True'",
        "LoginServer": f"split_part({ROUTE_RESOURCE_ID}, '/', 9) || '.azurecr.io'",
        "UserAgent": f"{_agents_sql()}[r.ua]",
    },
    AZURE_METRICS: {
        **_COMMON_DERIVED,
        "Type": f"'{AZURE_METRICS}'",
        "_IsBillable": "'False'",
    },
    AZURE_ACTIVITY: {},
}
# Stored helper columns behind derived ones (not part of the table's schema).
_DRAWN = [("gid", "BIGINT"), ("h", "BIGINT"), ("j", "BIGINT")]  # an event's draw inputs
HELPERS: dict[str, list[tuple[str, str]]] = {
    LOGIN_EVENTS: [("ua", "TINYINT"), (RESOURCE_KEY, "INTEGER"), *_DRAWN],
    REPOSITORY_EVENTS: [("ua", "TINYINT"), (RESOURCE_KEY, "INTEGER"), *_DRAWN],
    AZURE_METRICS: [(RESOURCE_KEY, "INTEGER")],
    AZURE_ACTIVITY: [],
}


def stored_columns(table: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of what the raw table stores, in the order generation writes."""
    derived = DERIVED[table]
    cols = [
        (n, schemas.DUCKDB_TYPES[t])
        for n, t in schemas.TABLES[table]
        if n != "TenantId" and n not in derived
    ]
    return cols + HELPERS[table]


def select_list(table: str, tenant: str) -> str:
    """The table's columns in schema order, from a raw row `r` and (registry tables) its
    routing row `w`; `tenant` is the SQL of the workspace id (TenantId)."""
    derived = DERIVED[table]
    out = []
    for name, _ in schemas.TABLES[table]:
        expr = tenant if name == "TenantId" else derived.get(name, f'r."{name}"')
        out.append(f'{expr} AS "{name}"')
    return ", ".join(out)


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_MACROS)
    for table in (LOGIN_EVENTS, REPOSITORY_EVENTS, AZURE_METRICS, AZURE_ACTIVITY):
        cols = ", ".join(f'"{n}" {t}' for n, t in stored_columns(table))
        con.execute(f'CREATE TABLE IF NOT EXISTS "{raw_table(table)}" ({cols})')


def load_rows(
    con: duckdb.DuckDBPyConnection,
    name: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence[Any]],
) -> None:
    """A temp table from Python rows, passed as one list parameter per column (DuckDB binds
    lists in bulk; executemany would insert row by row)."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    select = ", ".join(f"unnest(?::{t}[]) AS {n}" for n, t in columns)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {select}", [list(c) for c in cols])


def insert_events(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    """Generate login and repository rows for these generator rows into the raw tables."""
    if not rows:
        return
    load_rows(con, "gens", _GEN_COLUMNS, rows)
    for kind, table, select in (
        ("logins", LOGIN_EVENTS, _LOGIN_SELECT),
        ("repository", REPOSITORY_EVENTS, _REPOSITORY_SELECT),
    ):
        sql = select.replace("@EVENTS@", _EVENTS_SQL)
        con.execute(f'INSERT INTO "{raw_table(table)}" BY NAME {sql}', {"kind": kind})
    con.execute("DROP TABLE IF EXISTS gens")


def insert_metrics(
    con: duckdb.DuckDBPyConnection,
    registries: Sequence[RegistrySpec],
    window: Window,
    keys: Mapping[str, int],
) -> None:
    """Hourly AzureMetrics rows for these registries (after their repository events exist);
    `keys` maps each registry's lower-case id to its RESOURCE_KEY."""
    rows = []
    for reg in registries:
        hours = max([g.hours for g in reg.events] + [DEFAULT_METRICS_HOURS])
        t0 = window.scenario_now - timedelta(hours=hours)
        if reg.created_at is not None:
            t0 = max(t0, reg.created_at)
        t0 = window.clip(t0)
        if window.end > t0:
            rows.append(
                (
                    reg.id.lower(),
                    keys[reg.id.lower()],
                    reg.name,
                    reg.resource_group,
                    reg.subscription.lower(),
                    naive_utc(t0),
                    naive_utc(window.end),
                )
            )
    if not rows:
        return
    columns = [
        ("rid", "VARCHAR"),
        (RESOURCE_KEY, "INTEGER"),
        ("name", "VARCHAR"),
        ("rg", "VARCHAR"),
        ("sub", "VARCHAR"),
        ("t0", "TIMESTAMP"),
        ("t1", "TIMESTAMP"),
    ]
    load_rows(con, "mgens", columns, rows)
    sql = f'INSERT INTO "{raw_table(AZURE_METRICS)}" BY NAME {_METRICS_SQL}'
    con.execute(sql)
    con.execute("DROP TABLE IF EXISTS mgens")


def delete_registry_rows(con: duckdb.DuckDBPyConnection, keys: Sequence[int]) -> None:
    """Every generated row of the registries with these RESOURCE_KEYs."""
    if not keys:
        return
    for table in (LOGIN_EVENTS, REPOSITORY_EVENTS, AZURE_METRICS):
        con.execute(
            f'DELETE FROM "{raw_table(table)}" '  # noqa: S608 - table names are ours
            f"WHERE {RESOURCE_KEY} IN (SELECT unnest(?::INTEGER[]))",
            [list(keys)],
        )


# --------------------------------------------------------------------------- activity log


def activity_rows(
    records: Iterable[ActivityRecord], tenant_of: Callable[[str], str]
) -> list[dict[str, Any]]:
    """AzureActivity rows (without TenantId) for activity records: a Start row, then the
    final status 0.4-2 s later, as the activity log writes them (`emulator.activity`).
    ResourceId is upper case (as the activity log often stores it); _ResourceId is lower case."""
    out: list[dict[str, Any]] = []
    for rec in records:
        rg, provider, name = activity.segments(rec.resource_id)
        op = rec.operation.upper()
        method = "DELETE" if op.endswith("/DELETE") else "PUT"
        claims = {
            "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": rec.caller,
            "http://schemas.microsoft.com/identity/claims/objectidentifier": activity.guid(
                "oid", rec.caller
            ),
            "ipaddr": rec.caller_ip,
        }
        authorization = {"action": op, "scope": rec.resource_id}
        tenant = tenant_of(rec.subscription_id)
        for phase in activity.phases(rec):
            status, at, correlation = phase.status, phase.at, phase.correlation_id
            http = {
                "clientRequestId": activity.guid("request", correlation),
                "clientIpAddress": rec.caller_ip,
                "method": method,
            }
            properties = {
                "eventCategory": "Administrative",
                "entity": rec.resource_id,
                "message": op,
                "hierarchy": f"{tenant}/{rec.subscription_id}",
            }
            if phase.final:
                properties["statusCode"] = "OK" if status in ("Succeeded", "Success") else status
            level = "Error" if status in ("Failed", "Failure") else "Informational"
            out.append(
                {
                    "SourceSystem": "Azure",
                    "CallerIpAddress": rec.caller_ip,
                    "CategoryValue": "Administrative",
                    "CorrelationId": correlation,
                    "Authorization": json.dumps(authorization),
                    "Authorization_d": json.dumps(authorization),
                    "Claims": json.dumps(claims),
                    "Claims_d": json.dumps(claims),
                    "Level": level,
                    "OperationNameValue": op,
                    "Properties": json.dumps(properties),
                    "Properties_d": json.dumps(properties),
                    "Caller": rec.caller,
                    "EventDataId": phase.event_data_id,
                    "EventSubmissionTimestamp": naive_utc(at + timedelta(seconds=12)),
                    "HTTPRequest": json.dumps(http),
                    "OperationId": phase.operation_id,
                    "ResourceGroup": rg,
                    "ResourceProviderValue": provider.upper(),
                    "ActivityStatusValue": status,
                    "ActivitySubstatusValue": "OK" if status in ("Succeeded", "Success") else "",
                    "Hierarchy": f"{tenant}/{rec.subscription_id}",
                    "TimeGenerated": naive_utc(at),
                    "SubscriptionId": rec.subscription_id,
                    "OperationName": activity.ACTIVITY_NAMES.get(op, op),
                    "ActivityStatus": status,
                    "ActivitySubstatus": "OK" if status in ("Succeeded", "Success") else "",
                    "Category": "Administrative",
                    "ResourceId": rec.resource_id.upper(),
                    "ResourceProvider": provider,
                    "Resource": name,
                    "Type": AZURE_ACTIVITY,
                    "_ResourceId": rec.resource_id.lower(),
                    "_SubscriptionId": rec.subscription_id,
                    "_IsBillable": "False",
                    "_BilledSize": 2100.0 + len(rec.resource_id),
                }
            )
    return out


def insert_activity(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    spec = stored_columns(AZURE_ACTIVITY)
    # JSON columns travel as VARCHAR lists and are cast by the INSERT.
    load_spec = [(n, "VARCHAR" if t == "JSON" else t) for n, t in spec]
    load_rows(con, "acts", load_spec, [tuple(r[n] for n, _ in spec) for r in rows])
    cols = ", ".join(f'"{n}"' for n, _ in spec)
    con.execute(f'INSERT INTO "{raw_table(AZURE_ACTIVITY)}" ({cols}) SELECT {cols} FROM acts')  # noqa: S608
    con.execute("DROP TABLE IF EXISTS acts")
