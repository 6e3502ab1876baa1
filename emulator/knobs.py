"""Realism knobs: latency, ARM throttling, Resource Graph quota, paging, Log Analytics limits,
fault injection. Parsed from a scenario's ``knobs:`` mapping (errors name the field, e.g.
``knobs.faults[1].status``), changeable at run time through ``world.knobs`` or the admin API.

YAML schema (every key optional; defaults are Azure's documented values)::

    knobs:
      latency:                      # per API: arm, resourcegraph, logs, identity, default
        arm: 30                     # shorthand for {distribution: fixed, ms: 30}
        resourcegraph: {distribution: uniform, min_ms: 50, max_ms: 200, seed: 1}
        logs: {distribution: lognormal, median_ms: 300, sigma: 0.6, max_ms: 5000, seed: 7}
      arm_throttle:                 # token bucket per subscription (or tenant) AND caller
        enabled: true
        burst: 250                  # reads
        refill_per_second: 25
        write_burst: 200            # writes and deletes (separate buckets)
        write_refill_per_second: 10
        clock_scale: 1              # multiplies both refill rates (10 = a 10x faster world)
      resourcegraph: {enabled: true, quota: 15, window_seconds: 5}   # per caller
      paging:
        registries_page_size: 20
        subscriptions_page_size: 100
        resourcegraph_default_top: 100
      activity_log:                 # GET .../Microsoft.Insights/eventtypes/management/values
        page_size: 200              # events per page before a nextLink
        ingestion_delay_seconds: 0  # submissionTimestamp lags eventTimestamp by this; an
                                    # event is listed once its submission time has come
      logs:                         # read by emulator/loganalytics; unknown keys kept in `extra`
        concurrent_queries: 5
        queries_per_window: 200
        window_seconds: 30
        max_rows: 500000
      request_log_limit: 200000     # oldest entries are dropped beyond this
      max_body_bytes: 4194304
      faults:
        - {kind: status, status: 503, api: arm, path: "/registries$", count: 2}
        - {kind: status, status: 403, subscription: 22222222-2222-2222-2222-222222222222}
        - {kind: slow, delay_s: 2, api: logs, probability: 0.1, seed: 3}
        - {kind: malformed, path: "diagnosticSettings", count: 1}
        - {kind: status, status: 403, method: PUT, path: "/diagnosticSettings/"}  # writes only
        - {kind: partial, api: logs, count: 1}       # applied by the Log Analytics handler
        - {kind: status, status: 404, api: logs, path: "/v1/workspaces/",
           code: WorkspaceNotFoundError}

A fault fires for the next `count` matching requests, or with `probability` (seeded), or, with
neither, on every matching request; `skip: N` lets the first N matching requests through
untouched (e.g. Resource Graph failing from its second page on). `path` is a case-insensitive
regex searched in the request path; `subscription` is shorthand for a path regex matching that
subscription's ARM paths; `method` (GET, PUT, POST, DELETE...) limits it to one HTTP method.
"""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.scenario import GUID_RE, ScenarioError

APIS = ("arm", "resourcegraph", "logs", "identity")
FAULT_APIS = ("any", *APIS)
FAULT_KINDS = ("status", "slow", "malformed", "partial")
# Kinds the core middleware applies; "partial" is left to the Log Analytics handler.
CORE_FAULT_KINDS = frozenset({"status", "slow", "malformed"})
DISTRIBUTIONS = ("fixed", "uniform", "lognormal")
FAULT_FIELDS = (
    "kind", "api", "path", "subscription", "method", "status", "code", "message", "delay_s",
    "retry_after", "count", "probability", "seed", "skip",
    "id", "fired",  # read-only (reported by to_dict), ignored on input
)  # fmt: skip


@dataclass
class Latency:
    """Added response time for one API, sampled per request."""

    distribution: str = "fixed"
    ms: float = 0.0  # fixed
    min_ms: float = 0.0  # uniform
    max_ms: float | None = None  # uniform upper bound; lognormal cap
    median_ms: float = 0.0  # lognormal
    sigma: float = 0.5  # lognormal
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def sample_s(self) -> float:
        if self.distribution == "fixed":
            return self.ms / 1000.0
        with self._lock:
            if self.distribution == "uniform":
                value = self._rng.uniform(self.min_ms, self.max_ms or self.min_ms)
            else:
                value = self._rng.lognormvariate(math.log(max(self.median_ms, 1e-6)), self.sigma)
                if self.max_ms is not None:
                    value = min(value, self.max_ms)
        return max(value, 0.0) / 1000.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"distribution": self.distribution}
        if self.distribution == "fixed":
            out["ms"] = self.ms
        elif self.distribution == "uniform":
            out.update(min_ms=self.min_ms, max_ms=self.max_ms)
        else:
            out.update(median_ms=self.median_ms, sigma=self.sigma)
            if self.max_ms is not None:
                out["max_ms"] = self.max_ms
        if self.seed is not None:
            out["seed"] = self.seed
        return out


