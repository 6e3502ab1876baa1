"""The auditor's own health: an OpenTelemetry span and metrics per run, and one structured log
record per run, so every run (timer, Event Grid, CLI) shows in Application Insights in Azure and
on the console locally, and a failed run shows as a failure: span status ERROR with the exception
recorded, a `status=failed` (or `error`) run metric and an ERROR record, not only a log line.

`configure()` decides once per process where telemetry goes, from the environment:

- In Azure Functions with `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true` (infra/ sets it) the
  Python worker has already configured the Azure Monitor distro before importing the app, so
  nothing is configured twice (`Mode.FUNCTIONS_WORKER`).
- Elsewhere, `APPLICATIONINSIGHTS_CONNECTION_STRING` set: the Azure Monitor distro
  (`Mode.AZURE_MONITOR`), Entra-authenticated when `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`
  says `Authorization=AAD`. Per-request spans of the Azure SDK and HTTP libraries stay off: a
  fleet of 10,000 registries makes 10,000 requests a run; the run span and metrics count them.
- Otherwise `OTEL_TRACES_EXPORTER=console` and/or `OTEL_METRICS_EXPORTER=console` print spans
  and metrics on stderr (`Mode.CONSOLE`); with neither, nothing is exported (`Mode.NONE`) and the
  API's no-op providers make the calls below free.

`configure(json_logs=True)` also gives the root logger a JSON handler on stderr when it has none
(local runs); in Azure the platform's handlers stay as they are.

Runs are observed with a context manager (auditor.runtime):

    with telemetry.observe_run(trigger) as observed:
        run = run_audit(...)
        observed.record(run, clients=clients, logs_reader=reader, stats=stats)

These variables are platform settings, not auditor settings (auditor.settings.SETTING_NAMES):
`APPLICATIONINSIGHTS_CONNECTION_STRING`, `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`,
`PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY`, `FUNCTIONS_WORKER_RUNTIME`, `OTEL_SERVICE_NAME`,
`OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from opentelemetry import metrics, trace
from opentelemetry.trace import Status, StatusCode

from auditor.run_record import AuditRun, RunStatus

if TYPE_CHECKING:
    from auditor.audit import AuditStats
    from auditor.azure.clients import ArmClients
    from auditor.azure.logs import LogsReader, LogsStats
    from auditor.pacing import PacingStats

log = logging.getLogger(__name__)

SERVICE_NAME = "acr-auditor"
INSTRUMENTATION_NAME = "auditor"
SPAN_NAME = "auditor.run"
CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
WORKER_TELEMETRY = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
WORKER_RUNTIME = "FUNCTIONS_WORKER_RUNTIME"
TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
# Instrumentations of the Azure Monitor distro left off (see the module docstring).
QUIET_INSTRUMENTATIONS = ("azure_sdk", "requests", "urllib", "urllib3")
# Error texts on spans and log records are cut here (Azure error messages can be long).
MAX_ERROR_CHARS = 500
_FLUSH_TIMEOUT_MS = 5_000


class Mode(enum.StrEnum):
    FUNCTIONS_WORKER = "functions-worker"  # the Functions Python worker configured Azure Monitor
    AZURE_MONITOR = "azure-monitor"  # configured here, to Application Insights
    CONSOLE = "console"  # spans and/or metrics printed on stderr
    NONE = "none"  # nothing exported


_lock = threading.Lock()
_mode: Mode | None = None


def choose_mode(environ: Mapping[str, str]) -> Mode:
    """Where telemetry goes for this environment (pure: `configure` acts on it)."""
    if environ.get(WORKER_RUNTIME) and environ.get(WORKER_TELEMETRY, "").lower() == "true":
        return Mode.FUNCTIONS_WORKER
    if environ.get(CONNECTION_STRING, "").strip():
        return Mode.AZURE_MONITOR
    if "console" in (_exporters(environ, TRACES_EXPORTER) | _exporters(environ, METRICS_EXPORTER)):
        return Mode.CONSOLE
    return Mode.NONE


def configure(
    environ: Mapping[str, str] | None = None,
    *,
    json_logs: bool = False,
    stream: TextIO | None = None,
) -> Mode:
    """Set up telemetry for this process, once; later calls return the first answer."""
    global _mode
    env = os.environ if environ is None else environ
    with _lock:
        if _mode is not None:
            return _mode
        mode = choose_mode(env)
        out = stream if stream is not None else sys.stderr
        if mode is Mode.AZURE_MONITOR:
            _configure_azure_monitor(env)
        elif mode is Mode.CONSOLE:
            _configure_console(env, out)
        if json_logs and mode is not Mode.FUNCTIONS_WORKER:
            configure_json_logging(out)
        _mode = mode
    log.info("telemetry: %s", mode.value)
    return mode


def _exporters(environ: Mapping[str, str], name: str) -> set[str]:
    return {part.strip().lower() for part in environ.get(name, "").split(",") if part.strip()}


def _service_name(environ: Mapping[str, str]) -> str:
    return environ.get(OTEL_SERVICE_NAME, "").strip() or SERVICE_NAME


def _configure_azure_monitor(environ: Mapping[str, str]) -> None:
    # Imported here: the distro is heavy and only needed in this mode. The exporter reads
    # APPLICATIONINSIGHTS_AUTHENTICATION_STRING itself (Entra auth with a managed identity).
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry.sdk.resources import Resource

    configure_azure_monitor(
        connection_string=environ[CONNECTION_STRING].strip(),
        resource=Resource.create({"service.name": _service_name(environ)}),
        instrumentation_options={name: {"enabled": False} for name in QUIET_INSTRUMENTATIONS},
        enable_live_metrics=False,
    )


def _configure_console(environ: Mapping[str, str], stream: TextIO) -> None:
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": _service_name(environ)})
    if "console" in _exporters(environ, TRACES_EXPORTER):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=stream)))
        trace.set_tracer_provider(tracer_provider)
    if "console" in _exporters(environ, METRICS_EXPORTER):
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            PeriodicExportingMetricReader,
        )

        reader = PeriodicExportingMetricReader(
            ConsoleMetricExporter(out=stream), export_interval_millis=60_000
        )
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


# ------------------------------------------------------------------------------ structured logs

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, every `extra` field, the trace
    and span ids when a span is current, and the exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                doc[key] = value
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            doc["trace_id"] = format(context.trace_id, "032x")
            doc["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure_json_logging(
    stream: TextIO | None = None, *, level: int = logging.INFO
) -> logging.Handler | None:
    """A JSON handler on the root logger, unless it has handlers already (then None)."""
    root = logging.getLogger()
    if root.handlers:
        return None
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler


# ------------------------------------------------------------------------------ one run


@dataclass(frozen=True)
class RunSummary:
    """What one run did, as plain numbers (the span attributes, log fields and metrics)."""

    run_id: str
    trigger: str
    status: str
    duration_s: float
    registries: int
    by_status: Mapping[str, int]
    findings_by_reason: Mapping[str, int]
    errors: int
    first_error: str | None
    subscriptions: int
    arm_requests: int = 0
    arm_throttled: int = 0
    arm_wait_s: float = 0.0
    graph_queries: int = 0
    arm_list_calls: int = 0
    settings_reads: int = 0
    read_failures: int = 0
    log_queries: int = 0
    log_attempts: int = 0
    log_throttled: int = 0
    log_failed: int = 0
    log_wait_s: float = 0.0

    @property
    def findings(self) -> int:
        return sum(self.findings_by_reason.values())

    @property
    def throttle_wait_s(self) -> float:
        return self.arm_wait_s + self.log_wait_s

    def attributes(self) -> dict[str, str | int | float]:
        """Span attributes and log fields, all under `auditor.`."""
        out: dict[str, str | int | float] = {
            "auditor.run.id": self.run_id,
            "auditor.run.trigger": self.trigger,
            "auditor.run.status": self.status,
            "auditor.run.duration_s": round(self.duration_s, 3),
            "auditor.registries": self.registries,
            "auditor.findings": self.findings,
            "auditor.findings_by_reason": json.dumps(dict(self.findings_by_reason), sort_keys=True),
            "auditor.errors": self.errors,
            "auditor.subscriptions": self.subscriptions,
            "auditor.arm.requests": self.arm_requests,
            "auditor.arm.throttled": self.arm_throttled,
            "auditor.arm.throttle_wait_s": round(self.arm_wait_s, 3),
            "auditor.inventory.graph_queries": self.graph_queries,
            "auditor.inventory.arm_list_calls": self.arm_list_calls,
            "auditor.settings.reads": self.settings_reads,
            "auditor.settings.read_failures": self.read_failures,
            "auditor.logs.queries": self.log_queries,
            "auditor.logs.attempts": self.log_attempts,
            "auditor.logs.throttled": self.log_throttled,
            "auditor.logs.failed": self.log_failed,
            "auditor.logs.throttle_wait_s": round(self.log_wait_s, 3),
        }
        for status, count in sorted(self.by_status.items()):
            out[f"auditor.registries.{status}"] = count
        for reason, count in sorted(self.findings_by_reason.items()):
            out[f"auditor.findings.{reason}"] = count
        if self.first_error is not None:
            out["auditor.run.error"] = self.first_error
        return out


def summarize(
    run: AuditRun,
    *,
    arm_pacing: PacingStats | None = None,
    logs: LogsStats | None = None,
    logs_pacing: PacingStats | None = None,
    stats: AuditStats | None = None,
) -> RunSummary:
    by_status = Counter(v.status.value for v in run.verdicts)
    by_reason = Counter(reason.code for v in run.verdicts for reason in v.reasons)
    return RunSummary(
        run_id=run.run_id,
        trigger=run.trigger,
        status=run.status.value,
        duration_s=max(0.0, (run.finished_at - run.started_at).total_seconds()),
        registries=len(run.verdicts),
        by_status=dict(by_status),
        findings_by_reason=dict(by_reason),
        errors=len(run.errors),
        first_error=run.errors[0][:MAX_ERROR_CHARS] if run.errors else None,
        subscriptions=len(run.inventoried_subscriptions),
        arm_requests=arm_pacing.acquired if arm_pacing else 0,
        arm_throttled=arm_pacing.throttled if arm_pacing else 0,
        arm_wait_s=arm_pacing.waited_seconds if arm_pacing else 0.0,
        graph_queries=stats.inventory.graph_queries if stats else 0,
        arm_list_calls=stats.inventory.arm_list_calls if stats else 0,
        settings_reads=stats.settings_reads if stats else 0,
        read_failures=stats.read_failures if stats else 0,
        log_queries=logs.queries if logs else run.log_queries,
        log_attempts=logs.attempts if logs else 0,
        log_throttled=logs.throttled if logs else 0,
        log_failed=logs.failed if logs else 0,
        log_wait_s=logs_pacing.waited_seconds if logs_pacing else 0.0,
    )


class AuditRunFailed(RuntimeError):
    """Recorded on the span of a run that ended with status `failed` (nothing was raised)."""


@dataclass
class RunObservation:
    """Handed out by `observe_run`; `record` gives it the finished run and its counters."""

    trigger: str
    span: trace.Span
    summary: RunSummary | None = field(default=None, init=False)

    def record(
        self,
        run: AuditRun,
        *,
        clients: ArmClients | None = None,
        logs_reader: LogsReader | None = None,
        stats: AuditStats | None = None,
    ) -> RunSummary:
        self.summary = summarize(
            run,
            arm_pacing=clients.pacer.stats if clients is not None else None,
            logs=logs_reader.stats if logs_reader is not None else None,
            logs_pacing=logs_reader.pacer.stats if logs_reader is not None else None,
            stats=stats,
        )
        return self.summary


@contextmanager
def observe_run(
    trigger: str,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Iterator[RunObservation]:
    """A span around one run, then its metrics and one structured log record.

    An exception escaping the block is recorded on the span (status ERROR), counted as a run
    with status `error`, logged, and re-raised. A run recorded with status `failed` gets status
    ERROR and an `AuditRunFailed` exception event. The providers default to the global ones
    (`configure`); tests pass their own.
    """
    tracer = trace.get_tracer(INSTRUMENTATION_NAME, tracer_provider=tracer_provider)
    instruments = _instruments(meter_provider)
    started = time.monotonic()
    try:
        with tracer.start_as_current_span(
            SPAN_NAME,
            attributes={"auditor.run.trigger": trigger},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            observation = RunObservation(trigger=trigger, span=span)
            try:
                yield observation
            except BaseException as exc:
                _failed_with_exception(observation, exc, time.monotonic() - started, instruments)
                raise
            _finished(observation, time.monotonic() - started, instruments)
    finally:
        _flush(tracer_provider, meter_provider)


def _failed_with_exception(
    observation: RunObservation, exc: BaseException, elapsed: float, instruments: _Instruments
) -> None:
    span = observation.span
    description = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    span.record_exception(exc, escaped=True)
    span.set_status(Status(StatusCode.ERROR, description))
    span.set_attribute("auditor.run.status", "error")
    labels = {"trigger": observation.trigger, "status": "error"}
    instruments.runs.add(1, labels)
    instruments.duration.record(elapsed, labels)
    log.error(
        "audit run (%s) failed: %s",
        observation.trigger,
        description,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={
            "auditor.run.trigger": observation.trigger,
            "auditor.run.status": "error",
            "auditor.run.duration_s": round(elapsed, 3),
            "auditor.run.error": description,
        },
    )


def _finished(observation: RunObservation, elapsed: float, instruments: _Instruments) -> None:
    span = observation.span
    summary = observation.summary
    if summary is None:
        span.set_attribute("auditor.run.recorded", False)
        log.warning("audit run (%s) ended without a result", observation.trigger)
        return
    attributes = summary.attributes()
    span.set_attributes(attributes)
    if summary.status == RunStatus.FAILED.value:
        message = summary.first_error or "the audit could not complete"
        span.record_exception(
            AuditRunFailed(message), attributes={"auditor.run.id": summary.run_id}
        )
        span.set_status(Status(StatusCode.ERROR, message))
    elif summary.status == RunStatus.SUCCEEDED.value:
        span.set_status(Status(StatusCode.OK))
    _count(summary, instruments)
    level = {
        RunStatus.FAILED.value: logging.ERROR,
        RunStatus.PARTIAL.value: logging.WARNING,
    }.get(summary.status, logging.INFO)
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(summary.by_status.items())) or "none"
    log.log(
        level,
        "audit run %s (%s) %s in %.1f s: %d registries (%s), %d findings, %d errors, "
        "%d ARM requests (%d throttled), %d log queries, %.1f s waiting for throttling",
        summary.run_id,
        summary.trigger,
        summary.status,
        summary.duration_s or elapsed,
        summary.registries,
        by_status,
        summary.findings,
        summary.errors,
        summary.arm_requests,
        summary.arm_throttled,
        summary.log_queries,
        summary.throttle_wait_s,
        extra=attributes,
    )


def _count(summary: RunSummary, instruments: _Instruments) -> None:
    labels = {"trigger": summary.trigger, "status": summary.status}
    instruments.runs.add(1, labels)
    instruments.duration.record(summary.duration_s, labels)
    for status, count in summary.by_status.items():
        instruments.registries.add(count, {"trigger": summary.trigger, "status": status})
    for reason, count in summary.findings_by_reason.items():
        instruments.findings.add(count, {"trigger": summary.trigger, "reason": reason})
    if summary.errors:
        instruments.errors.add(summary.errors, {"trigger": summary.trigger})
    apis = (
        ("arm", summary.arm_requests, summary.arm_throttled, summary.arm_wait_s),
        ("logs", summary.log_attempts, summary.log_throttled, summary.log_wait_s),
    )
    for api, requests, throttled, waited in apis:
        if requests:
            instruments.requests.add(requests, {"api": api})
        if throttled:
            instruments.throttled.add(throttled, {"api": api})
        if waited:
            instruments.throttle_wait.add(waited, {"api": api})


@dataclass(frozen=True)
class _Instruments:
    runs: metrics.Counter
    duration: metrics.Histogram
    registries: metrics.Counter
    findings: metrics.Counter
    errors: metrics.Counter
    requests: metrics.Counter
    throttled: metrics.Counter
    throttle_wait: metrics.Counter


_instrument_cache: dict[int, tuple[object, _Instruments]] = {}


def _instruments(meter_provider: metrics.MeterProvider | None) -> _Instruments:
    """The run instruments of a meter, created once per provider (None: the global one)."""
    key = id(meter_provider)
    with _lock:
        cached = _instrument_cache.get(key)
        if cached is not None and cached[0] is meter_provider:
            return cached[1]
        meter = metrics.get_meter(INSTRUMENTATION_NAME, meter_provider=meter_provider)
        made = _Instruments(
            runs=meter.create_counter("auditor.runs", unit="{run}", description="Audit runs"),
            duration=meter.create_histogram(
                "auditor.run.duration", unit="s", description="Duration of audit runs"
            ),
            registries=meter.create_counter(
                "auditor.registries.audited",
                unit="{registry}",
                description="Registries judged, by status",
            ),
            findings=meter.create_counter(
                "auditor.findings", unit="{finding}", description="Findings, by reason code"
            ),
            errors=meter.create_counter(
                "auditor.run.errors", unit="{error}", description="Errors noted on runs"
            ),
            requests=meter.create_counter(
                "auditor.api.requests",
                unit="{request}",
                description="Requests to Azure (ARM, Log Analytics), retries included",
            ),
            throttled=meter.create_counter(
                "auditor.api.throttled",
                unit="{response}",
                description="Throttled (429) responses from Azure",
            ),
            throttle_wait=meter.create_counter(
                "auditor.api.throttle_wait",
                unit="s",
                description="Time spent waiting for Azure throttling (client-side pacing)",
            ),
        )
        _instrument_cache[key] = (meter_provider, made)
        return made


def _flush(
    tracer_provider: trace.TracerProvider | None, meter_provider: metrics.MeterProvider | None
) -> None:
    """Push the run's telemetry out now: a Functions instance may be frozen after the run."""
    for provider in (
        tracer_provider or trace.get_tracer_provider(),
        meter_provider or metrics.get_meter_provider(),
    ):
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            try:
                force_flush(_FLUSH_TIMEOUT_MS)
            except Exception:  # telemetry must never fail a run
                log.debug("telemetry flush failed", exc_info=True)
