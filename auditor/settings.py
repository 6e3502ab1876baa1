"""The auditor's settings, read once from environment variables (Functions app settings).

The variable names are a contract with deployments: docs/settings.md documents each one and
local.settings.sample.json lists them all (a unit test keeps the three in step through
`SETTING_NAMES`). An empty value counts as unset, because app settings and the sample file
cannot leave a variable out. Every bad value raises `ConfigError` naming the variable; values
are never echoed for storage settings, whose connection strings carry account keys.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from auditor.errors import ConfigError
from auditor.policy import ACR_LOG_CATEGORIES, GUID_PATTERN, Destination, Policy, parse_destinations

SUBSCRIPTIONS = "AUDITOR_SUBSCRIPTIONS"
REQUIRED_CATEGORIES = "AUDITOR_REQUIRED_CATEGORIES"
REQUIRE_METRICS = "AUDITOR_REQUIRE_METRICS"
ACCEPTED_DESTINATIONS = "AUDITOR_ACCEPTED_DESTINATIONS"
ACCEPTED_WORKSPACES = "AUDITOR_ACCEPTED_WORKSPACES"
REQUIRE_DEDICATED = "AUDITOR_REQUIRE_DEDICATED"
SCHEDULE = "AUDITOR_SCHEDULE"
ARM_ENDPOINT = "AUDITOR_ARM_ENDPOINT"
ARM_AUDIENCE = "AUDITOR_ARM_AUDIENCE"
LOGS_ENDPOINT = "AUDITOR_LOGS_ENDPOINT"
LOGS_AUDIENCE = "AUDITOR_LOGS_AUDIENCE"
STORAGE = "AUDITOR_STORAGE"
WEBJOBS_STORAGE = "AzureWebJobsStorage"
WEBJOBS_STORAGE_ACCOUNT = "AzureWebJobsStorage__accountName"
WEBJOBS_STORAGE_TABLE_URI = "AzureWebJobsStorage__tableServiceUri"
TABLE_PREFIX = "AUDITOR_TABLE_PREFIX"
MAX_CONCURRENCY = "AUDITOR_MAX_CONCURRENCY"
ARM_READS_PER_SECOND = "AUDITOR_ARM_READS_PER_SECOND"
ARM_BURST = "AUDITOR_ARM_BURST"
HTTP_RETRIES = "AUDITOR_HTTP_RETRIES"
LOGS_LOOKBACK_HOURS = "AUDITOR_LOGS_LOOKBACK_HOURS"
SILENT_AFTER_HOURS = "AUDITOR_SILENT_AFTER_HOURS"
PENDING_MINUTES = "AUDITOR_PENDING_MINUTES"
BURST_FAILURES = "AUDITOR_BURST_FAILURES"
BURST_MINUTES = "AUDITOR_BURST_MINUTES"
LOGS_CONCURRENCY = "AUDITOR_LOGS_CONCURRENCY"
ALERT_WEBHOOK_URL = "AUDITOR_ALERT_WEBHOOK_URL"
ALERT_WEBHOOK_SECRET = "AUDITOR_ALERT_WEBHOOK_SECRET"  # noqa: S105 - a variable name
ALERT_TEAMS_URL = "AUDITOR_ALERT_TEAMS_URL"
ALERT_SLACK_URL = "AUDITOR_ALERT_SLACK_URL"
ALERT_QUEUE = "AUDITOR_ALERT_QUEUE"
ALERT_LOG_RECORDS = "AUDITOR_ALERT_LOG_RECORDS"
ALERT_REMIND_HOURS = "AUDITOR_ALERT_REMIND_HOURS"
ALERT_LOGIN = "AUDITOR_ALERT_LOGIN"
ALERT_ON_UNKNOWN = "AUDITOR_ALERT_ON_UNKNOWN"

# Every variable this module reads.
SETTING_NAMES: tuple[str, ...] = (
    SUBSCRIPTIONS,
    REQUIRED_CATEGORIES,
    REQUIRE_METRICS,
    ACCEPTED_DESTINATIONS,
    ACCEPTED_WORKSPACES,
    REQUIRE_DEDICATED,
    SCHEDULE,
    ARM_ENDPOINT,
    ARM_AUDIENCE,
    LOGS_ENDPOINT,
    LOGS_AUDIENCE,
    STORAGE,
    WEBJOBS_STORAGE,
    WEBJOBS_STORAGE_ACCOUNT,
    WEBJOBS_STORAGE_TABLE_URI,
    TABLE_PREFIX,
    MAX_CONCURRENCY,
    ARM_READS_PER_SECOND,
    ARM_BURST,
    HTTP_RETRIES,
    LOGS_LOOKBACK_HOURS,
    SILENT_AFTER_HOURS,
    PENDING_MINUTES,
    BURST_FAILURES,
    BURST_MINUTES,
    LOGS_CONCURRENCY,
    ALERT_WEBHOOK_URL,
    ALERT_WEBHOOK_SECRET,
    ALERT_TEAMS_URL,
    ALERT_SLACK_URL,
    ALERT_QUEUE,
    ALERT_LOG_RECORDS,
    ALERT_REMIND_HOURS,
    ALERT_LOGIN,
    ALERT_ON_UNKNOWN,
)

DEFAULT_SCHEDULE = "0 0 * * * *"
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
# Token audience for ARM; stays the public cloud's when the endpoint points at an emulator.
DEFAULT_ARM_AUDIENCE = "https://management.azure.com"
DEFAULT_LOGS_ENDPOINT = "https://api.loganalytics.io"
DEFAULT_LOGS_AUDIENCE = "https://api.loganalytics.io"
DEFAULT_TABLE_PREFIX = "acraudit"
DEFAULT_MAX_CONCURRENCY = 16
# ARM's read bucket per subscription and principal: refilled at 25/s, 250 burst (azure-facts §5).
DEFAULT_ARM_READS_PER_SECOND = 25.0
DEFAULT_ARM_BURST = 250
DEFAULT_HTTP_RETRIES = 4
# Log evidence (auditor.logs_audit): how far back to query, when a registry counts as silent,
# how long after a setting change to wait (Azure needs up to 90 minutes), what is a burst.
DEFAULT_LOGS_LOOKBACK_HOURS = 24.0
DEFAULT_SILENT_AFTER_HOURS = 24.0
DEFAULT_PENDING_MINUTES = 90.0
DEFAULT_BURST_FAILURES = 10
DEFAULT_BURST_MINUTES = 5.0
# Log Analytics runs at most 5 concurrent queries per user (azure-facts §4).
DEFAULT_LOGS_CONCURRENCY = 5
DEFAULT_ALERT_REMIND_HOURS = 24.0
# An HMAC key much shorter than this is guessable offline from one signed body.
MIN_WEBHOOK_SECRET_LENGTH = 16

# Maps Policy field names to the variable that sets them, to re-label Policy's errors.
_POLICY_VARIABLES = {
    "required_categories": REQUIRED_CATEGORIES,
    "require_metrics": REQUIRE_METRICS,
    "accepted_destinations": ACCEPTED_DESTINATIONS,
    "accepted_workspaces": ACCEPTED_WORKSPACES,
    "require_dedicated": REQUIRE_DEDICATED,
}

# Anchored at both ends, so `.match` is as strict as `.fullmatch`.
GUID_RE = re.compile(rf"{GUID_PATTERN}\Z")
_TABLE_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}")
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
# Azure queue names: 3-63 lower-case letters, digits and single hyphens, no hyphen at either end.
_QUEUE_NAME = re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(?:-[a-z0-9]+)*")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

_T = TypeVar("_T", int, float)


@dataclass(frozen=True)
class Settings:
    """Validated settings. Build with `Settings.from_env(os.environ)`."""

    policy: Policy
    storage_connection_string: str | None = field(repr=False)  # holds an account key
    storage_table_endpoint: str | None
    subscriptions: tuple[str, ...] = ()  # lower-case GUIDs; empty means every visible one
    schedule: str = DEFAULT_SCHEDULE
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    arm_audience: str = DEFAULT_ARM_AUDIENCE
    logs_endpoint: str = DEFAULT_LOGS_ENDPOINT
    logs_audience: str = DEFAULT_LOGS_AUDIENCE
    table_prefix: str = DEFAULT_TABLE_PREFIX
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    arm_reads_per_second: float = DEFAULT_ARM_READS_PER_SECOND
    arm_burst: int = DEFAULT_ARM_BURST
    http_retries: int = DEFAULT_HTTP_RETRIES
    logs_lookback_hours: float = DEFAULT_LOGS_LOOKBACK_HOURS
    silent_after_hours: float = DEFAULT_SILENT_AFTER_HOURS
    pending_minutes: float = DEFAULT_PENDING_MINUTES
    burst_failures: int = DEFAULT_BURST_FAILURES
    burst_minutes: float = DEFAULT_BURST_MINUTES
    logs_concurrency: int = DEFAULT_LOGS_CONCURRENCY
    # Alert sinks (docs/alerts.md). Webhook URLs carry their own credentials (Slack and Teams
    # put a token in the path or query), so they are as secret as the HMAC key: never in repr.
    alert_webhook_url: str | None = field(default=None, repr=False)
    alert_webhook_secret: str | None = field(default=None, repr=False)
    alert_teams_url: str | None = field(default=None, repr=False)
    alert_slack_url: str | None = field(default=None, repr=False)
    alert_queue: str | None = None
    alert_log_records: bool = True
    alert_remind_hours: float = DEFAULT_ALERT_REMIND_HOURS  # 0: no reminders
    alert_login: bool = False
    alert_on_unknown: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, require_storage: bool = True) -> Settings:
        """Read and check every setting; ConfigError names the first bad variable.

        `require_storage=False` (a CLI run that stores nothing) lets both storage fields be None
        when no storage is configured; a configured but malformed value is still an error.
        """
        env = _Env(environ)
        connection_string, table_endpoint = _storage(env, required=require_storage)
        return cls(
            policy=_policy(env),
            storage_connection_string=connection_string,
            storage_table_endpoint=table_endpoint,
            subscriptions=_subscriptions(env),
            schedule=_schedule(env.get(SCHEDULE) or DEFAULT_SCHEDULE),
            arm_endpoint=_https_url(ARM_ENDPOINT, env.get(ARM_ENDPOINT) or DEFAULT_ARM_ENDPOINT),
            arm_audience=_https_url(ARM_AUDIENCE, env.get(ARM_AUDIENCE) or DEFAULT_ARM_AUDIENCE),
            logs_endpoint=_https_url(
                LOGS_ENDPOINT, env.get(LOGS_ENDPOINT) or DEFAULT_LOGS_ENDPOINT
            ),
            logs_audience=_https_url(
                LOGS_AUDIENCE, env.get(LOGS_AUDIENCE) or DEFAULT_LOGS_AUDIENCE
            ),
            table_prefix=_table_prefix(env.get(TABLE_PREFIX) or DEFAULT_TABLE_PREFIX),
            max_concurrency=_number(
                env, MAX_CONCURRENCY, int, DEFAULT_MAX_CONCURRENCY, low=1, high=256
            ),
            arm_reads_per_second=_number(
                env, ARM_READS_PER_SECOND, float, DEFAULT_ARM_READS_PER_SECOND, above=0.0
            ),
            arm_burst=_number(env, ARM_BURST, int, DEFAULT_ARM_BURST, low=1),
            http_retries=_number(env, HTTP_RETRIES, int, DEFAULT_HTTP_RETRIES, low=0, high=10),
            logs_lookback_hours=_number(
                env, LOGS_LOOKBACK_HOURS, float, DEFAULT_LOGS_LOOKBACK_HOURS, low=1.0, high=720.0
            ),
            silent_after_hours=_number(
                env, SILENT_AFTER_HOURS, float, DEFAULT_SILENT_AFTER_HOURS, low=1.0, high=720.0
            ),
            pending_minutes=_number(
                env, PENDING_MINUTES, float, DEFAULT_PENDING_MINUTES, low=0.0, high=1440.0
            ),
            burst_failures=_number(
                env, BURST_FAILURES, int, DEFAULT_BURST_FAILURES, low=1, high=100_000
            ),
            burst_minutes=_number(
                env, BURST_MINUTES, float, DEFAULT_BURST_MINUTES, low=1.0, high=1440.0
            ),
            logs_concurrency=_number(
                env, LOGS_CONCURRENCY, int, DEFAULT_LOGS_CONCURRENCY, low=1, high=5
            ),
            alert_webhook_url=_alert_url(env, ALERT_WEBHOOK_URL),
            alert_webhook_secret=_webhook_secret(env),
            alert_teams_url=_alert_url(env, ALERT_TEAMS_URL),
            alert_slack_url=_alert_url(env, ALERT_SLACK_URL),
            alert_queue=_queue_name(env.get(ALERT_QUEUE)),
            alert_log_records=_bool(env, ALERT_LOG_RECORDS, default=True),
            alert_remind_hours=_number(
                env, ALERT_REMIND_HOURS, float, DEFAULT_ALERT_REMIND_HOURS, low=0.0, high=8760.0
            ),
            alert_login=_bool(env, ALERT_LOGIN, default=False),
            alert_on_unknown=_bool(env, ALERT_ON_UNKNOWN, default=False),
        )


class _Env:
    """The environment with blank values treated as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name)
        if value is None or not value.strip():
            return None
        return value.strip()

    def items(self, name: str) -> list[str] | None:
        """A comma list; None when unset."""
        value = self.get(name)
        if value is None:
            return None
        return [item.strip() for item in value.split(",") if item.strip()]