@dataclass
class ArmThrottle:
    enabled: bool = True
    burst: int = 250
    refill_per_second: float = 25.0
    write_burst: int = 200
    write_refill_per_second: float = 10.0
    clock_scale: float = 1.0


@dataclass
class ResourceGraphLimits:
    enabled: bool = True
    quota: int = 15
    window_seconds: float = 5.0


@dataclass
class Paging:
    registries_page_size: int = 20
    subscriptions_page_size: int = 100
    resourcegraph_default_top: int = 100


@dataclass
class ActivityLogKnobs:
    # UNVERIFIED: Azure documents no page size for this list; 200 is a plausible one.
    page_size: int = 200
    # The emulated clock only moves when told, so the default is no lag; a test that wants
    # late events sets it and advances the clock.
    ingestion_delay_seconds: float = 0.0


@dataclass
class LogsLimits:
    """Log Analytics limits; the Log Analytics module owns their meaning. Keys it defines that
    the core does not know are kept, unvalidated, in `extra`."""

    concurrent_queries: int = 5
    queries_per_window: int = 200
    window_seconds: float = 30.0
    max_rows: int = 500_000
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str
    api: str = "any"
    path: str = ""
    method: str | None = None  # upper case; None: any
    status: int = 500
    code: str | None = None
    message: str | None = None
    delay_s: float = 0.0
    retry_after: float | None = None
    count: int | None = None
    probability: float | None = None
    seed: int | None = None
    skip: int = 0  # matching requests still to let through before the fault applies
    id: int = 0
    fired: int = 0
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path, re.IGNORECASE)
        self._rng = random.Random(self.seed)

    def exhausted(self) -> bool:
        return self.count is not None and self.count <= 0

    def try_fire(self, api: str, path: str, method: str | None = None) -> bool:
        """Whether this fault applies to the request; consumes one count. Caller holds the
        world lock."""
        if self.api not in ("any", api) or self.exhausted():
            return False
        if self.method is not None and method is not None and method.upper() != self.method:
            return False
        if self.path and not self._regex.search(path):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.count is not None:
            self.count -= 1
        elif self.probability is not None and self._rng.random() >= self.probability:
            return False
        self.fired += 1
        return True

    def to_dict(self) -> dict[str, Any]:
        """The fault as knobs YAML (parse_fault accepts it back; id and fired are read-only)."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "api": self.api}
        if self.path:
            out["path"] = self.path
        if self.method is not None:
            out["method"] = self.method
        if self.kind == "status":
            out["status"] = self.status
        if self.kind == "slow" or self.delay_s:
            out["delay_s"] = self.delay_s
        for key in ("code", "message", "retry_after", "count", "probability", "seed"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.skip:
            out["skip"] = self.skip
        out["fired"] = self.fired
        return out


@dataclass
class Knobs:
    latency: dict[str, Latency] = field(default_factory=dict)
    arm_throttle: ArmThrottle = field(default_factory=ArmThrottle)
    resourcegraph: ResourceGraphLimits = field(default_factory=ResourceGraphLimits)
    paging: Paging = field(default_factory=Paging)
    activity_log: ActivityLogKnobs = field(default_factory=ActivityLogKnobs)
    logs: LogsLimits = field(default_factory=LogsLimits)
    faults: list[Fault] = field(default_factory=list)
    request_log_limit: int = 200_000
    max_body_bytes: int = 4 * 1024 * 1024

    def latency_for(self, api: str) -> Latency | None:
        return self.latency.get(api) or self.latency.get("default")

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency": {api: lat.to_dict() for api, lat in self.latency.items()},
            "arm_throttle": _plain(self.arm_throttle),
            "resourcegraph": _plain(self.resourcegraph),
            "paging": _plain(self.paging),
            "activity_log": _plain(self.activity_log),
            "logs": {
                **{k: v for k, v in _plain(self.logs).items() if k != "extra"},
                **self.logs.extra,
            },
            "request_log_limit": self.request_log_limit,
            "max_body_bytes": self.max_body_bytes,
            "faults": [f.to_dict() for f in self.faults],
        }


def _plain(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


# --------------------------------------------------------------------------- parsing


def parse_knobs(data: Any, *, source: str = "<knobs>", path: str = "knobs") -> Knobs:
    """Validate a ``knobs:`` mapping; raises ScenarioError naming the field."""
    p = _Parser(source)
    m = p.mapping(data if data is not None else {}, path)
    p.only(
        m,
        path,
        (
            "latency",
            "arm_throttle",
            "resourcegraph",
            "paging",
            "activity_log",
            "logs",
            "faults",
            "request_log_limit",
            "max_body_bytes",
        ),
    )
    knobs = Knobs()
    lat = p.mapping(m.get("latency", {}), f"{path}.latency")
    for api, raw in lat.items():
        if api not in (*APIS, "default"):
            raise p.error(f"{path}.latency.{api}", f"unknown API; use {', '.join(APIS)} or default")
        knobs.latency[api] = parse_latency(raw, source=source, path=f"{path}.latency.{api}")
    t = p.mapping(m.get("arm_throttle", {}), f"{path}.arm_throttle")
    tp = f"{path}.arm_throttle"
    p.only(t, tp, tuple(_plain(ArmThrottle())))
    knobs.arm_throttle = ArmThrottle(
        enabled=p.bool(t, "enabled", tp, True),
        burst=p.int(t, "burst", tp, 250, lo=1),
        refill_per_second=p.number(t, "refill_per_second", tp, 25.0, lo=1e-9),
        write_burst=p.int(t, "write_burst", tp, 200, lo=1),
        write_refill_per_second=p.number(t, "write_refill_per_second", tp, 10.0, lo=1e-9),
        clock_scale=p.number(t, "clock_scale", tp, 1.0, lo=1e-9),
    )
    g = p.mapping(m.get("resourcegraph", {}), f"{path}.resourcegraph")
    gp = f"{path}.resourcegraph"
    p.only(g, gp, tuple(_plain(ResourceGraphLimits())))
    knobs.resourcegraph = ResourceGraphLimits(
        enabled=p.bool(g, "enabled", gp, True),
        quota=p.int(g, "quota", gp, 15, lo=1),
        window_seconds=p.number(g, "window_seconds", gp, 5.0, lo=1e-3),
    )
    pg = p.mapping(m.get("paging", {}), f"{path}.paging")
    pp = f"{path}.paging"
    p.only(pg, pp, tuple(_plain(Paging())))
    knobs.paging = Paging(
        registries_page_size=p.int(pg, "registries_page_size", pp, 20, lo=1, hi=1000),
        subscriptions_page_size=p.int(pg, "subscriptions_page_size", pp, 100, lo=1, hi=1000),
        resourcegraph_default_top=p.int(pg, "resourcegraph_default_top", pp, 100, lo=1, hi=1000),
    )
    knobs.activity_log = _activity_log(p, m.get("activity_log", {}), f"{path}.activity_log")
    lg = p.mapping(m.get("logs", {}), f"{path}.logs")
    lp = f"{path}.logs"
    known = {"concurrent_queries", "queries_per_window", "window_seconds", "max_rows"}
    knobs.logs = LogsLimits(
        concurrent_queries=p.int(lg, "concurrent_queries", lp, 5, lo=1),
        queries_per_window=p.int(lg, "queries_per_window", lp, 200, lo=1),
        window_seconds=p.number(lg, "window_seconds", lp, 30.0, lo=1e-3),
        max_rows=p.int(lg, "max_rows", lp, 500_000, lo=1),
        extra={k: v for k, v in lg.items() if k not in known},
    )
    knobs.request_log_limit = p.int(m, "request_log_limit", path, 200_000, lo=100)
    knobs.max_body_bytes = p.int(m, "max_body_bytes", path, 4 * 1024 * 1024, lo=1024)
    faults = m.get("faults", [])
    if not isinstance(faults, list):
        raise p.error(f"{path}.faults", f"expected a list, got {type(faults).__name__}")
    knobs.faults = [
        parse_fault(f, source=source, path=f"{path}.faults[{i}]", fault_id=i + 1)
        for i, f in enumerate(faults)
    ]
    return knobs


def _activity_log(p: _Parser, raw: Any, path: str) -> ActivityLogKnobs:
    m = p.mapping(raw, path)
    p.only(m, path, tuple(_plain(ActivityLogKnobs())))
    return ActivityLogKnobs(
        page_size=p.int(m, "page_size", path, 200, lo=1, hi=1000),
        ingestion_delay_seconds=p.number(m, "ingestion_delay_seconds", path, 0.0, hi=86400.0),
    )


def parse_latency(raw: Any, *, source: str = "<knobs>", path: str = "latency") -> Latency:
    p = _Parser(source)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if raw < 0:
            raise p.error(path, "must be >= 0 ms")
        return Latency("fixed", ms=float(raw))
    m = p.mapping(raw, path)
    p.only(m, path, ("distribution", "ms", "min_ms", "max_ms", "median_ms", "sigma", "seed"))
    dist = m.get("distribution", "fixed")
    if dist not in DISTRIBUTIONS:
        raise p.error(f"{path}.distribution", f"must be one of {', '.join(DISTRIBUTIONS)}")
    seed = p.int(m, "seed", path, None) if "seed" in m else None
    if dist == "fixed":
        return Latency("fixed", ms=p.number(m, "ms", path, 0.0), seed=seed)
    if dist == "uniform":
        lo = p.number(m, "min_ms", path, 0.0)
        hi = p.number(m, "max_ms", path, None)
        if hi < lo:
            raise p.error(f"{path}.max_ms", "must be >= min_ms")
        return Latency("uniform", min_ms=lo, max_ms=hi, seed=seed)
    cap = p.number(m, "max_ms", path, None) if "max_ms" in m else None
    return Latency(
        "lognormal",
        median_ms=p.number(m, "median_ms", path, None),
        sigma=p.number(m, "sigma", path, 0.5, hi=5.0),
        max_ms=cap,
        seed=seed,
    )


def parse_fault(
    raw: Any, *, source: str = "<knobs>", path: str = "fault", fault_id: int = 0
) -> Fault:
    p = _Parser(source)
    m = p.mapping(raw, path)
    p.only(m, path, FAULT_FIELDS)
    kind = m.get("kind")
    if kind not in FAULT_KINDS:
        raise p.error(f"{path}.kind", f"is required, one of {', '.join(FAULT_KINDS)}")
    api = m.get("api", "logs" if kind == "partial" else "any")
    if api not in FAULT_APIS:
        raise p.error(f"{path}.api", f"must be one of {', '.join(FAULT_APIS)}")
    regex = _fault_path(p, m, path)
    status = p.int(m, "status", path, 500, lo=400, hi=599)
    if kind != "status" and "status" in m:
        raise p.error(f"{path}.status", f"only applies to kind status, not {kind}")
    if kind == "slow" and "delay_s" not in m:
        raise p.error(f"{path}.delay_s", "is required for a slow fault")
    count = p.int(m, "count", path, None, lo=0) if "count" in m else None
    prob = p.number(m, "probability", path, None, hi=1.0) if "probability" in m else None
    if count is not None and prob is not None:
        raise p.error(f"{path}.probability", "give either count or probability, not both")
    for key in ("code", "message", "method"):
        if key in m and (not isinstance(m[key], str) or not m[key]):
            raise p.error(f"{path}.{key}", "expected a non-empty string")
    return Fault(
        kind=kind,
        api=api,
        path=regex,
        method=m["method"].upper() if "method" in m else None,
        status=status,
        code=m.get("code"),
        message=m.get("message"),
        delay_s=p.number(m, "delay_s", path, 0.0, hi=600.0),
        retry_after=p.number(m, "retry_after", path, None) if "retry_after" in m else None,
        count=count,
        probability=prob,
        seed=p.int(m, "seed", path, None) if "seed" in m else None,
        skip=p.int(m, "skip", path, 0, lo=0),
        id=fault_id,
    )


def _fault_path(p: _Parser, m: Mapping[str, Any], path: str) -> str:
    """The request paths a fault matches, as a regex: given as `path`, or as `subscription`
    for every path under that subscription."""
    regex = m.get("path", "")
    if not isinstance(regex, str):
        raise p.error(f"{path}.path", "expected a regular expression string")
    if "subscription" in m:
        sub = m["subscription"]
        if not isinstance(sub, str) or not GUID_RE.match(sub):
            raise p.error(f"{path}.subscription", "expected a subscription GUID")
        if regex:
            raise p.error(f"{path}.subscription", "give either path or subscription, not both")
        regex = rf"^/+subscriptions/{re.escape(sub)}(/|$)"
    try:
        re.compile(regex, re.IGNORECASE)
    except re.error as exc:
        raise p.error(f"{path}.path", f"invalid regular expression: {exc}") from None
    return regex


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {path}: {problem}")

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a mapping, got {type(value).__name__}")
        return dict(value)

    def only(self, m: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        unknown = sorted(str(k) for k in m if k not in allowed)
        if unknown:
            raise self.error(
                f"{path}.{unknown[0]}", f"unknown field; expected one of {', '.join(allowed)}"
            )

    def bool(self, m: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = m.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{path}.{key}", "expected true or false")
        return value

    def number(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        default: float | None,
        *,
        lo: float = 0.0,
        hi: float | None = None,
    ) -> float:
        value = m.get(key, default)
        if value is None:
            raise self.error(f"{path}.{key}", "is required")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise self.error(f"{path}.{key}", "expected a number")
        if value < lo or (hi is not None and value > hi):
            upper = hi if hi is not None else "inf"
            raise self.error(f"{path}.{key}", f"must be between {lo} and {upper}")
        return float(value)

    def int(
        self,
        m: Mapping[str, Any],
        key: str,
        path: str,
        default: int | None,
        *,
        lo: int | None = None,
        hi: int | None = None,
    ) -> int:
        value = m.get(key, default)
        if value is None:
            raise self.error(f"{path}.{key}", "is required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"{path}.{key}", "expected an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(f"{path}.{key}", f"must be between {lo} and {hi if hi else 'inf'}")
        return value
