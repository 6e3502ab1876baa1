"""The auditor's settings: each environment variable declared once, read and checked once.

A variable is one field of a group (policy, audit, ARM, Log Analytics, storage, alerts): its
name, type, accepted format and bounds, default and description sit in that one declaration.
The names are a contract with deployments. docs/settings.md's tables and
local.settings.sample.json are rendered from the declarations by `python -m
auditor.settings_docs`, and a unit test fails while they differ. An empty value counts as
unset, because app settings and the sample file cannot leave a variable out. Every bad value
raises `ConfigError` naming the variable; secret values (connection strings, sink URLs, the
webhook key) are never quoted in an error nor shown in a repr.

The groups are pydantic models, not pydantic-settings: the values come from a mapping the
caller passes (the CLI, tests and the demo pass their own), lists are comma-separated rather
than JSON, booleans are exactly true/false, 1/0 or yes/no, and a blank value is unset, so
pydantic-settings' environment source would have to be replaced or disabled piece by piece.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import SplitResult, urlsplit

from croniter import CroniterError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, PydanticUseDefault, core_schema

from auditor.errors import ConfigError
from auditor.exemptions import Exemption, ExemptionSettingError, parse_setting
from auditor.policy import GUID_PATTERN, Destination, Policy, is_workspace_id, parse_destinations
from auditor.schedule import next_fire
from auditor.tags import TagRule, keep, parse_rule

# Anchored at both ends, so `.match` is as strict as `.fullmatch`.
GUID_RE = re.compile(rf"{GUID_PATTERN}\Z")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


# ------------------------------------------------------------------ how a value is read


class _Kind:
    """How a variable's text becomes its value.

    Used as `Annotated` metadata, so pydantic runs `parse` before it checks the field's type.
    `parse` raises ValueError with a message that never quotes a secret value; `accepts` and
    `show` describe the format and the default in docs/settings.md and the sample. A value that
    is not text (a group built in code) passes unparsed.
    """

    def parse(self, text: str) -> Any:
        raise NotImplementedError

    def accepts(self) -> str:
        raise NotImplementedError

    def show(self, value: Any) -> str:
        return str(value)

    def _validate(self, value: Any) -> Any:
        return self.parse(value) if isinstance(value, str) else value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self._validate, handler(source))


class _Flag(_Kind):
    def accepts(self) -> str:
        return "`true`/`false`, `1`/`0` or `yes`/`no`, any case"

    def parse(self, text: str) -> bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a boolean (use true/false, 1/0 or yes/no)")

    def show(self, value: Any) -> str:
        return "true" if value else "false"


_FLAG = _Flag()


@dataclass(frozen=True)
class _Number(_Kind):
    """An int or a float within bounds; with a `unit`, a duration counted in that unit."""

    kind: type[int] | type[float]
    low: float | None = None
    high: float | None = None
    above: float | None = None
    unit: str | None = None  # a timedelta keyword: "hours", "minutes"

    def accepts(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        noun = f"{noun} of {self.unit}" if self.unit else noun
        if self.above is not None:
            return f"{noun} above {self.above:g}"
        if self.high is None:
            return f"{noun}, at least {self.low:g}"
        return f"{noun} from {self.low:g} to {self.high:g}"

    def parse(self, text: str) -> Any:
        noun = "an integer" if self.kind is int else "a number"
        try:
            value = self.kind(text)
        except ValueError:
            raise ValueError(f"{_shown(text)} is not {noun}") from None
        if not math.isfinite(value):
            raise ValueError(f"{_shown(text)} is not a finite number")
        low, high = self.low, self.high
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise ValueError(f"{_shown(text)} must be {bounds}")
        if self.above is not None and value <= self.above:
            raise ValueError(f"{_shown(text)} must be greater than {self.above:g}")
        return timedelta(**{self.unit: value}) if self.unit else value

    def show(self, value: Any) -> str:
        if self.unit:
            value = value / timedelta(**{self.unit: 1})
        return f"{value:g}"


@dataclass(frozen=True)
class _Items(_Kind):
    """A comma-separated list; one that lists nothing (`,`) is unset, like a blank value."""

    convert: Callable[[list[str]], Any]
    what: str

    def accepts(self) -> str:
        return f"comma-separated {self.what}"

    def parse(self, text: str) -> Any:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise PydanticUseDefault
        return self.convert(items)

    def show(self, value: Any) -> str:
        items = [str(item) for item in value]
        return ",".join(items if isinstance(value, tuple) else sorted(items))


@dataclass(frozen=True)
class _Pattern(_Kind):
    pattern: re.Pattern[str]
    problem: str  # `{!r}` stands for the value, where it may be quoted
    described: str

    def accepts(self) -> str:
        return self.described

    def parse(self, text: str) -> str:
        if not self.pattern.fullmatch(text):
            raise ValueError(self.problem.format(text))
        return text


@dataclass(frozen=True)
class _HttpsUrl(_Kind):
    """An https:// URL with no credentials, query or fragment; trailing slashes dropped."""

    secret: bool = False  # a storage URI may carry a SAS token: describe it, never quote it

    def accepts(self) -> str:
        return "an `https://` URL without credentials, query or fragment"

    def parse(self, text: str) -> str:
        shown = "the value" if self.secret else _shown(text)
        parts = _split_url(text, shown)
        if parts.username or parts.password:
            # Never quoted: the value holds a password.
            raise ValueError("the value must not contain credentials (user:password@)")
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise ValueError(f"{shown} must be an https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError(f"{shown} must not contain credentials, a query or a fragment")
        return text.rstrip("/")


def _split_url(text: str, shown: str) -> SplitResult:
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{shown} is not a URL") from None
    return parts


class _AlertUrl(_Kind):
    """An alert destination: https, or http to a loopback receiver for local testing.

    Never quoted: Slack and Teams URLs are bearer credentials.
    """

    def accepts(self) -> str:
        return "an `https://` URL (`http://` only for `127.0.0.1`, `localhost` or `::1`)"

    def parse(self, text: str) -> str:
        parts = _split_url(text, "the value")
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        if not host or not (scheme == "https" or (scheme == "http" and host in _LOOPBACK_HOSTS)):
            raise ValueError(
                "the value must be an https:// URL with a host "
                "(http:// only for 127.0.0.1 or localhost)"
            )
        if parts.username or parts.password or parts.fragment:
            raise ValueError("the value must not contain user:password@ or a #fragment")
        return text


class _ConnectionString(_Kind):
    """Never quoted: a connection string normally contains AccountKey."""

    def accepts(self) -> str:
        return "a storage connection string"

    def parse(self, text: str) -> str:
        keys = set()
        for pair in (part for part in text.split(";") if part.strip()):
            key, sep, _ = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(
                    "is not a storage connection string (expected Key=Value pairs separated by ';')"
                )
            keys.add(key.strip().lower())
        if not keys & {"usedevelopmentstorage", "accountname", "tableendpoint"}:
            raise ValueError(
                "is not a storage connection string (it needs AccountName, TableEndpoint or "
                "UseDevelopmentStorage)"
            )
        return text


@dataclass(frozen=True)
class _Secret(_Kind):
    min_length: int

    def accepts(self) -> str:
        return f"at least {self.min_length} characters"

    def parse(self, text: str) -> str:
        if len(text) < self.min_length:
            raise ValueError(f"must be at least {self.min_length} characters")
        return text


class _Exemptions(_Kind):
    """A JSON list of exemptions (docs/exemptions.md); errors name the entry and field."""

    def accepts(self) -> str:
        return (
            "a JSON list of objects: `registryId`, `reason`, `expiresOn` (YYYY-MM-DD), "
            "optional `exemptionCategory`, `ticket`, `approvedBy`"
        )

    def parse(self, text: str) -> dict[str, Exemption]:
        try:
            return parse_setting(text)
        except ExemptionSettingError as error:
            raise ValueError(str(error)) from None

    def show(self, value: Any) -> str:
        return "" if not value else f"{len(value)} exemptions"


class _Tag(_Kind):
    def accepts(self) -> str:
        return "a tag name, or `name=value`"

    def parse(self, text: str) -> TagRule:
        return parse_rule(text)


# NCRONTAB: second minute hour day month day-of-week, as Azure Functions timer triggers use.
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day", 1, 31, ()),
    ("month", 1, 12, tuple("jan feb mar apr may jun jul aug sep oct nov dec".split())),
    ("day-of-week", 0, 6, tuple("sun mon tue wed thu fri sat".split())),
)
# A step has at most 3 digits: none of the fields has more than 60 values.
_CRON_ITEM = re.compile(r"(?P<range>\*|(?P<a>\w+)(?:-(?P<b>\w+))?)(?:/(?P<step>\d{1,3}))?")
# Whether an expression ever fires is a property of the expression: looked for from a fixed
# instant over 8 years (two leap cycles, so 29 February counts), not from the wall clock.
_FIRES_FROM = datetime(2000, 1, 1, tzinfo=UTC)
_FIRES_WITHIN = timedelta(days=8 * 366)


