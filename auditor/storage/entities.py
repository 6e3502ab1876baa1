"""Entities of the five tables: building them from values, and documents from them.

Property limits of Table Storage: a string is at most 64 KiB in UTF-16 (32,768 code units)
and an entity at most 1 MiB. Values from Azure (names, error messages, reason details) are
clipped to fit rather than trusted, so no input can make a write fail.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from auditor import tags
from auditor.changes import Change, StoredState, reason_codes
from auditor.compliance_history import HistoryRow
from auditor.evidence import documents
from auditor.evidence.model import LogEvidence
from auditor.exemptions import otherwise
from auditor.facts import (
    JUDGED,
    DiagnosticSetting,
    LogEntry,
    MetricEntry,
    Reason,
    Registry,
    Status,
    Verdict,
)
from auditor.reasons import catalog
from auditor.run_record import AuditRun, RunMode
from auditor.storage import keys
from auditor.summary import ComplianceSummary, StatusCounts, iso, registry_document

MAX_STRING = 32_000  # UTF-16 code units; the service limit is 32,768
MAX_FIELD = 1_024  # names, ids and other single values
MAX_DETAIL = 2_000  # one reason detail or one error message, when the whole list is too long
# The summary's JSON is split over up to this many string properties of ONE entity, so the
# API still reads it with one point read; 12 x 64 KiB stays under the 1 MiB entity limit.
SUMMARY_PARTS = 12

# One run's login or activity evidence of one registry: JSON over up to this many string
# properties (12 x 64 KiB, under the 1 MiB entity limit with the other properties).
EVIDENCE_PARTS = 12
MAX_LIST_ITEMS = 1_000  # per list of an evidence document, before any size-based trimming
MAX_PROBLEMS = 50

RUNNING = "running"  # run status between start_run and finish_run; not a RunStatus
# How a run still `running` this long after its start is shown: its process stopped without
# finishing it (no run lasts a day; the timer runs hourly). Read-side only: nothing rewrites it.
ABANDONED = "abandoned"
ABANDONED_AFTER = timedelta(hours=24)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clip(text: str, limit: int = MAX_FIELD) -> str:
    """`text` without lone surrogates (not valid UTF-8 on the wire), at most `limit` UTF-16
    code units, cut between characters."""
    if text.isascii() and len(text) <= limit:
        return text  # most values: one UTF-16 unit per character, no surrogates
    text = text.encode("utf-8", "replace").decode("utf-8")[:limit]
    excess = utf16_len(text) - limit
    while excess > 0:
        text = text[: len(text) - (excess + 1) // 2]
        excess = utf16_len(text) - limit
    return text


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def fit_list(items: Sequence[Any], limit: int = MAX_STRING) -> tuple[str, int]:
    """JSON of `items` within `limit` UTF-16 code units: whole if it fits, else the longest
    prefix that fits. Returns (json, how many items were left out)."""

    def encoded(count: int) -> str:
        return _dumps(list(items[:count]))

    if utf16_len(whole := encoded(len(items))) <= limit:
        return whole, 0
    fits, too_long = 0, len(items)  # the size grows with the count: bisect
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if utf16_len(encoded(middle)) <= limit:
            fits = middle
        else:
            too_long = middle
    return encoded(fits), len(items) - fits


def _reason_items(reasons: Sequence[Reason], detail_limit: int) -> list[dict[str, str]]:
    return [
        {"code": clip(r.code, MAX_DETAIL), "detail": clip(r.detail, detail_limit)} for r in reasons
    ]


def reasons_json(reasons: Sequence[Reason]) -> tuple[str, int]:
    """Reasons as stored: details are shortened before any reason is left out."""
    text, omitted = fit_list(_reason_items(reasons, MAX_STRING))
    if omitted:
        text, omitted = fit_list(_reason_items(reasons, MAX_DETAIL))
    return text, omitted


def parse_reasons(text: str | None) -> tuple[Reason, ...]:
    if not text:
        return ()
    return tuple(
        Reason(code=item["code"], detail=item.get("detail", "")) for item in json.loads(text)
    )


SETTINGS_VERSION = 1
# Short keys (`Settings` is in every stored state a run reads); None values are left out.
_SETTING_FIELDS = (
    ("id", "id"),
    ("name", "name"),
    ("ws", "workspace_id"),
    ("sa", "storage_account_id"),
    ("eh", "event_hub_authorization_rule_id"),
    ("ehn", "event_hub_name"),
    ("mp", "marketplace_partner_id"),
    ("dt", "log_analytics_destination_type"),
)


# One encoder for the run, not one per call as `json.dumps` builds: a run encodes every
# registry's settings and digests.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _setting_item(setting: DiagnosticSetting) -> dict[str, Any]:
    item: dict[str, Any] = {
        short: value
        for short, field in _SETTING_FIELDS
        if (value := getattr(setting, field)) is not None
    }
    item["logs"] = [[e.enabled, e.category, e.category_group] for e in setting.logs]
    item["metrics"] = [[m.category, m.enabled] for m in setting.metrics]
    return item


def settings_json(settings: Sequence[DiagnosticSetting]) -> str | None:
    """The diagnostic settings a run read, as a registry row keeps them (`Settings`), so a
    later run can judge the registry again without reading them: `{"v":1,"s":[{"id","name",
    "ws","sa","eh","ehn","mp","dt","logs":[[enabled,category,group]],"metrics":[[category,
    enabled]]}]}`. None when they would not fit one string property: never clipped, since a
    clipped setting could be judged differently."""
    document = {"v": SETTINGS_VERSION, "s": [_setting_item(s) for s in settings]}
    text = _COMPACT.encode(document)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escaped, it is valid on the wire, exact
            text = _ascii(document)
    # A character is at most two UTF-16 units: most texts fit without counting.
    return text if len(text) * 2 <= MAX_STRING or utf16_len(text) <= MAX_STRING else None


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError("not a string")


def _required(value: object) -> str:
    if isinstance(value, str):
        return value
    raise TypeError("not a string")


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError("not a boolean")


def _items(value: object) -> list[Any]:
    if isinstance(value, list):
        return value
    raise TypeError("not a list")


def _setting_from(item: object) -> DiagnosticSetting:
    if not isinstance(item, dict):
        raise TypeError("not an object")
    text = {field: _text(item.get(short)) for short, field in _SETTING_FIELDS[2:]}
    logs = [_items(entry) for entry in _items(item.get("logs"))]
    metrics = [_items(entry) for entry in _items(item.get("metrics"))]
    return DiagnosticSetting(
        id=_required(item.get("id")),
        name=_required(item.get("name")),
        **text,
        logs=tuple(
            LogEntry(_flag(on), _text(category), _text(group)) for on, category, group in logs
        ),
        metrics=tuple(MetricEntry(_required(category), _flag(on)) for category, on in metrics),
    )


def parse_settings(text: str | None) -> tuple[DiagnosticSetting, ...] | None:
    """The settings `settings_json` stored; None when there are none stored, or they are
    malformed or of a version this code does not know (the registry is then read again)."""
    if not text:
        return None
    try:
        document = json.loads(text)
        version = document.get("v") if isinstance(document, dict) else None
        if type(version) is not int or version != SETTINGS_VERSION:  # not True, not 1.0
            return None
        return tuple(_setting_from(item) for item in _items(document.get("s")))
    except (ValueError, TypeError, RecursionError):  # unpacking a wrong-length entry: ValueError
        return None


_UNREAD = f"{catalog.UNKNOWN}:"  # the settings could not be read (or not judged at all)


def _read_settings(verdict: Verdict) -> str | None:
    """The `Settings` of a verdict whose run read its registry's settings; None for removed
    ones and those whose settings could not be read (an `unknown:` reason). A registry
    unknown only for its logs (its workspace unreadable) had its settings read: kept, so a
    change-driven run need not read them again."""
    status = verdict.status
    if status is Status.EXEMPT and verdict.reasons:
        status = otherwise(verdict.reasons[0].code) or Status.EXEMPT
    if status is Status.UNKNOWN:
        if any(r.code.startswith(_UNREAD) for r in verdict.reasons):
            return None
    elif status not in JUDGED:
        return None
    return settings_json(verdict.settings)


def registry_entity(
    key: str,
    verdict: Verdict,
    reasons: str,
    *,
    run_id: str,
    observed_at: datetime,
    status_since: datetime,
    last_event: datetime | None = None,
    evidence: tuple[str, datetime] | None = None,
) -> dict[str, Any]:
    """`evidence`: the digest of the registry's newest stored evidence and when it was
    written (`evidence_entities`), so a later run can tell whether its own differs."""
    registry = verdict.registry
    entity = {
        "PartitionKey": keys.registry_partition(key),
        "RowKey": key,
        "ResourceId": clip(registry.id),
        "Name": clip(registry.name),
        "SubscriptionId": clip(registry.subscription_id.strip().lower()),
        "ResourceGroup": clip(registry.resource_group),
        "Location": clip(registry.location),
        "Facts": facts_json(registry),
        "Status": verdict.status.value,
        "Reasons": reasons,
        "LastRunId": clip(run_id),
        "CheckedAt": iso(observed_at),
        "StatusSince": iso(status_since),
    }
    if last_event is not None:  # rows are replaced whole: no older value stays behind
        entity["LastEvent"] = iso(last_event)
    if (settings := _read_settings(verdict)) is not None:  # absent: not known
        entity["Settings"] = settings
    if evidence is not None:
        entity["EvidenceDigest"], at = evidence
        entity["EvidenceAt"] = iso(at)
    entity["Digest"] = content_digest(entity)
    return entity


# What a run writes into every row it touches whatever changed: left out of `Digest`, so a
# change-driven run can leave a registry's row alone when nothing else about it changed.
_RUN_COLUMNS = frozenset({"LastRunId", "CheckedAt", "Digest"})


def content_digest(entity: Mapping[str, Any]) -> str:
    """A registry row's content, less the run that wrote it, as a short hash."""
    text = _COMPACT.encode(sorted((k, str(v)) for k, v in entity.items() if k not in _RUN_COLUMNS))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