def _policy(env: _Env) -> Policy:
    categories = env.items(REQUIRED_CATEGORIES)
    destinations = env.items(ACCEPTED_DESTINATIONS)
    try:
        return Policy(
            required_categories=tuple(categories) if categories else ACR_LOG_CATEGORIES,
            require_metrics=_bool(env, REQUIRE_METRICS, default=True),
            accepted_destinations=parse_destinations(destinations or [Destination.WORKSPACE]),
            accepted_workspaces=frozenset(env.items(ACCEPTED_WORKSPACES) or ()),
            require_dedicated=_bool(env, REQUIRE_DEDICATED, default=True),
        )
    except ConfigError as error:
        variable = _POLICY_VARIABLES.get(error.setting, error.setting)
        raise ConfigError(variable, error.problem) from None


def _bool(env: _Env, name: str, *, default: bool) -> bool:
    value = env.get(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(name, f"{value!r} is not a boolean (use true/false, 1/0 or yes/no)")


def _subscriptions(env: _Env) -> tuple[str, ...]:
    ids: list[str] = []
    for item in env.items(SUBSCRIPTIONS) or ():
        if not GUID_RE.match(item):
            raise ConfigError(SUBSCRIPTIONS, f"{item!r} is not a subscription id (a GUID)")
        if item.lower() not in ids:
            ids.append(item.lower())
    return tuple(ids)


def _storage(env: _Env, *, required: bool) -> tuple[str | None, str | None]:
    """(connection string, table endpoint): one of them, or neither when not `required`."""
    for name in (STORAGE, WEBJOBS_STORAGE):
        value = env.get(name)
        if value is not None:
            _check_connection_string(name, value)
            return value, None
    uri = env.get(WEBJOBS_STORAGE_TABLE_URI)
    if uri is not None:  # more specific than the account name (e.g. sovereign clouds)
        return None, _https_url(WEBJOBS_STORAGE_TABLE_URI, uri, secret=True)
    account = env.get(WEBJOBS_STORAGE_ACCOUNT)
    if account is not None:
        if not _ACCOUNT_NAME.fullmatch(account):
            raise ConfigError(
                WEBJOBS_STORAGE_ACCOUNT,
                "is not a storage account name (3-24 lower-case letters and digits)",
            )
        return None, f"https://{account}.table.core.windows.net"
    if not required:
        return None, None
    raise ConfigError(
        STORAGE,
        f"no Table Storage configured: set {STORAGE} or {WEBJOBS_STORAGE} to a connection "
        f"string, or {WEBJOBS_STORAGE_ACCOUNT} or {WEBJOBS_STORAGE_TABLE_URI} for "
        "identity-based access",
    )


def _check_connection_string(name: str, value: str) -> None:
    # Never include `value` in the message: it normally contains AccountKey.
    pairs = [part for part in value.split(";") if part.strip()]
    keys = set()
    for pair in pairs:
        key, sep, _ = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                name,
                "is not a storage connection string (expected Key=Value pairs separated by ';')",
            )
        keys.add(key.strip().lower())
    if not keys & {"usedevelopmentstorage", "accountname", "tableendpoint"}:
        raise ConfigError(
            name,
            "is not a storage connection string (it needs AccountName, TableEndpoint or "
            "UseDevelopmentStorage)",
        )


