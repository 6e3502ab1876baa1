"""The auditor's own telemetry: one span, metrics and one structured log record per run, read
back through the OpenTelemetry SDK's in-memory exporter and reader; a failed run is a failure."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from auditor import telemetry
from auditor.audit import AuditStats
from auditor.azure.inventory import Inventory
from auditor.azure.logs import LogsStats
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.pacing import PacingStats
from auditor.run_record import AuditRun, RunStatus

ROOT = Path(__file__).resolve().parents[2]
SUB = "00000000-0000-0000-0000-00000000000a"
STARTED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
FINISHED = datetime(2024, 5, 1, 12, 3, 30, tzinfo=UTC)
LOGIN_MISSING = "category_missing:ContainerRegistryLoginEvents"


def verdict(name: str, status: Status, *codes: str) -> Verdict:
    registry = Registry(
        id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
        f"Microsoft.ContainerRegistry/registries/{name}",
        name=name,
        subscription_id=SUB,
        resource_group="rg",
    )
    return Verdict(registry, status, tuple(Reason(code) for code in codes))


def audit_run(
    status: RunStatus = RunStatus.SUCCEEDED, errors: tuple[str, ...] = (), trigger: str = "timer"
) -> AuditRun:
    return AuditRun(
        run_id="20240501T120000Z-0a1b2c3d",
        started_at=STARTED,
        finished_at=FINISHED,
        status=status,
        verdicts=(
            verdict("acrgood01", Status.COMPLIANT),
            verdict("acrbad001", Status.NONCOMPLIANT, LOGIN_MISSING, "metrics_missing"),
            verdict("acrbad002", Status.NONCOMPLIANT, LOGIN_MISSING),
            verdict("acrdark01", Status.UNKNOWN, "unknown:http_403"),
        ),
        inventoried_subscriptions=frozenset({SUB}),
        errors=errors,
        trigger=trigger,
        log_queries=3,
    )


def clients(acquired: int = 41, throttled: int = 2, waited: float = 7.5) -> Any:
    stats = PacingStats(acquired=acquired, waited_seconds=waited, throttled=throttled)
    return SimpleNamespace(pacer=SimpleNamespace(stats=stats))


def logs_reader() -> Any:
    stats = LogsStats(queries=3, attempts=5, retried=2, throttled=1, failed=0)
    pacing = PacingStats(acquired=5, waited_seconds=1.25, throttled=1)
    return SimpleNamespace(stats=stats, pacer=SimpleNamespace(stats=pacing))


def audit_stats() -> AuditStats:
    inventory = Inventory(graph_queries=1, arm_list_calls=2)
    return AuditStats(registries=4, settings_reads=4, read_failures=1, inventory=inventory)


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def span(self) -> ReadableSpan:
        (span,) = self.spans.get_finished_spans()
        return span

    def points(self, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
        """Data points of one metric by their sorted attributes (sum or histogram count)."""
        data = self.metrics.get_metrics_data()
        out: dict[tuple[tuple[str, Any], ...], float] = {}
        for resource_metrics in data.resource_metrics if data else ():
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = point.count
                        out[tuple(sorted(point.attributes.items()))] = value
        return out


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def observe(otel: Telemetry, trigger: str = "timer") -> Any:
    return telemetry.observe_run(
        trigger, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider
    )


# ------------------------------------------------------------------------------ where it goes


@pytest.mark.parametrize(
    ("environ", "mode"),
    [
        ({}, telemetry.Mode.NONE),
        ({"OTEL_TRACES_EXPORTER": "console"}, telemetry.Mode.CONSOLE),
        ({"OTEL_METRICS_EXPORTER": "otlp, Console"}, telemetry.Mode.CONSOLE),
        ({"OTEL_TRACES_EXPORTER": "none"}, telemetry.Mode.NONE),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x"}, "azure-monitor"),
        ({"APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}, telemetry.Mode.NONE),
        (
            {
                "FUNCTIONS_WORKER_RUNTIME": "python",
                "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
                "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
            },
            telemetry.Mode.FUNCTIONS_WORKER,
        ),
        # `func start` locally: no worker telemetry, so the app configures the distro itself.
        (
            {
                "FUNCTIONS_WORKER_RUNTIME": "python",
                "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=x",
            },
            telemetry.Mode.AZURE_MONITOR,
        ),
    ],
)
def test_mode_follows_the_environment(environ: dict[str, str], mode: str) -> None:
    assert telemetry.choose_mode(environ) == mode


@pytest.fixture
def fresh_configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """`configure` as on a new process, with the Azure Monitor distro replaced by a recorder."""
    calls: list[dict[str, Any]] = []
    fake = ModuleType("azure.monitor.opentelemetry")
    fake.configure_azure_monitor = lambda **kwargs: calls.append(kwargs)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.monitor.opentelemetry", fake)
    monkeypatch.setattr(telemetry, "_mode", None)
    yield calls


def test_azure_monitor_is_configured_once_without_per_request_spans(
    fresh_configure: list[dict[str, Any]],
) -> None:
    environ = {"APPLICATIONINSIGHTS_CONNECTION_STRING": " InstrumentationKey=abc ", "X": "1"}
    assert telemetry.configure(environ) is telemetry.Mode.AZURE_MONITOR
    assert telemetry.configure(environ) is telemetry.Mode.AZURE_MONITOR
    (call,) = fresh_configure
    assert call["connection_string"] == "InstrumentationKey=abc"
    assert call["instrumentation_options"] == {
        "azure_sdk": {"enabled": False},
        "requests": {"enabled": False},
        "urllib": {"enabled": False},
        "urllib3": {"enabled": False},
    }
    assert call["resource"].attributes["service.name"] == "acr-auditor"


def test_functions_worker_telemetry_is_not_configured_twice(
    fresh_configure: list[dict[str, Any]],
) -> None:
    environ = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=abc",
    }
    assert telemetry.configure(environ, json_logs=True) is telemetry.Mode.FUNCTIONS_WORKER
    assert fresh_configure == []


def test_console_mode_prints_the_run_span_and_metrics() -> None:
    # A new process: the global providers can be set only once per process.
    script = textwrap.dedent(
        """
        from datetime import UTC, datetime
        from auditor import telemetry
        from auditor.run_record import AuditRun, RunStatus
        assert telemetry.configure() is telemetry.Mode.CONSOLE
        now = datetime.now(UTC)
        with telemetry.observe_run("cli") as observed:
            observed.record(AuditRun("r-1", now, now, RunStatus.SUCCEEDED, (), trigger="cli"))
        """
    )
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"}
    for name in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "FUNCTIONS_WORKER_RUNTIME"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "auditor.run"' in done.stderr
    assert '"auditor.run.id": "r-1"' in done.stderr
    assert '"name": "auditor.runs"' in done.stderr  # metrics flushed at exit


# ------------------------------------------------------------------------------ one run


def test_a_run_is_one_span_with_what_it_did(otel: Telemetry) -> None:
    with observe(otel) as observed:
        observed.record(
            audit_run(), clients=clients(), logs_reader=logs_reader(), stats=audit_stats()
        )
    span = otel.span()
    assert span.name == "auditor.run"
    assert span.status.status_code is StatusCode.OK
    attributes = dict(span.attributes or {})
    assert attributes["auditor.run.id"] == "20240501T120000Z-0a1b2c3d"
    assert attributes["auditor.run.trigger"] == "timer"
    assert attributes["auditor.run.status"] == "succeeded"
    assert attributes["auditor.run.duration_s"] == 210.0
    assert attributes["auditor.registries"] == 4
    assert attributes["auditor.registries.compliant"] == 1
    assert attributes["auditor.registries.noncompliant"] == 2
    assert attributes["auditor.registries.unknown"] == 1
    assert attributes["auditor.findings"] == 4
    assert attributes[f"auditor.findings.{LOGIN_MISSING}"] == 2
    assert attributes["auditor.findings.metrics_missing"] == 1
    assert json.loads(str(attributes["auditor.findings_by_reason"])) == {
        LOGIN_MISSING: 2,
        "metrics_missing": 1,
        "unknown:http_403": 1,
    }
    assert attributes["auditor.arm.requests"] == 41
    assert attributes["auditor.arm.throttled"] == 2
    assert attributes["auditor.arm.throttle_wait_s"] == 7.5
    assert attributes["auditor.inventory.graph_queries"] == 1
    assert attributes["auditor.inventory.arm_list_calls"] == 2
    assert attributes["auditor.settings.reads"] == 4
    assert attributes["auditor.settings.read_failures"] == 1
    assert attributes["auditor.logs.queries"] == 3
    assert attributes["auditor.logs.attempts"] == 5
    assert attributes["auditor.logs.throttled"] == 1
    assert attributes["auditor.logs.throttle_wait_s"] == 1.25
    assert not span.events


def test_a_run_is_counted_in_metrics(otel: Telemetry) -> None:
    with observe(otel) as observed:
        observed.record(audit_run(), clients=clients(), logs_reader=logs_reader())
    with observe(otel, trigger="event") as observed:
        observed.record(audit_run(RunStatus.PARTIAL, trigger="event"), clients=clients(3, 0, 0.0))

    assert otel.points("auditor.runs") == {
        (("status", "succeeded"), ("trigger", "timer")): 1,
        (("status", "partial"), ("trigger", "event")): 1,
    }
    assert otel.points("auditor.run.duration") == {
        (("status", "succeeded"), ("trigger", "timer")): 1,
        (("status", "partial"), ("trigger", "event")): 1,
    }
    findings = otel.points("auditor.findings")
    assert findings[(("reason", LOGIN_MISSING), ("trigger", "timer"))] == 2
    assert findings[(("reason", "unknown:http_403"), ("trigger", "event"))] == 1
    registries = otel.points("auditor.registries.audited")
    assert registries[(("status", "noncompliant"), ("trigger", "timer"))] == 2
    assert otel.points("auditor.api.requests") == {(("api", "arm"),): 44, (("api", "logs"),): 5}
    assert otel.points("auditor.api.throttled") == {(("api", "arm"),): 2, (("api", "logs"),): 1}
    assert otel.points("auditor.api.throttle_wait") == {
        (("api", "arm"),): 7.5,
        (("api", "logs"),): 1.25,
    }


def test_a_failed_run_is_a_failure_not_only_a_log_line(
    otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    failed = audit_run(RunStatus.FAILED, errors=("inventory failed: HTTP 403 AuthorizationFailed",))
    with caplog.at_level(logging.INFO, logger="auditor.telemetry"), observe(otel) as observed:
        observed.record(failed, clients=clients())
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "inventory failed: HTTP 403 AuthorizationFailed"
    (event,) = span.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"].endswith("AuditRunFailed")
    assert "AuthorizationFailed" in str(attributes["exception.message"])
    assert otel.points("auditor.runs") == {(("status", "failed"), ("trigger", "timer")): 1}
    assert otel.points("auditor.run.errors") == {(("trigger", "timer"),): 1}
    (record,) = [r for r in caplog.records if r.name == "auditor.telemetry"]
    assert record.levelno == logging.ERROR
    assert record.__dict__["auditor.run.status"] == "failed"


def test_an_exception_is_recorded_on_the_span_and_raised_again(
    otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="auditor.telemetry"),
        pytest.raises(RuntimeError, match="table service down"),
        observe(otel),
    ):
        raise RuntimeError("table service down")
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError: table service down"
    assert dict(span.attributes or {})["auditor.run.status"] == "error"
    (event,) = span.events
    assert dict(event.attributes or {})["exception.type"] == "RuntimeError"
    assert otel.points("auditor.runs") == {(("status", "error"), ("trigger", "timer")): 1}
    (record,) = [r for r in caplog.records if r.name == "auditor.telemetry"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


def test_a_partial_run_warns_and_keeps_the_span_status_unset(
    otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="auditor.telemetry"), observe(otel) as observed:
        observed.record(audit_run(RunStatus.PARTIAL, errors=("subscription x: HTTP 403",)))
    assert otel.span().status.status_code is StatusCode.UNSET
    (record,) = [r for r in caplog.records if r.name == "auditor.telemetry"]
    assert record.levelno == logging.WARNING


def test_a_block_that_records_nothing_still_ends_its_span(
    otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="auditor.telemetry"), observe(otel):
        pass
    assert dict(otel.span().attributes or {})["auditor.run.recorded"] is False
    assert otel.points("auditor.runs") == {}
    assert any(r.levelno == logging.WARNING for r in caplog.records)


# ------------------------------------------------------------------------------ structured logs


def test_the_run_record_is_structured_and_json_formatted(
    otel: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="auditor.telemetry"), observe(otel) as observed:
        observed.record(audit_run(), clients=clients(), logs_reader=logs_reader())
    (record,) = [r for r in caplog.records if r.name == "auditor.telemetry"]
    message = record.getMessage()
    assert "4 registries (1 compliant, 2 noncompliant, 1 unknown)" in message
    assert "41 ARM requests (2 throttled)" in message
    assert "8.8 s waiting for throttling" in message

    document = json.loads(telemetry.JsonFormatter().format(record))
    assert document["level"] == "INFO"
    assert document["logger"] == "auditor.telemetry"
    assert document["message"] == message
    assert document["auditor.run.id"] == "20240501T120000Z-0a1b2c3d"
    assert document["auditor.registries.noncompliant"] == 2
    assert document["auditor.findings"] == 4
    assert document["auditor.arm.throttle_wait_s"] == 7.5


def test_json_logs_carry_the_current_trace(otel: Telemetry) -> None:
    formatter = telemetry.JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "inside %s", ("span",), None)
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as span:
        document = json.loads(formatter.format(record))
    assert document["message"] == "inside span"
    assert document["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert "trace_id" not in json.loads(formatter.format(record))


def test_json_logging_leaves_existing_handlers_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    handler = telemetry.configure_json_logging()
    assert handler is not None and isinstance(handler.formatter, telemetry.JsonFormatter)
    assert root.handlers == [handler]
    assert telemetry.configure_json_logging() is None