FACTS_VERSION = 1


def facts_json(registry: Registry) -> str:
    """The registry's facts beyond its id and place (`Facts`): what a change-driven run needs
    to judge it again from the store, without listing the fleet. `{"v":1,"sku","admin",
    "anon","created","tags":[[name,value]],"kept":[names]}`: `kept` are the tag names kept
    when it was written (`auditor.tags`), so a tag a setting reads since is not taken as
    absent."""
    created = registry.created_at
    return _ascii(
        {
            "v": FACTS_VERSION,
            "sku": clip(registry.sku),
            "admin": registry.admin_user_enabled,
            "anon": registry.anonymous_pull_enabled,
            "created": iso(created) if created is not None else None,
            "tags": [[clip(k), clip(v, MAX_DETAIL)] for k, v in registry.tags],
            "kept": sorted(tags.kept()),
        }
    )


def _facts(text: object) -> dict[str, Any] | None:
    """The facts `facts_json` stored; None when absent, malformed, of another version, or
    written before a tag now kept was (its value would be missing)."""
    if not isinstance(text, str):
        return None
    try:
        found = json.loads(text)
        if not isinstance(found, dict) or found.get("v") != FACTS_VERSION:
            return None
        if not tags.kept() <= set(_items(found.get("kept", []))):
            return None
        pairs = tuple((str(k), str(v)) for k, v in _items(found.get("tags", [])))
        created = found.get("created")
        return {
            "sku": str(found.get("sku") or ""),
            "admin_user_enabled": _optional_flag(found.get("admin")),
            "anonymous_pull_enabled": _optional_flag(found.get("anon")),
            "created_at": parse_time(created) if isinstance(created, str) else None,
            "tags": pairs,
        }
    except (ValueError, TypeError, RecursionError):
        return None


