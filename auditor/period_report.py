"""The printable compliance report of a period: what an auditor files.

One HTML page, self-contained (its CSS inline, no script, no external asset), that prints on
A4: the policy judged against, the scope, the runs that covered the period, the fleet at its
end, each registry's time in compliance and every noncompliant interval. Rendered by Jinja2
from `templates/period_report.html` with autoescaping on: every stored string (registry
names, reason codes) reaches the page escaped. Pure: the documents and the time are given.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from importlib import resources

import jinja2

from auditor.compliance_history import (
    ComplianceAtDocument,
    PeriodDocument,
    noncompliant_intervals,
)
from auditor.facts import Status
from auditor.policy import PolicyDocument
from auditor.summary import iso

TEMPLATE = "period_report.html"


@cache
def _template() -> jinja2.Template:
    source = resources.files("auditor").joinpath("templates", TEMPLATE).read_text("utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters["duration"] = duration
    return environment.from_string(source)


def duration(seconds: int | None) -> str:
    """`3d 4h 5m` for people; `-` when there is none."""
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    return " ".join(parts) if parts else f"{secs}s"


def render_report(
    period: PeriodDocument,
    end_state: ComplianceAtDocument,
    *,
    policy: PolicyDocument,
    scope: Sequence[str],
    generated_at: datetime,
) -> str:
    """The report's HTML. `scope`: the configured subscriptions (empty: every subscription
    the auditor can see, and then the ones the history holds are listed)."""
    seen = sorted({r["subscriptionId"] for r in period["registries"]})
    return _template().render(
        period=period,
        end=end_state,
        policy=policy,
        configured=list(scope),
        seen=seen,
        generated_at=iso(generated_at),
        noncompliant=noncompliant_intervals(period),
        statuses=[status.value for status in Status],
    )
