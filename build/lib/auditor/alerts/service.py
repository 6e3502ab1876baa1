"""The one object a run needs for alerts: flush the outbox, plan, claim, deliver; and the reads
behind `GET /api/alerts` and `python -m auditor alerts test`.

    with AlertService.from_settings(settings, credential=credential) as alerts:
        report = alerts.process(run.verdicts, run_id=run.run_id, now=run.finished_at)

Alerting never fails the audit: a storage error is logged and returned in `report.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient

from auditor.alerts.budget import SinkBudget
from auditor.alerts.config import (
    SINK_SETTINGS,
    STORAGE,
    AlertOptions,
    build_sinks,
    options_from_settings,
)
from auditor.alerts.dispatch import DeliveryReport, DispatchWorkers, flush_outbox, send_alerts
from auditor.alerts.model import (
    LOGIN_TOPICS,
    Alert,
    AlertKind,
    AlertState,
    Change,
    SettingChange,
    Topic,
    alert_key,
    notice_id,
    short_hash,
)
from auditor.alerts.outbox import Outbox, entry_document
from auditor.alerts.sinks import Sink
from auditor.alerts.state import AlertStateStore, state_document
from auditor.alerts.transitions import plan_alerts
from auditor.errors import ConfigError
from auditor.facts import Reason, Registry, Verdict, normalize_id
from auditor.reasons import catalog
from auditor.reasons.catalog import reason
from auditor.settings import Settings
from auditor.storage.connect import table_service_client

log = logging.getLogger(__name__)

TEST_REGISTRY = Registry(
    id=(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/acr-auditor-test"
        "/providers/Microsoft.ContainerRegistry/registries/acrauditortest"
    ),
    name="acrauditortest",
    subscription_id="00000000-0000-0000-0000-000000000000",
    resource_group="acr-auditor-test",
)


def table_service(settings: Settings, credential: TokenCredential | None) -> TableServiceClient:
    storage = settings.storage
    if storage.connection_string:
        return table_service_client(connection_string=storage.connection_string)
    if storage.table_endpoint:
        if credential is None:
            raise ConfigError(STORAGE, "identity-based table access needs a credential")
        return table_service_client(endpoint=storage.table_endpoint, credential=credential)
    raise ConfigError(STORAGE, "alerts keep their state in Table Storage: configure storage")


class AlertService:
    def __init__(
        self,
        sinks: Sequence[Sink],
        states: AlertStateStore,
        outbox: Outbox,
        *,
        options: AlertOptions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sinks = list(sinks)
        self.states = states
        self.outbox = outbox
        self.options = options or AlertOptions()
        self._clock = clock
        # A service serves one run (or one API request): its sinks' budgets are the run's,
        # and it owns the threads that deliver for it.
        self.budget = SinkBudget(self.options.sink_budget)
        self._workers: DispatchWorkers | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        credential: TokenCredential | None = None,
        sinks: Sequence[Sink] | None = None,
    ) -> AlertService:
        """ConfigError when alerts cannot work with these settings (no Table Storage)."""
        service = table_service(settings, credential)
        return cls(
            build_sinks(settings, credential=credential) if sinks is None else sinks,
            AlertStateStore(service, prefix=settings.storage.table_prefix),
            Outbox(service, prefix=settings.storage.table_prefix),
            options=options_from_settings(settings),
        )

    def __repr__(self) -> str:
        return f"AlertService(sinks={[s.name for s in self.sinks]})"

    def __enter__(self) -> AlertService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
        for sink in self.sinks:
            sink.close()

    @property
    def workers(self) -> DispatchWorkers:
        """Started on first use: a service that only reads (the API) starts none."""
        if self._workers is None:
            self._workers = DispatchWorkers(len(self.sinks))
        return self._workers

    # -- a run -----------------------------------------------------------------------------

    def process(
        self,
        verdicts: Sequence[Verdict],
        *,
        run_id: str = "",
        now: datetime | None = None,
        login_evidence: Mapping[str, Sequence[Reason]] | None = None,
        setting_changes: Sequence[SettingChange] = (),
        states: Mapping[str, AlertState] | None = None,
    ) -> DeliveryReport:
        """Flush the outbox, then plan and send this run's alerts. Works for a whole fleet and
        for a one-registry run (Event Grid): registries not in `verdicts` are not touched.

        `states`: the stored alert states as read earlier in the run (`self.states.load()`),
        instead of reading them now; a state changed since only costs its alert to whoever
        changed it (the claim's ETag no longer matches), never a duplicate."""
        moment = now or self._clock()
        report = self.flush(now=moment)
        try:
            options = self.options
            registries = {v.registry.key for v in verdicts}
            topics = [Topic.COMPLIANCE, Topic.LOGGING_INTERRUPTED]
            if options.login_alerts:
                registries |= {normalize_id(k) for k in login_evidence or ()}
                topics += LOGIN_TOPICS
            keys = {alert_key(r, t) for r in registries for t in topics}
            known = (
                self.states.load(keys)
                if states is None
                else {k: state for k in keys if (state := states.get(k)) is not None}
            )
            plan = plan_alerts(
                known,
                verdicts,
                now=moment,
                remind_after=options.remind_after,
                login_alerts_enabled=options.login_alerts,
                login_evidence=login_evidence,
                setting_changes=setting_changes,
                alert_on_unknown=options.alert_on_unknown,
                new_registry_grace=options.new_registry_grace,
                run_id=run_id,
            )
            sent = send_alerts(
                plan,
                self.sinks,
                self.states,
                self.outbox,
                now=moment,
                lease=options.lease,
                budget=self.budget,
                workers=self.workers,
            )
        except AzureError as exc:
            log.error("alerting failed: %s", type(exc).__name__)
            report.errors.append(f"alerting failed: {type(exc).__name__}")
            return report
        return report.merge(sent)

    def flush(self, *, now: datetime | None = None) -> DeliveryReport:
        try:
            return flush_outbox(
                self.sinks,
                self.outbox,
                self.states,
                now=now or self._clock(),
                lease=self.options.lease,
                max_age=self.options.max_age,
                budget=self.budget,
                workers=self.workers,
            )
        except AzureError as exc:
            log.error("outbox flush failed: %s", type(exc).__name__)
            return DeliveryReport(errors=[f"outbox flush failed: {type(exc).__name__}"])

    # -- reads -----------------------------------------------------------------------------

    def document(self, *, limit: int = 50, registry_id: str | None = None) -> dict[str, Any]:
        """`GET /api/alerts`: open alerts, recent notices, undelivered alerts, sink names.
        Holds no URL or secret: sinks appear by name only, errors are redacted when stored."""
        registry_key = normalize_id(registry_id) if registry_id else None
        open_alerts = [
            state_document(s)
            for s in self.states.open_alerts()
            if registry_key is None or s.registry.key == registry_key
        ]
        pending = [
            entry_document(e)
            for e in self.outbox.all()
            if registry_key is None
            or normalize_id(str(e.document.get("registry", {}).get("id", ""))) == registry_key
        ]
        return {
            "sinks": [s.name for s in self.sinks],
            "open": open_alerts,
            "history": self.states.history(limit=limit, registry_key=registry_key),
            "undelivered": pending,
        }


def make_test_alert(now: datetime) -> Alert:
    """An obviously fake alert (test: true, a registry that cannot exist in Azure)."""
    incident = short_hash(f"test|{now.isoformat()}")
    return Alert(
        id=notice_id(incident, 1),
        incident_id=incident,
        key=alert_key(TEST_REGISTRY.key, Topic.COMPLIANCE),
        kind=AlertKind.OPENED,
        topic=Topic.COMPLIANCE,
        change=Change.TEST,
        registry=TEST_REGISTRY,
        status="noncompliant",
        reasons=(reason(catalog.NO_DIAGNOSTIC_SETTING),),
        detected_at=now,
        opened_at=now,
        test=True,
    )


def send_test_alert(
    settings: Settings,
    sink_name: str,
    *,
    credential: TokenCredential | None = None,
    now: datetime | None = None,
) -> Alert:
    """`python -m auditor alerts test --sink NAME`: send one test alert straight to one sink,
    bypassing state and outbox. ConfigError if the sink is not configured; DeliveryError (its
    message names the sink, never the URL) if sending fails."""
    if sink_name not in SINK_SETTINGS:
        raise ConfigError("--sink", f"{sink_name!r} is not one of {sorted(SINK_SETTINGS)}")
    sinks = build_sinks(settings, credential=credential)
    try:
        chosen = next((s for s in sinks if s.name == sink_name), None)
        if chosen is None:
            raise ConfigError(SINK_SETTINGS[sink_name], f"sink {sink_name!r} is not configured")
        alert = make_test_alert(now or datetime.now(UTC))
        chosen.send(alert)
        return alert
    finally:
        for sink in sinks:
            sink.close()