def _optional_flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def history_entity(
    key: str,
    verdict: Verdict,
    reasons: str,
    *,
    run_id: str,
    observed_at: datetime,
    change: Change,
) -> dict[str, Any]:
    """The row of `change`; the run and time are those of whichever run wrote it last."""
    registry = verdict.registry
    return {
        "PartitionKey": keys.registry_partition(key),
        "RowKey": keys.history_row_key(key, change.ended, change.id),
        "ResourceId": clip(registry.id),
        "SubscriptionId": clip(registry.subscription_id.strip().lower()),
        "Status": verdict.status.value,
        "PreviousStatus": change.before.status if change.before is not None else None,
        "Reasons": reasons,
        "RunId": clip(run_id),
        "ObservedAt": iso(observed_at),
    }


def registry_from_entity(row: Mapping[str, Any]) -> Registry:
    return Registry(
        id=row.get("ResourceId", ""),
        name=row.get("Name", ""),
        subscription_id=row.get("SubscriptionId", ""),
        resource_group=row.get("ResourceGroup", ""),
        location=row.get("Location", ""),
        **(_facts(row.get("Facts")) or {}),
    )


# What the writer reads of the stored registry rows to find changes and removals: a fleet's
# full rows (reasons with their details) would be the largest thing a run holds while writing.
STATE_COLUMNS = (
    "RowKey",
    "Status",
    "Reasons",
    "StatusSince",
    "LastRunId",
    "ResourceId",
    "Name",
    "SubscriptionId",
    "ResourceGroup",
    "Location",
    "Facts",
    "Settings",
    "Digest",
    "EvidenceDigest",
    "EvidenceAt",
)