class _Schedule(_Kind):
    def accepts(self) -> str:
        return "NCRONTAB, 6 fields: second minute hour day month day-of-week"

    def parse(self, text: str) -> str:
        fields = text.split()
        if len(fields) != len(_CRON_FIELDS):
            raise ValueError(
                f"{text!r} has {len(fields)} fields; NCRONTAB needs 6: "
                "second minute hour day month day-of-week (e.g. '0 0 * * * *')"
            )
        for field_text, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
            for item in field_text.split(","):
                if not _cron_item_ok(item, low, high, names):
                    item_shown = _shown(item)
                    raise ValueError(
                        f"{_shown(text)}: {item_shown} is not a valid {label} ({low}-{high})"
                    )
        expression = " ".join(fields)
        if not _fires(expression):
            raise ValueError(f"{_shown(text)} never fires (no such date)")
        return expression


def _fires(expression: str) -> bool:
    try:
        return next_fire(expression, _FIRES_FROM) - _FIRES_FROM <= _FIRES_WITHIN
    except (CroniterError, ValueError):
        return False


def _shown(text: str, limit: int = 60) -> str:
    """A value quoted in an error, cut short: a 5,000-character value helps nobody."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _cron_item_ok(item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    match = _CRON_ITEM.fullmatch(item)
    if match is None:
        return False
    bounds = [b for b in (match["a"], match["b"]) if b is not None]
    step_ok = match["step"] is None or int(match["step"]) >= 1
    return step_ok and all(_cron_value(b, low, high, names) for b in bounds)


def _cron_value(text: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    if text.isdigit():
        return low <= int(text) <= high
    return text.lower() in names


def _subscription_ids(items: list[str]) -> tuple[str, ...]:
    for item in items:
        if not GUID_RE.match(item):
            raise ValueError(f"{item!r} is not a subscription id (a GUID)")
    return tuple(dict.fromkeys(item.lower() for item in items))


_HTTPS_URL = _HttpsUrl()
_ALERT_URL = _AlertUrl()
_CONNECTION_STRING = _ConnectionString()
_ARM = "https://management.azure.com"
_LOGS = "https://api.loganalytics.io"


# ------------------------------------------------------------------------------ groups


class SettingsGroup(BaseModel):
    """One group of variables; a field's validation alias is its variable's name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def variables(cls) -> tuple[str, ...]:
        return tuple(cls.variable(name) for name in cls.model_fields)

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable that sets `field`."""
        alias = cls.model_fields[field].validation_alias
        assert isinstance(alias, str), f"{cls.__name__}.{field} declares no variable"
        return alias

    @classmethod
    def declared(cls) -> tuple[Variable, ...]:
        return tuple(_declared(cls.variable(name), info) for name, info in cls.model_fields.items())

    @classmethod
    def read(cls, given: Mapping[str, str], **context: bool) -> Self:
        """The group from the set variables (`given`: stripped, non-blank values)."""
        values = {name: given[name] for name in cls.variables() if name in given}
        try:
            return cls.model_validate(values, context=context)
        except ValidationError as error:
            raise _config_error(error) from None


@dataclass(frozen=True)
class Variable:
    """A variable as docs/settings.md and local.settings.sample.json show it."""

    name: str
    default: str  # as the variable's text; "" when unset
    accepts: str
    description: str
    sample: str  # its value in the sample


def _declared(name: str, info: FieldInfo) -> Variable:
    kind = next(item for item in info.metadata if isinstance(item, _Kind))
    default = "" if info.default is None else kind.show(info.default)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return Variable(
        name=name,
        default=default,
        accepts=kind.accepts(),
        description=info.description or "",
        sample=str(extra.get("sample", default)),
    )


def _config_error(error: ValidationError) -> ConfigError:
    """The first problem as a ConfigError naming its variable (pydantic's input left out)."""
    first = error.errors(include_input=False)[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError) and not first["loc"]:
        return cause  # a rule across variables names the variable itself
    problem = cause.problem if isinstance(cause, ConfigError) else str(cause or first["msg"])
    return ConfigError(str(first["loc"][0]), problem)


_POLICY = Policy()  # the judgement's own defaults


class PolicySettings(SettingsGroup):
    """What counts as compliant: read into the judgement's `Policy`, which checks it."""

    required_categories: Annotated[tuple[str, ...], _Items(tuple, "category names")] = Field(
        default=_POLICY.required_categories,
        validation_alias="AUDITOR_REQUIRED_CATEGORIES",
        description="Log categories every registry must send. A category counts when a setting "
        "enables it by name or through an enabled category group that contains it (`allLogs`, "
        "`audit`). Group names are not accepted here: list the categories. A name container "
        "registries do not have (per the categories API, else the documented ones) fails the "
        "run with the valid names, rather than making every registry noncompliant.",
    )
    require_metrics: Annotated[bool, _FLAG] = Field(
        default=_POLICY.require_metrics,
        validation_alias="AUDITOR_REQUIRE_METRICS",
        description="Whether the `AllMetrics` metrics category must be enabled too. The "
        "Dedicated requirement does not apply to metrics: they land in the `AzureMetrics` table "
        "in either mode.",
    )
    accepted_destinations: Annotated[
        frozenset[Destination],
        _Items(parse_destinations, "kinds: " + ", ".join(f"`{d}`" for d in Destination)),
    ] = Field(
        default=_POLICY.accepted_destinations,
        validation_alias="AUDITOR_ACCEPTED_DESTINATIONS",
        description="Destination kinds that count: `workspace` (Log Analytics), `storage` "
        "(storage account), `eventhub`. A setting with several destinations counts if any one "
        "is accepted. Partner (marketplace) destinations never count.",
    )
    accepted_workspaces: Annotated[frozenset[str], _Items(frozenset, "workspace ids")] = Field(
        default=_POLICY.accepted_workspaces,
        validation_alias="AUDITOR_ACCEPTED_WORKSPACES",
        description="Allow-list of Log Analytics workspace ARM ids, `/subscriptions/<guid>/"
        "resourceGroups/<rg>/providers/Microsoft.OperationalInsights/workspaces/<name>`, "
        "compared case-insensitively; unset accepts any workspace. Only valid when `workspace` "
        "is an accepted destination.",
    )
    require_dedicated: Annotated[bool, _FLAG] = Field(
        default=_POLICY.require_dedicated,
        validation_alias="AUDITOR_REQUIRE_DEDICATED",
        description="Whether a workspace destination must use resource-specific tables "
        "(`logAnalyticsDestinationType` = `Dedicated`). In Azure diagnostics mode the logs go "
        "to the shared `AzureDiagnostics` table and the `ContainerRegistry*` tables stay empty.",
    )
    exemptions: Annotated[dict[str, Exemption], _Exemptions()] = Field(
        default={},
        validation_alias="AUDITOR_EXEMPTIONS",
        description="Registries excused from the logging requirement until a date, granted by "
        "the auditor's owners (they win over a registry's `acr-auditor-exempt` tag), e.g. "
        '`[{"registryId": "/subscriptions/.../registries/acrlegacy", "reason": "Migrating", '
        '"expiresOn": "2030-03-31", "exemptionCategory": "Mitigated", "ticket": "CHG-1234"}]`. '
        "`expiresOn` is the last exempt day (UTC). An exempt registry is reported `exempt`, "
        "never alerted; an ended one is judged as usual with `exemption_expired` "
        "(docs/exemptions.md).",
    )
    _policy: Policy = PrivateAttr(_POLICY)

    @model_validator(mode="after")
    def _build_policy(self) -> Self:
        try:
            self._policy = Policy(**{name: getattr(self, name) for name in type(self).model_fields})
        except ConfigError as error:  # names a Policy field: these fields share its names
            fields = type(self).model_fields
            setting = self.variable(error.setting) if error.setting in fields else error.setting
            raise ConfigError(setting, error.problem) from None
        return self

    @property
    def policy(self) -> Policy:
        return self._policy


class AuditSettings(SettingsGroup):
    """What is audited and when."""

    subscriptions: Annotated[tuple[str, ...], _Items(_subscription_ids, "GUIDs")] = Field(
        default=(),
        validation_alias="AUDITOR_SUBSCRIPTIONS",
        description="Subscription ids to audit (stored lower-case); unset audits every "
        "subscription the identity can see.",
    )
    schedule: Annotated[str, _Schedule()] = Field(
        default="0 0 * * * *",
        validation_alias="AUDITOR_SCHEDULE",
        description="When the timer trigger runs (the default: hourly, on the hour).",
    )
    full_sweep: Annotated[timedelta, _Number(float, low=0.0, high=8760.0, unit="hours")] = Field(
        default=timedelta(hours=24),
        validation_alias="AUDITOR_FULL_SWEEP_HOURS",
        description="A scheduled run reads every registry's settings when the last full sweep "
        "is this old; in between it is change-driven: it reads the activity log and re-reads "
        "only registries whose settings or registry changed (or whose last read failed). `0`: "
        "every scheduled run is a full sweep.",
    )
    changes_overlap: Annotated[timedelta, _Number(float, low=0.0, high=1440.0, unit="minutes")] = (
        Field(
            default=timedelta(minutes=30),
            validation_alias="AUDITOR_CHANGES_OVERLAP_MINUTES",
            description="How far before the start of the last run that listed a subscription a "
            "change-driven run reads its activity log from: Azure lists an event only once it has "
            "ingested it, minutes after the change.",
        )
    )


# ARM reads in flight at once unless AUDITOR_MAX_CONCURRENCY says otherwise: with every
# subscription within its burst (nothing to pace), the latency of 10,000 reads in 100
# subscriptions took 16 readers 42 s and 32 readers 37 s, at the same peak memory.
MAX_CONCURRENCY = 32


class ArmSettings(SettingsGroup):
    """Where Azure Resource Manager is and how fast to read it."""

    endpoint: Annotated[str, _HTTPS_URL] = Field(
        default=_ARM,
        validation_alias="AUDITOR_ARM_ENDPOINT",
        description="Azure Resource Manager endpoint (registries, diagnostic settings, Resource "
        "Graph); change it for a sovereign cloud or a local emulator.",
    )
    audience: Annotated[str, _HTTPS_URL] = Field(
        default=_ARM,
        validation_alias="AUDITOR_ARM_AUDIENCE",
        description="Token audience for ARM calls (the scope requested is `<audience>/.default`)."
        " Change it with the endpoint for a sovereign cloud; keep it when the endpoint points at "
        "a local emulator.",
    )
    max_concurrency: Annotated[int, _Number(int, low=1, high=256)] = Field(
        default=MAX_CONCURRENCY,
        validation_alias="AUDITOR_MAX_CONCURRENCY",
        description="Most ARM requests in flight at once. Pacing keeps each subscription within "
        "ARM's rate however many are in flight; more of them shorten a run whose subscriptions "
        "all stay within their burst.",
    )
    # azure-facts §5
    reads_per_second: Annotated[float, _Number(float, low=0.1, high=10_000.0)] = Field(
        default=25.0,
        validation_alias="AUDITOR_ARM_READS_PER_SECOND",
        description="Steady rate of ARM reads per subscription. ARM refills its read bucket at 25 "
        "per second per subscription and principal; pacing at that rate avoids 429 responses.",
    )
    burst: Annotated[int, _Number(int, low=1, high=100_000)] = Field(
        default=250,
        validation_alias="AUDITOR_ARM_BURST",
        description="ARM reads allowed in a burst before pacing starts (ARM's bucket holds 250).",
    )
    http_retries: Annotated[int, _Number(int, low=0, high=10)] = Field(
        default=4,
        validation_alias="AUDITOR_HTTP_RETRIES",
        description="Retries of a failed or throttled request, to ARM and to Log Analytics.",
    )


class LogsSettings(SettingsGroup):
    """Where Log Analytics is, and the windows and thresholds of the log evidence."""

    endpoint: Annotated[str, _HTTPS_URL] = Field(
        default=_LOGS,
        validation_alias="AUDITOR_LOGS_ENDPOINT",
        description="Log Analytics query endpoint.",
    )
    audience: Annotated[str, _HTTPS_URL] = Field(
        default=_LOGS,
        validation_alias="AUDITOR_LOGS_AUDIENCE",
        description="Token audience for Log Analytics queries. Without it the SDK asks for a "
        "token for the endpoint's own host, which fails against an emulator or proxy.",
    )
    lookback: Annotated[timedelta, _Number(float, low=1.0, high=720.0, unit="hours")] = Field(
        default=timedelta(hours=24),
        validation_alias="AUDITOR_LOGS_LOOKBACK_HOURS",
        description='Window of the log queries (logins, activity trail, activity log). "First '
        'seen" identities and IPs compare this window with the one before it.',
    )
    silent_after: Annotated[timedelta, _Number(float, low=1.0, high=720.0, unit="hours")] = Field(
        default=timedelta(hours=24),
        validation_alias="AUDITOR_SILENT_AFTER_HOURS",
        description="A registry whose settings send events to a workspace, but whose last "
        "event there is older than this, is `noncompliant` with `logs_silent`.",
    )
    pending_window: Annotated[timedelta, _Number(float, low=0.0, high=1440.0, unit="minutes")] = (
        Field(
            default=timedelta(minutes=90),
            validation_alias="AUDITOR_PENDING_MINUTES",
            description="A registry created, or whose diagnostic setting was created or changed, "
            "less than this long ago carries the reason `pending` instead of being silent (Azure "
            "needs up to 90 minutes to start sending); one the auditor remediated within it is "
            "`pending` until its events arrive.",
        )
    )
    burst_failures: Annotated[int, _Number(int, low=1, high=100_000)] = Field(
        default=10,
        validation_alias="AUDITOR_BURST_FAILURES",
        description="Failed logins from one caller IP or one identity within the burst window "
        "(next row) that count as a burst.",
    )
    burst_window: Annotated[timedelta, _Number(float, low=1.0, high=1440.0, unit="minutes")] = (
        Field(
            default=timedelta(minutes=5),
            validation_alias="AUDITOR_BURST_MINUTES",
            description="Length of the burst window, measured at one-minute resolution.",
        )
    )
    # azure-facts §4
    concurrency: Annotated[int, _Number(int, low=1, high=5)] = Field(
        default=5,
        validation_alias="AUDITOR_LOGS_CONCURRENCY",
        description="Log Analytics queries in flight at once (Log Analytics runs at most 5 per "
        "user; queries are also paced under 200 per 30 seconds).",
    )


class StorageSettings(SettingsGroup):
    """Where the auditor's tables are: a connection string, or identity-based access."""

    # In order of precedence: the first one set is the only one read, as the Functions host does.
    _SOURCES: ClassVar[tuple[str, ...]] = (
        "auditor_storage",
        "host_storage",
        "host_table_uri",
        "host_account",
    )

    auditor_storage: Annotated[str | None, _CONNECTION_STRING] = Field(
        default=None,
        validation_alias="AUDITOR_STORAGE",
        repr=False,  # holds an account key
        description="Table Storage connection string for the auditor's tables, when they live "
        "in another account than the Functions host's.",
    )
    host_storage: Annotated[str | None, _CONNECTION_STRING] = Field(
        default=None,
        validation_alias="AzureWebJobsStorage",
        repr=False,
        description="The Functions host's storage connection string (`UseDevelopmentStorage="
        "true` is Azurite).",
        json_schema_extra={"sample": "UseDevelopmentStorage=true"},
    )
    host_table_uri: Annotated[str | None, _HttpsUrl(secret=True)] = Field(
        default=None,
        validation_alias="AzureWebJobsStorage__tableServiceUri",
        description="Identity-based access: the Table service URI, e.g. "
        "`https://<account>.table.core.windows.net` (needed outside the public cloud).",
    )
    host_account: Annotated[
        str | None,
        _Pattern(
            re.compile(r"[a-z0-9]{3,24}"),
            "is not a storage account name (3-24 lower-case letters and digits)",
            described="3-24 lower-case letters and digits",
        ),
    ] = Field(
        default=None,
        validation_alias="AzureWebJobsStorage__accountName",
        description="Identity-based access: the storage account name; the table endpoint "
        "becomes `https://<account>.table.core.windows.net`.",
    )
    table_prefix: Annotated[
        str,
        _Pattern(
            re.compile(r"[A-Za-z][A-Za-z0-9]{0,39}"),
            "{!r} must start with a letter and hold only letters and digits, at most 40 "
            "characters (Azure table names are alphanumeric)",
            described="a letter, then letters and digits, at most 40 characters",
        ),
    ] = Field(
        default="acraudit",
        validation_alias="AUDITOR_TABLE_PREFIX",
        description="Prefix of the auditor's table names.",
    )
    retention_evidence_days: Annotated[int, _Number(int, low=1, high=3650)] = Field(
        default=30,
        validation_alias="AUDITOR_RETENTION_EVIDENCE_DAYS",
        description="Days each run's log evidence is kept (about 6 KiB per registry and run); "
        "older rows are deleted after each timer run.",
    )
    retention_runs_days: Annotated[int, _Number(int, low=1, high=3650)] = Field(
        default=400,
        validation_alias="AUDITOR_RETENTION_RUNS_DAYS",
        description="Days run records are kept (400: a yearly review still sees the same month "
        "of the year before).",
    )
    retention_history_days: Annotated[int, _Number(int, low=1, high=3650)] = Field(
        default=400,
        validation_alias="AUDITOR_RETENTION_HISTORY_DAYS",
        description="Days registry history and alert history are kept.",
    )

    @model_validator(mode="before")
    @classmethod
    def _first_source_wins(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        names = [cls.variable(name) for name in cls._SOURCES]
        chosen = next((name for name in names if name in data), None)
        # `require_storage=False`: a CLI run that stores nothing.
        if chosen is None and (info.context or {}).get("require_storage", True):
            raise ConfigError(
                names[0],
                f"no Table Storage configured: set {names[0]} or {names[1]} to a connection "
                f"string, or {names[3]} or {names[2]} for identity-based access",
            )
        return {k: v for k, v in data.items() if k not in names or k == chosen}

    @property
    def connection_string(self) -> str | None:
        return self.auditor_storage or self.host_storage

    @property
    def table_endpoint(self) -> str | None:
        """For identity-based access: the table service URI, or the account's public one."""
        if self.host_table_uri is not None or self.host_account is None:
            return self.host_table_uri
        return f"https://{self.host_account}.table.core.windows.net"


class AlertSettings(SettingsGroup):
    """Sink URLs carry their own credentials (Slack and Teams put a token in the path or query),
    so they are as secret as the HMAC key: never in a repr."""

    webhook_url: Annotated[str | None, _ALERT_URL] = Field(
        default=None,
        validation_alias="AUDITOR_ALERT_WEBHOOK_URL",
        repr=False,
        description="Generic webhook: each alert is POSTed as one JSON document (schema in "
        "alerts.md).",
    )
    # An HMAC key much shorter than 16 characters is guessable offline from one signed body.
    webhook_secret: Annotated[str | None, _Secret(min_length=16)] = Field(
        default=None,
        validation_alias="AUDITOR_ALERT_WEBHOOK_SECRET",
        repr=False,
        description="HMAC-SHA256 key for the webhook; when set, each request carries "
        "`X-Auditor-Signature: sha256=<hex HMAC of the raw body>`. Only valid with the webhook "
        "URL.",
    )
    teams_url: Annotated[str | None, _ALERT_URL] = Field(
        default=None,
        validation_alias="AUDITOR_ALERT_TEAMS_URL",
        repr=False,
        description='Microsoft Teams Workflows webhook ("When a Teams webhook request is '
        'received"); alerts arrive as Adaptive Cards.',
    )
    slack_url: Annotated[str | None, _ALERT_URL] = Field(
        default=None,
        validation_alias="AUDITOR_ALERT_SLACK_URL",
        repr=False,
        description="Slack incoming webhook; alerts arrive as Block Kit messages.",
    )
    queue: Annotated[
        str | None,
        _Pattern(
            # 3-63 lower-case letters, digits and single hyphens, no hyphen at either end.
            re.compile(r"(?=.{3,63}\Z)[a-z0-9]+(?:-[a-z0-9]+)*"),
            "{!r} is not a queue name (3-63 lower-case letters, digits and single hyphens, "
            "starting and ending with a letter or digit)",
            described="an Azure queue name: 3-63 lower-case letters, digits and single hyphens",
        ),
    ] = Field(
        default=None,
        validation_alias="AUDITOR_ALERT_QUEUE",
        description="Name of an Azure Storage queue in the auditor's storage account (see the "
        "storage settings) that receives each alert as a plain JSON message, for Logic Apps and "
        "other consumers; created on first use.",
    )
    log_records: Annotated[bool, _FLAG] = Field(
        default=True,
        validation_alias="AUDITOR_ALERT_LOG_RECORDS",
        description="Write each alert as a log record starting with `ACR_AUDITOR_ALERT`, for an "
        "Azure Monitor log alert rule on Application Insights (query in alerts.md).",
    )
    remind_after: Annotated[timedelta, _Number(float, low=0.0, high=8760.0, unit="hours")] = Field(
        default=timedelta(hours=24),
        validation_alias="AUDITOR_ALERT_REMIND_HOURS",
        description="Time between reminders while a registry keeps failing; `0` sends no "
        "reminders.",
    )
    login: Annotated[bool, _FLAG] = Field(
        default=False,
        validation_alias="AUDITOR_ALERT_LOGIN",
        description="Alert on suspicious sign-ins (bursts of failed logins, anonymous pulls) "
        "when login evidence is available.",
    )
    sink_budget_seconds: Annotated[float, _Number(float, low=1.0, high=600.0)] = Field(
        default=60.0,
        validation_alias="AUDITOR_ALERT_SINK_BUDGET_SECONDS",
        description="Seconds each sink may spend sending in one run (only time spent "
        "delivering counts); what it has not sent by then waits in the outbox for the next run, "
        "so a receiver that never answers cannot stall the run.",
    )
    on_unknown: Annotated[bool, _FLAG] = Field(
        default=False,
        validation_alias="AUDITOR_ALERT_ON_UNKNOWN",
        description="Treat a registry whose settings could not be read (`unknown`) as failing. "
        "Off by default: `unknown` is usually the auditor's own access or throttling problem, "
        "not the registry's.",
    )

    @model_validator(mode="before")
    @classmethod
    def _secret_needs_webhook(cls, data: Any) -> Any:
        # Checked before the secret's own length, as it is the more basic mistake.
        secret, url = cls.variable("webhook_secret"), cls.variable("webhook_url")
        if isinstance(data, dict) and secret in data and url not in data:
            raise ConfigError(secret, f"is set but {url} is not")
        return data


class _WorkspaceId(_Kind):
    def accepts(self) -> str:
        return "a Log Analytics workspace ARM id"

    def parse(self, text: str) -> str:
        if not is_workspace_id(text):
            raise ValueError(
                f"{_shown(text)} is not a Log Analytics workspace id (expected /subscriptions/"
                "<guid>/resourceGroups/<rg>/providers/Microsoft.OperationalInsights/workspaces/"
                "<name>)"
            )
        return text.rstrip("/")


class RemediationSettings(SettingsGroup):
    """Opt-in remediation: writing the diagnostic setting a noncompliant registry lacks."""

    enabled: Annotated[bool, _FLAG] = Field(
        default=False,
        validation_alias="AUDITOR_ENABLE_REMEDIATION",
        description="Let the deployed auditor write diagnostic settings: after each timer run "
        "for the registries of the allow-lists (subscriptions, tag: next rows), and on "
        "`POST /api/registries/{name}/remediate` (admin key). Off, it only reads. The "
        "deployment grants the write right only when it is on. `python -m auditor remediate "
        "--apply` does not need it: a person runs it with their own rights.",
    )
    workspace: Annotated[str | None, _WorkspaceId()] = Field(
        default=None,
        validation_alias="AUDITOR_REMEDIATION_WORKSPACE",
        description="The workspace a remediation sends the logs to (resource-specific mode). "
        "It must be accepted by the policy (`AUDITOR_ACCEPTED_WORKSPACES`, when set). Required "
        "when remediation is enabled.",
    )
    subscriptions: Annotated[tuple[str, ...], _Items(_subscription_ids, "GUIDs")] = Field(
        default=(),
        validation_alias="AUDITOR_REMEDIATION_SUBSCRIPTIONS",
        description="Subscriptions whose noncompliant registries the timer remediates after "
        "each run. Unset, and no `AUDITOR_REMEDIATION_TAG`: none (the API and the CLI can still "
        "remediate one registry).",
    )
    tag: Annotated[TagRule | None, _Tag()] = Field(
        default=None,
        validation_alias="AUDITOR_REMEDIATION_TAG",
        description="A registry tag that puts a registry of any audited subscription on the "
        "timer's allow-list: `name` (any value) or `name=value` (that value exactly, spaces "
        "around it aside; the name in any case). The timer remediates a noncompliant registry "
        "whose subscription is in `AUDITOR_REMEDIATION_SUBSCRIPTIONS` or that carries this "
        "tag; either allow-list alone is enough. Anyone who may write a registry's tags can opt "
        "it in (a remediation only adds logging). Not `acr-auditor-exempt`: an exempt registry "
        "is never remediated.",
    )
    max_per_run: Annotated[int, _Number(int, low=1, high=1000)] = Field(
        default=10,
        validation_alias="AUDITOR_REMEDIATION_MAX_PER_RUN",
        description="Most registries the timer remediates after one run; the rest wait for the "
        "next run.",
    )

    @model_validator(mode="after")
    def _workspace_when_enabled(self) -> Self:
        if self.enabled and self.workspace is None:
            raise ConfigError(
                self.variable("workspace"),
                f"is required when {self.variable('enabled')} is true: the workspace a "
                "remediation sends the logs to",
            )
        return self


# In docs/settings.md's order.
GROUPS: tuple[type[SettingsGroup], ...] = (
    PolicySettings,
    AuditSettings,
    ArmSettings,
    LogsSettings,
    StorageSettings,
    AlertSettings,
    RemediationSettings,
)
# Every variable this module reads.
SETTING_NAMES: tuple[str, ...] = tuple(name for group in GROUPS for name in group.variables())


@dataclass(frozen=True)
class Settings:
    """Validated settings, by group. Build with `Settings.from_env(os.environ)`."""

    policy: Policy
    audit: AuditSettings
    arm: ArmSettings
    logs: LogsSettings
    storage: StorageSettings
    alerts: AlertSettings
    remediation: RemediationSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, require_storage: bool = True) -> Settings:
        """Read and check every setting; ConfigError names the first bad variable.

        `require_storage=False` (a CLI run that stores nothing) lets storage be unset; a
        configured but malformed value is still an error.
        """
        given = {
            name: value.strip()
            for name in SETTING_NAMES
            if (value := environ.get(name)) is not None and value.strip()
        }
        storage = StorageSettings.read(given, require_storage=require_storage)
        policy = PolicySettings.read(given).policy
        return cls(  # storage first: with nothing set, its absence is the error to report
            storage=storage,
            policy=policy,
            audit=AuditSettings.read(given),
            arm=ArmSettings.read(given),
            logs=LogsSettings.read(given),
            alerts=AlertSettings.read(given),
            remediation=_remediation(given, policy),
        )


def _remediation(given: Mapping[str, str], policy: Policy) -> RemediationSettings:
    """The remediation settings; their workspace must be one the policy accepts, or a
    remediation would write a setting the next audit still finds noncompliant."""
    group = RemediationSettings.read(given)
    if group.tag is not None:
        keep(group.tag.name)  # the inventory keeps only the tags some setting reads
    if group.workspace is not None and not policy.accepts_workspace(group.workspace):
        raise ConfigError(
            RemediationSettings.variable("workspace"),
            "is not accepted by the policy (AUDITOR_ACCEPTED_DESTINATIONS, "
            "AUDITOR_ACCEPTED_WORKSPACES): a setting sending there would stay noncompliant",
        )
    return group