def _https_url(name: str, value: str, *, secret: bool = False) -> str:
    # A storage URI may carry a SAS token in its query: describe it, never quote it.
    shown = "the value" if secret else repr(value)
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise ConfigError(name, f"{shown} is not a URL") from None
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ConfigError(name, f"{shown} must be an https:// URL with a host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(name, f"{shown} must not contain credentials, a query or a fragment")
    return value.rstrip("/")


def _alert_url(env: _Env, name: str) -> str | None:
    """An alert destination: https, or http to a loopback receiver for local testing.

    The value is never quoted in errors: Slack and Teams URLs are bearer credentials.
    """
    value = env.get(name)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise ConfigError(name, "the value is not a URL") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not host or not (scheme == "https" or (scheme == "http" and host in _LOOPBACK_HOSTS)):
        raise ConfigError(
            name,
            "the value must be an https:// URL with a host "
            "(http:// only for 127.0.0.1 or localhost)",
        )
    if parts.username or parts.password or parts.fragment:
        raise ConfigError(name, "the value must not contain user:password@ or a #fragment")
    return value


def _webhook_secret(env: _Env) -> str | None:
    secret = env.get(ALERT_WEBHOOK_SECRET)
    if secret is None:
        return None
    if env.get(ALERT_WEBHOOK_URL) is None:
        raise ConfigError(ALERT_WEBHOOK_SECRET, f"is set but {ALERT_WEBHOOK_URL} is not")
    if len(secret) < MIN_WEBHOOK_SECRET_LENGTH:
        raise ConfigError(
            ALERT_WEBHOOK_SECRET, f"must be at least {MIN_WEBHOOK_SECRET_LENGTH} characters"
        )
    return secret


def _queue_name(value: str | None) -> str | None:
    if value is not None and not _QUEUE_NAME.fullmatch(value):
        raise ConfigError(
            ALERT_QUEUE,
            f"{value!r} is not a queue name (3-63 lower-case letters, digits and single "
            "hyphens, starting and ending with a letter or digit)",
        )
    return value


def _table_prefix(value: str) -> str:
    if not _TABLE_PREFIX.fullmatch(value):
        raise ConfigError(
            TABLE_PREFIX,
            f"{value!r} must start with a letter and hold only letters and digits, "
            "at most 40 characters (Azure table names are alphanumeric)",
        )
    return value


def _number(
    env: _Env,
    name: str,
    kind: Callable[[str], _T],
    default: _T,
    *,
    low: _T | None = None,
    high: _T | None = None,
    above: _T | None = None,
) -> _T:
    text = env.get(name)
    if text is None:
        return default
    noun = "an integer" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise ConfigError(name, f"{text!r} is not {noun}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(name, f"{text!r} is not a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(name, f"{text!r} must be {bounds}")
    if above is not None and value <= above:
        raise ConfigError(name, f"{text!r} must be greater than {above:g}")
    return value


# NCRONTAB: second minute hour day month day-of-week, as Azure Functions timer triggers use.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, tuple("jan feb mar apr may jun jul aug sep oct nov dec".split())),
    ("day-of-week", 0, 6, tuple("sun mon tue wed thu fri sat".split())),
)
_CRON_ITEM = re.compile(r"(?P<range>\*|(?P<a>\w+)(?:-(?P<b>\w+))?)(?:/(?P<step>\d+))?")


def _schedule(value: str) -> str:
    fields = value.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ConfigError(
            SCHEDULE,
            f"{value!r} has {len(fields)} fields; NCRONTAB needs 6: "
            "second minute hour day month day-of-week (e.g. '0 0 * * * *')",
        )
    for text, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            match = _CRON_ITEM.fullmatch(item)
            ok = match is not None
            if match is not None:
                bounds = [b for b in (match["a"], match["b"]) if b is not None]
                ok = all(_cron_value(b, low, high, names) for b in bounds)
                ok = ok and (match["step"] is None or int(match["step"]) >= 1)
            if not ok:
                raise ConfigError(
                    SCHEDULE, f"{value!r}: {item!r} is not a valid {label} ({low}-{high})"
                )
    return " ".join(fields)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    if text.isdigit():
        return low <= int(text) <= high
    return text.lower() in names