def stored_state(row: Mapping[str, Any]) -> StoredState:
    evidence_at = parse_time(row.get("EvidenceAt"))
    evidence_digest = row.get("EvidenceDigest")
    # A run holds a fleet's states: the few statuses, run ids and reason code sets they share
    # are held once, not once per row as decoded.
    codes = reason_codes(parse_reasons(row.get("Reasons")))
    return StoredState(
        registry=registry_from_entity(row),
        status=_shared(row.get("Status")),
        reason_codes=_SHARED_CODES.setdefault(codes, codes)
        if len(_SHARED_CODES) < _MAX_SHARED_CODES
        else codes,
        status_since=parse_time(row.get("StatusSince")),
        last_run_id=_shared(row.get("LastRunId")),
        settings=settings if isinstance(settings := row.get("Settings"), str) else None,
        digest=digest if isinstance(digest := row.get("Digest"), str) else None,
        evidence=(
            (evidence_digest, evidence_at)
            if isinstance(evidence_digest, str) and evidence_at is not None
            else None
        ),
        facts=_facts(row.get("Facts")) is not None,
    )


_SHARED_CODES: dict[tuple[str, ...], tuple[str, ...]] = {}
_MAX_SHARED_CODES = 4096  # sets of reason codes; a fleet has a few dozen


def _shared(value: Any) -> Any:
    return sys.intern(value) if type(value) is str else value


def verdict_from_entity(row: Mapping[str, Any]) -> Verdict:
    return Verdict(
        registry=registry_from_entity(row),
        status=Status(row["Status"]),
        reasons=parse_reasons(row.get("Reasons")),
    )


def registry_doc(row: Mapping[str, Any]) -> dict[str, Any]:
    """`registry_document` plus when it was last checked, by which run, and since when its
    status and reason codes are what they are."""
    return {
        **registry_document(verdict_from_entity(row)),
        "lastRunId": row.get("LastRunId"),
        "checkedAt": row.get("CheckedAt"),
        "statusSince": row.get("StatusSince"),
        "lastEvent": row.get("LastEvent"),
    }


def history_doc(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "runId": row.get("RunId"),
        "observedAt": row.get("ObservedAt"),
        "subscriptionId": row.get("SubscriptionId"),
        "status": row.get("Status"),
        "previousStatus": row.get("PreviousStatus"),
        "reasons": [
            {"code": r.code, "detail": r.detail} for r in parse_reasons(row.get("Reasons"))
        ],
    }


def history_row(row: Mapping[str, Any]) -> HistoryRow:
    """A stored history row as the pure history logic (`auditor.compliance_history`) reads it;
    the name is the last segment of the resource id (history rows keep no name column)."""
    key = str(row.get("RowKey", "")).partition(keys.HISTORY_SEPARATOR)[0]
    resource_id = row.get("ResourceId") or ""
    observed = parse_time(row.get("ObservedAt"))
    return HistoryRow(
        registry=key,
        name=resource_id.rstrip("/").rpartition("/")[2] or key,
        resource_id=resource_id,
        subscription_id=row.get("SubscriptionId") or "",
        status=row.get("Status") or Status.UNKNOWN.value,
        reasons=parse_reasons(row.get("Reasons")),
        observed_at=observed if observed is not None else keys.EPOCH,
        run_id=row.get("RunId"),
    )


HISTORY_COLUMNS = (
    "PartitionKey",
    "RowKey",
    "ResourceId",
    "SubscriptionId",
    "Status",
    "Reasons",
    "RunId",
    "ObservedAt",
)


def started_run_entity(run_id: str, started_at: datetime, trigger: str) -> dict[str, Any]:
    return {
        "PartitionKey": keys.RUNS_PARTITION,
        "RowKey": keys.run_row_key(run_id, started_at),
        "RunId": clip(run_id),
        "Status": RUNNING,
        "Trigger": clip(trigger),
        "StartedAt": iso(started_at),
    }


