"""The emulated estate at run time (see docs/emulator-contract.md): registries indexed by
lower-cased id and per subscription, diagnostic settings with their version history, activity
records, the emulated clock, knobs, faults and the request log.

Thread safety: uvicorn serves from its own thread while tests call these methods from the
main thread, so every read and write of mutable state holds `lock`. Objects handed out
(RegistrySpec, SettingSpec, SettingVersion, ActivityRecord) are never mutated afterwards; a
change replaces them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from emulator.identity import TokenAuthority
from emulator.knobs import Fault, Knobs, parse_fault, parse_knobs
from emulator.scenario import (
    RegistrySpec,
    Scenario,
    ScenarioError,
    SettingSpec,
    SubscriptionSpec,
    WorkspaceSpec,
    _Reader,
)
from emulator.throttle import TokenBuckets, WindowLimiter

# Scenario settings without created_at exist "long before any event".
SETTING_DEFAULT_AGE = timedelta(days=365)
DIAG_WRITE = "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/WRITE"
DIAG_DELETE = "MICROSOFT.INSIGHTS/DIAGNOSTICSETTINGS/DELETE"
REGISTRY_WRITE = "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/WRITE"
REGISTRY_DELETE = "MICROSOFT.CONTAINERREGISTRY/REGISTRIES/DELETE"


@dataclass
class SettingVersion:
    """One diagnostic setting (by name) as it was between `start` and `end` (None: current)."""

    name: str
    properties: dict[str, Any]
    start: datetime
    end: datetime | None = None


@dataclass(frozen=True)
class ActivityRecord:
    at: datetime
    operation: str  # UPPERCASE, as AzureActivity.OperationNameValue
    resource_id: str
    subscription_id: str
    caller: str
    caller_ip: str
    status: str


@dataclass(frozen=True)
class RequestLogEntry:
    time: float  # wall clock, epoch seconds
    api: str  # arm | resourcegraph | logs | identity
    method: str
    path: str
    status: int
    latency_ms: float
    throttled: bool
    caller: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _subscription_of(resource_id: str) -> str:
    parts = resource_id.split("/")
    return parts[2].lower() if len(parts) > 2 and parts[1].lower() == "subscriptions" else ""


class World:
    def __init__(self, scenario: Scenario, knobs: Knobs | Mapping[str, Any] | None = None) -> None:
        self.lock = threading.RLock()
        # Registries are copied so that two worlds built from one Scenario never share state.
        self.scenario = dataclasses.replace(
            scenario,
            registries=[
                dataclasses.replace(r, settings=list(r.settings)) for r in scenario.registries
            ],
        )
        self.version = 0
        # Bumped only by registry add/remove: inventory caches key on it.
        self.inventory_version = 0
        self._now = scenario.now
        self._knobs = self._coerce_knobs(knobs if knobs is not None else scenario.knobs)
        self._fault_ids = max((f.id for f in self._knobs.faults), default=0)
        self._subs = {s.id.lower(): s for s in scenario.subscriptions}
        self._tenant = (
            scenario.subscriptions[0].tenant_id
            if scenario.subscriptions
            else ("72f988bf-86f1-41af-91ab-2d7cd011db47")
        )
        self._ws_by_id = {w.id.lower(): w for w in scenario.workspaces}
        self._ws_by_customer = {w.customer_id.lower(): w for w in scenario.workspaces}
        self._registries: dict[str, RegistrySpec] = {}
        self._by_name: dict[str, str] = {}
        self._by_sub: dict[str, dict[str, RegistrySpec]] = {s: {} for s in self._subs}
        self._sorted_cache: dict[str, list[RegistrySpec]] = {}
        self._history: dict[str, list[SettingVersion]] = {}
        self._activity: list[ActivityRecord] = [
            ActivityRecord(
                at=a.at,
                operation=a.operation.upper(),
                resource_id=a.resource_id,
                subscription_id=_subscription_of(a.resource_id),
                caller=a.caller,
                caller_ip=a.caller_ip,
                status=a.status,
            )
            for a in scenario.activity
        ]
        for reg in self.scenario.registries:
            self._index(reg, default_start=scenario.now - SETTING_DEFAULT_AGE)
        self.identity = TokenAuthority(self._tenant)
        self.request_log: list[RequestLogEntry] = []
        self.counters: Counter[str] = Counter()
        self.arm_buckets = TokenBuckets()
        self.graph_windows = WindowLimiter()
        self.started = time.time()
        # Scratch space for handlers' derived data (each keys its entries on a version).
        self.cache: dict[str, Any] = {}

    # ------------------------------------------------------------------ knobs and clock

    @staticmethod
    def _coerce_knobs(knobs: Knobs | Mapping[str, Any]) -> Knobs:
        return knobs if isinstance(knobs, Knobs) else parse_knobs(knobs)

    @property
    def knobs(self) -> Knobs:
        return self._knobs

    @knobs.setter
    def knobs(self, value: Knobs | Mapping[str, Any]) -> None:
        """Replace all knobs (a Knobs or a ``knobs:`` mapping; ScenarioError if invalid)."""
        knobs = self._coerce_knobs(value)
        with self.lock:
            for f in knobs.faults:
                if f.id == 0 or f.id <= self._fault_ids:
                    self._fault_ids += 1
                    f.id = self._fault_ids
            self._knobs = knobs

    def now(self) -> datetime:
        with self.lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the emulated clock only moves forward")
        with self.lock:
            self._now += delta
            self.version += 1
            return self._now

    # ------------------------------------------------------------------ subscriptions, workspaces

    @property
    def tenant_id(self) -> str:
        return self._tenant

    def subscriptions(self) -> list[SubscriptionSpec]:
        return list(self._subs.values())

    def subscription(self, subscription_id: str) -> SubscriptionSpec | None:
        return self._subs.get(subscription_id.lower())

    def workspaces(self) -> list[WorkspaceSpec]:
        return list(self._ws_by_id.values())

    def workspace_by_customer_id(self, guid: str) -> WorkspaceSpec | None:
        return self._ws_by_customer.get(guid.lower())

    def workspace_by_id(self, arm_id: str) -> WorkspaceSpec | None:
        return self._ws_by_id.get(arm_id.lower())

    # ------------------------------------------------------------------ registries

    def _index(self, reg: RegistrySpec, default_start: datetime) -> None:
        key = reg.id.lower()
        self._registries[key] = reg
        self._by_name[reg.name.lower()] = key
        self._by_sub.setdefault(reg.subscription.lower(), {})[key] = reg
        self._sorted_cache.pop(reg.subscription.lower(), None)
        self._sorted_cache.pop("*", None)
        history = self._history.setdefault(key, [])
        for s in reg.settings:
            history.append(SettingVersion(s.name, s.properties, s.created_at or default_start))

    def registries(self) -> list[RegistrySpec]:
        with self.lock:
            return list(self._registries.values())

    def registry(self, resource_id: str) -> RegistrySpec | None:
        with self.lock:
            return self._registries.get(resource_id.rstrip("/").lower())

    def registry_by_name(self, name: str) -> RegistrySpec | None:
        with self.lock:
            key = self._by_name.get(name.lower())
            return self._registries.get(key) if key else None

    def registries_sorted(self, subscription_id: str | None = None) -> list[RegistrySpec]:
        """Registries of one subscription (or all, for None) in stable id order; cached until
        the inventory changes, so paging 10,000 registries is not O(n log n) per page."""
        key = subscription_id.lower() if subscription_id else "*"
        with self.lock:
            cached = self._sorted_cache.get(key)
            if cached is None:
                source = (
                    self._registries.values() if key == "*" else self._by_sub.get(key, {}).values()
                )
                cached = sorted(source, key=lambda r: r.id.lower())
                self._sorted_cache[key] = cached
            return cached

    def add_registry(
        self,
        registry: RegistrySpec | Mapping[str, Any],
        *,
        caller: str = "emulator",
        record_activity: bool = True,
    ) -> RegistrySpec:
        """Add a registry (a RegistrySpec, or a mapping in scenario-file form). Its settings
        start now unless they carry created_at. ScenarioError if invalid or a duplicate."""
        with self.lock:
            reg = self._coerce_registry(registry)
            if reg.subscription.lower() not in self._subs:
                raise ScenarioError(f"registry {reg.name}: unknown subscription {reg.subscription}")
            if reg.name.lower() in self._by_name:
                raise ScenarioError(f"registry {reg.name}: the name is already taken")
            reg = dataclasses.replace(reg, settings=list(reg.settings))
            self._history.pop(reg.id.lower(), None)  # a re-created registry starts afresh
            self._index(reg, default_start=self._now)
            self.inventory_version += 1
            self.version += 1
            if record_activity:
                self._record(REGISTRY_WRITE, reg.id, caller, "127.0.0.1")
            return reg

    def _coerce_registry(self, registry: RegistrySpec | Mapping[str, Any]) -> RegistrySpec:
        if isinstance(registry, RegistrySpec):
            return registry
        reader = _Reader("registry")
        ws = {w.name.lower(): w for w in self._ws_by_id.values()}
        return reader.registry(dict(registry), "registry", set(self._subs), ws, self._now)

    def remove_registry(
        self, id_or_name: str, *, caller: str = "emulator", record_activity: bool = True
    ) -> RegistrySpec:
        """Delete a registry: it disappears from every list, its settings stop (their history
        ends now) and a registry delete activity record is written. KeyError if unknown."""
        with self.lock:
            key = (
                id_or_name.lower()
                if id_or_name.startswith("/")
                else self._by_name.get(id_or_name.lower(), "")
            )
            reg = self._registries.pop(key, None)
            if reg is None:
                raise KeyError(id_or_name)
            del self._by_name[reg.name.lower()]
            self._by_sub.get(reg.subscription.lower(), {}).pop(key, None)
            self._sorted_cache.pop(reg.subscription.lower(), None)
            self._sorted_cache.pop("*", None)
            self._close_all(key)
            self.inventory_version += 1
            self.version += 1
            if record_activity:
                self._record(REGISTRY_DELETE, reg.id, caller, "127.0.0.1")
            return reg

    # ------------------------------------------------------------------ diagnostic settings

    def settings(self, registry_id: str) -> list[SettingSpec]:
        reg = self.registry(registry_id)
        return list(reg.settings) if reg else []

    def setting(self, registry_id: str, name: str) -> SettingSpec | None:
        for s in self.settings(registry_id):
            if s.name.lower() == name.lower():
                return s
        return None

    def put_setting(
        self,
        registry_id: str,
        name: str,
        properties: dict[str, Any],
        *,
        caller: str,
        caller_ip: str = "127.0.0.1",
    ) -> tuple[SettingSpec, bool]:
        """Create or replace a setting (properties already validated, REST shape).
        Returns (setting, created)."""
        with self.lock:
            key = registry_id.lower()
            reg = self._registries[key]
            existing = next((s for s in reg.settings if s.name.lower() == name.lower()), None)
            stored_name = existing.name if existing else name
            new = SettingSpec(stored_name, properties, created_at=self._now)
            settings = [new if s is existing else s for s in reg.settings]
            if existing is None:
                settings.append(new)
            self._replace_settings(reg, settings)
            self._close(key, stored_name)
            self._history.setdefault(key, []).append(
                SettingVersion(stored_name, properties, self._now)
            )
            self.version += 1
            self._record(DIAG_WRITE, self._setting_id(reg, stored_name), caller, caller_ip)
            return new, existing is None

    def delete_setting(
        self, registry_id: str, name: str, *, caller: str, caller_ip: str = "127.0.0.1"
    ) -> bool:
        with self.lock:
            key = registry_id.lower()
            reg = self._registries[key]
            existing = next((s for s in reg.settings if s.name.lower() == name.lower()), None)
            if existing is None:
                return False
            self._replace_settings(reg, [s for s in reg.settings if s is not existing])
            self._close(key, existing.name)
            self.version += 1
            self._record(DIAG_DELETE, self._setting_id(reg, existing.name), caller, caller_ip)
            return True

    def _replace_settings(self, reg: RegistrySpec, settings: list[SettingSpec]) -> None:
        # Readers may iterate the old list concurrently: swap in a new one, never mutate.
        reg.settings = settings

    @staticmethod
    def _setting_id(reg: RegistrySpec, name: str) -> str:
        return f"{reg.id}/providers/microsoft.insights/diagnosticSettings/{name}"

    def _close(self, key: str, name: str) -> None:
        history = self._history.get(key, [])
        for i, v in enumerate(history):
            if v.end is None and v.name.lower() == name.lower():
                history[i] = dataclasses.replace(v, end=self._now)

    def _close_all(self, key: str) -> None:
        history = self._history.get(key, [])
        for i, v in enumerate(history):
            if v.end is None:
                history[i] = dataclasses.replace(v, end=self._now)

    def setting_history(self, registry_id: str) -> list[SettingVersion]:
        with self.lock:
            return list(self._history.get(registry_id.lower(), []))

    # ------------------------------------------------------------------ activity log

    def _record(self, operation: str, resource_id: str, caller: str, caller_ip: str) -> None:
        self._activity.append(
            ActivityRecord(
                at=self._now,
                operation=operation,
                resource_id=resource_id,
                subscription_id=_subscription_of(resource_id),
                caller=caller,
                caller_ip=caller_ip,
                status="Succeeded",
            )
        )

    def activity_records(self) -> list[ActivityRecord]:
        with self.lock:
            return list(self._activity)

    # ------------------------------------------------------------------ faults

    def add_fault(self, fault: Fault | Mapping[str, Any]) -> Fault:
        f = fault if isinstance(fault, Fault) else parse_fault(fault, path="fault")
        with self.lock:
            self._fault_ids += 1
            f.id = self._fault_ids
            self._knobs.faults.append(f)
            return f

    def clear_faults(self) -> None:
        with self.lock:
            self._knobs.faults.clear()

    def take_fault(
        self,
        api: str,
        path: str,
        kinds: Collection[str] | None = None,
        *,
        method: str | None = None,
    ) -> Fault | None:
        """The next injected fault for this api and path, consuming one of its count.

        `kinds` limits the search: the core middleware asks for status/slow/malformed; the Log
        Analytics handler should ask ``kinds=("partial",)`` so it never sees (and consumes) a
        fault the core already applies."""
        with self.lock:
            for f in self._knobs.faults:
                if kinds is not None and f.kind not in kinds:
                    continue
                if f.try_fire(api, path, method):
                    self.counters[f"faults:{f.kind}"] += 1
                    return f
        return None

    # ------------------------------------------------------------------ request log

    def log_request(self, entry: RequestLogEntry) -> None:
        with self.lock:
            self.request_log.append(entry)
            limit = self._knobs.request_log_limit
            if len(self.request_log) > limit:
                del self.request_log[: len(self.request_log) - limit]
            c = self.counters
            c["requests"] += 1
            c[f"api:{entry.api}"] += 1
            c[f"status:{entry.status}"] += 1
            c[f"{entry.api}:{entry.status}"] += 1
            if entry.throttled:
                c["throttled"] += 1
                c[f"throttled:{entry.api}"] += 1

    def requests(
        self, *, api: str | None = None, since: float | None = None
    ) -> list[RequestLogEntry]:
        """A copy of the request log, optionally for one api and after a wall-clock time."""
        with self.lock:
            entries: Iterable[RequestLogEntry] = list(self.request_log)
        return [
            e
            for e in entries
            if (api is None or e.api == api) and (since is None or e.time >= since)
        ]

    def reset_request_log(self) -> None:
        with self.lock:
            self.request_log.clear()
            self.counters.clear()
