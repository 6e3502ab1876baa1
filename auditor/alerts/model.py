"""Alert values shared by the pure planning, the stores and the sinks.

Plain frozen dataclasses: `transitions` builds them from verdicts without I/O, the stores turn
them into table rows, and the sinks render them. Nothing here knows a URL or a secret.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from auditor.facts import Reason, Registry, normalize_id


class AlertKind(enum.StrEnum):
    """What a notice says about an incident."""

    OPENED = "opened"
    REMINDER = "reminder"
    RESOLVED = "resolved"


class Topic(enum.StrEnum):
    """What an incident is about; each registry has at most one open incident per topic.
    The non-compliance topics are named after the catalog reason code that raises them."""

    COMPLIANCE = "compliance"  # the diagnostic settings (any noncompliant verdict)
    LOGGING_INTERRUPTED = "logging_interrupted"  # a setting deleted, compliant again since
    LOGIN_FAILURE_BURST = "login_failure_burst"
    ANONYMOUS_PULL = "anonymous_pull"


LOGIN_TOPICS: tuple[Topic, ...] = (Topic.LOGIN_FAILURE_BURST, Topic.ANONYMOUS_PULL)


class Change(enum.StrEnum):
    """Why a notice was sent, in words a reader can act on; stable values for consumers."""

    NEW_REGISTRY = "new_registry"  # first seen failing, never compliant
    BECAME_NONCOMPLIANT = "became_noncompliant"
    SETTING_DELETED = "setting_deleted"
    LOGGING_INTERRUPTED = "logging_interrupted"  # deleted and re-created between two runs
    SETTING_DISABLED = "setting_disabled"
    SETTING_CHANGED = "setting_changed"  # an activity-log / Event Grid write broke it
    WENT_SILENT = "went_silent"
    UNREADABLE = "unreadable"  # unknown counted as failing (AUDITOR_ALERT_ON_UNKNOWN)
    STILL_FAILING = "still_failing"
    LOGIN_FAILURE_BURST = "login_failure_burst"
    ANONYMOUS_PULL = "anonymous_pull"
    RECOVERED = "recovered"
    # The auditor remediated it (status `pending`, its events awaited): the fix is under way,
    # so its open incident is closed; should its events never come, `went_silent` opens one.
    REMEDIATED = "remediated"
    REGISTRY_REMOVED = "registry_removed"
    EXEMPTED = "exempted"  # an exemption now covers it: its open incident is closed
    EXEMPTION_EXPIRED = "exemption_expired"  # its exemption ended and it fails
    TEST = "test"


class SettingOperation(enum.StrEnum):
    WRITE = "write"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class SettingChange:
    """A diagnostic-setting write or delete seen in the activity log or an Event Grid event.

    Only enriches the alert text ("deleted by ..."); the verdict alone decides whether an
    alert is due, so a missed or duplicated event cannot open or close anything.
    """

    registry_id: str
    operation: SettingOperation
    setting_name: str = ""
    at: datetime | None = None
    caller: str = ""  # UPN, name or application id as Azure reports it
    source: str = "eventgrid"  # "eventgrid" or "activitylog"
    correlation_id: str = ""

    @property
    def registry_key(self) -> str:
        return normalize_id(self.registry_id)


def alert_key(registry_key: str, topic: Topic) -> str:
    """The identity of an incident line: one registry, one topic."""
    return registry_key if topic is Topic.COMPLIANCE else f"{registry_key}|{topic.value}"


def short_hash(text: str, length: int = 20) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True, slots=True)
class AlertState:
    """What the auditor last knew about one alert key, as stored between runs.

    `status`/`reason_codes` are the last judged ones (an `unknown` verdict that does not count
    as failing leaves them alone), so "compliant, then no setting" is recognised as a deleted
    setting even with an unreadable run in between.
    """

    key: str
    topic: Topic
    registry: Registry
    status: str
    reason_codes: tuple[str, ...] = ()
    ever_compliant: bool = False
    open: bool = False
    incident_id: str = ""  # of the open (or last) incident
    incidents: int = 0  # incidents opened so far; numbers the next one
    notices: int = 0  # notices sent in the current incident
    opened_at: datetime | None = None
    last_notified_at: datetime | None = None
    resolved_at: datetime | None = None
    first_seen_at: datetime | None = None
    updated_at: datetime | None = None
    etag: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Alert:
    """One notice, as every sink receives it. `id` is unique per notice; consumers dedupe on it."""

    id: str
    incident_id: str
    key: str
    kind: AlertKind
    topic: Topic
    change: Change
    registry: Registry
    status: str
    reasons: tuple[Reason, ...]
    detected_at: datetime  # when this run or event saw the condition
    opened_at: datetime  # when the incident was first detected
    setting_change: SettingChange | None = None
    run_id: str = ""
    test: bool = False
    # Sent again after an earlier hand-over whose outcome was never recorded (storage failed
    # or the run died): receivers that cannot deduplicate on `id` show it as a repeat.
    repeat: bool = False


def notice_id(incident_id: str, notice: int) -> str:
    return f"{incident_id}-{notice:03d}"