def finished_run_entity(run: AuditRun) -> dict[str, Any]:
    counts = StatusCounts.of(v.status for v in run.verdicts)
    # Every error is counted; as many as fit are kept, each shortened first.
    errors, omitted = fit_list([clip(e, MAX_DETAIL) for e in run.errors])
    return {
        **started_run_entity(run.run_id, run.started_at, run.trigger),
        "Status": run.status.value,
        "FinishedAt": iso(run.finished_at),
        "Total": counts.total,
        "Compliant": counts.compliant,
        "Noncompliant": counts.noncompliant,
        "Unknown": counts.unknown,
        "Removed": counts.removed,
        "Exempt": counts.exempt,
        "Pending": counts.pending,
        "ErrorCount": len(run.errors),
        "Errors": errors,
        "ErrorsOmitted": omitted,
        "Mode": run.mode.value,
        "SettingsReads": run.settings_reads,
        "FullReads": clip(json.dumps(dict(run.full_reads), separators=(",", ":"))),
        **_subscriptions_parts(run.inventoried_subscriptions),
    }


def split_parts(text: str, *, count: str = "Parts", part: str = "Part") -> dict[str, Any]:
    """`text` over string properties `<part>0..n`, with their number in `count`: an ASCII text
    (its length is its size in UTF-16 code units) longer than one property holds."""
    parts = [text[i : i + MAX_STRING] for i in range(0, len(text), MAX_STRING)]
    return {count: len(parts), **{f"{part}{i}": chunk for i, chunk in enumerate(parts)}}


def joined_parts(row: Mapping[str, Any], *, count: str = "Parts", part: str = "Part") -> str:
    """The text `split_parts` stored; KeyError when the row lacks it or a part."""
    return "".join(row[f"{part}{i}"] for i in range(int(row[count])))


def _subscriptions_parts(subscriptions: Iterable[str]) -> dict[str, Any]:
    """The subscriptions a run listed completely (`Subscriptions0..n`, JSON split over string
    properties): where the next change-driven run reads each one's activity log from. Left
    out when even `SUMMARY_PARTS` properties cannot hold them (those are then read in full)."""
    found = split_parts(
        _ascii(sorted(subscriptions)), count="SubscriptionParts", part="Subscriptions"
    )
    return found if found["SubscriptionParts"] <= SUMMARY_PARTS else {}


def run_subscriptions(row: Mapping[str, Any]) -> list[str]:
    """The subscriptions a stored run listed completely; none when not stored or unreadable
    (rows before change-driven runs, or too many)."""
    try:
        text = joined_parts(row, count="SubscriptionParts", part="Subscriptions")
        found = json.loads(text)
    except (ValueError, TypeError, KeyError):
        return []
    return [s.lower() for s in found if isinstance(s, str)] if isinstance(found, list) else []


def run_doc(row: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    finished = row.get("FinishedAt") is not None
    status = row.get("Status")
    started = parse_time(row.get("StartedAt"))
    if (
        status == RUNNING
        and now is not None
        and started is not None
        and now - started > ABANDONED_AFTER
    ):
        status = ABANDONED
    totals = (
        StatusCounts(
            compliant=row.get("Compliant", 0),
            noncompliant=row.get("Noncompliant", 0),
            unknown=row.get("Unknown", 0),
            removed=row.get("Removed", 0),
            exempt=row.get("Exempt", 0),
            pending=row.get("Pending", 0),  # rows before the `pending` status: none
        ).to_dict()
        if finished
        else None
    )
    return {
        "id": row.get("RunId"),
        "status": status,
        "trigger": row.get("Trigger"),
        "startedAt": row.get("StartedAt"),
        "finishedAt": row.get("FinishedAt"),
        "totals": totals,
        "errorCount": row.get("ErrorCount", 0),
        "errors": json.loads(row["Errors"]) if row.get("Errors") else [],
        "errorsOmitted": row.get("ErrorsOmitted", 0),
        # Rows written before change-driven runs were all full sweeps.
        "mode": row.get("Mode", RunMode.FULL.value),
        "settingsReads": row.get("SettingsReads"),
        "fullReads": _full_reads(row.get("FullReads")),
    }


def _full_reads(text: Any) -> dict[str, str]:
    """A change-driven run's subscriptions read in full, and why; {} when unreadable."""
    try:
        found = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {str(k): str(v) for k, v in found.items()}


def summary_entity(summary: ComplianceSummary) -> dict[str, Any]:
    """The summary as one entity; lists are trimmed (and the cut counted) if it cannot fit."""
    capacity = SUMMARY_PARTS * MAX_STRING
    # ASCII-only JSON: its length is its size in UTF-16 code units, so it splits anywhere.
    text = json.dumps(summary.to_dict(), separators=(",", ":"))
    while len(text) > capacity:
        # Reasons go first (long `unknown:<why>` codes are the likely bulk), rarest first.
        reasons, subscriptions = len(summary.by_reason), len(summary.by_subscription)
        if not reasons and not subscriptions:
            break  # nothing left to cut; the write reports the size as a StorageError
        summary = summary.trimmed(
            max_subscriptions=subscriptions if reasons else subscriptions // 2,
            max_reasons=reasons // 2,
        )
        text = json.dumps(summary.to_dict(), separators=(",", ":"))
    return {
        "PartitionKey": keys.SUMMARY_PARTITION,
        "RowKey": keys.SUMMARY_ROW,
        "RunId": clip(summary.last_run.id) if summary.last_run else None,
        **split_parts(text),
    }


def summary_from_entity(row: Mapping[str, Any]) -> dict[str, Any]:
    text = joined_parts(row)
    document: dict[str, Any] = json.loads(text)
    return document


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ascii(value: object) -> str:
    # ASCII-only JSON: its length is its size in UTF-16 code units, so it splits anywhere.
    return json.dumps(value, separators=(",", ":"))


def _clip_strings(value: Any) -> Any:
    """Every string in a document within MAX_DETAIL: values from logs are not trusted."""
    if isinstance(value, str):
        return clip(value, MAX_DETAIL)
    if isinstance(value, list):
        return [_clip_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _clip_strings(v) for k, v in value.items()}
    return value


def fit_evidence(
    document: Mapping[str, Any], lists: Sequence[str], capacity: int = EVIDENCE_PARTS * MAX_STRING
) -> tuple[dict[str, Any], str]:
    """The document and its ASCII JSON within `capacity` characters: each of `lists` is cut
    to MAX_LIST_ITEMS, then the biggest one halved until the whole fits, keeping each list's
    head (the busiest or newest entries) and counting the cut in `omitted`."""
    doc = _clip_strings(document)
    omitted: dict[str, int] = {name: int(doc["omitted"].get(name, 0)) for name in lists}
    doc["problems"] = doc["problems"][:MAX_PROBLEMS]

    def cut(name: str, keep: int) -> None:
        omitted[name] += max(0, len(doc[name]) - keep)
        doc[name] = doc[name][:keep]

    for name in lists:
        cut(name, MAX_LIST_ITEMS)
    doc["omitted"] = omitted
    text = _ascii(doc)
    while len(text) > capacity:
        filled = [name for name in lists if doc[name]]
        if not filled:
            break  # nothing left to cut; the write then reports the size as a StorageError
        biggest = max(filled, key=lambda name: len(_ascii(doc[name])))
        cut(biggest, len(doc[biggest]) // 2)
        doc["omitted"] = omitted
        text = _ascii(doc)
    return doc, text


# (kind, document, its lists in trimming order) for each of a registry's two evidence rows.
EvidenceDocuments = tuple[tuple[str, Mapping[str, Any], Sequence[str]], ...]


def evidence_documents(evidence: LogEvidence) -> EvidenceDocuments:
    """The documents of one registry's evidence rows: logins, activity."""
    return (
        (keys.EVIDENCE_LOGINS, documents.logins_document(evidence), documents.LOGIN_LISTS),
        (keys.EVIDENCE_ACTIVITY, documents.activity_document(evidence), documents.ACTIVITY_LISTS),
    )


def evidence_entities(
    key: str,
    registry: Registry,
    evidence: LogEvidence,
    *,
    run_id: str,
    observed_at: datetime,
) -> list[dict[str, Any]]:
    """The two rows (logins, activity) of one registry's evidence in one run. `key` is the
    `registry_key`, partitioned like the registries table."""
    rows = []
    for kind, document, lists in evidence_documents(evidence):
        fitted, text = fit_evidence(document, lists)
        row: dict[str, Any] = {
            "PartitionKey": keys.registry_partition(key),
            "RowKey": keys.evidence_row_key(key, kind, observed_at, run_id),
            "Kind": kind,
            "RunId": clip(run_id),
            "ObservedAt": iso(observed_at),
            "ResourceId": clip(registry.id),
            "WindowStart": iso(evidence.window_start),
            "WindowEnd": iso(evidence.window_end),
            "Omitted": sum(fitted["omitted"].values()),
            **split_parts(text),
        }
        rows.append(row)
    return rows


def evidence_doc(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored evidence row as the API serves it: the run, then the document."""
    text = joined_parts(row)
    return {"runId": row.get("RunId"), "observedAt": row.get("ObservedAt"), **json.loads(text)}
