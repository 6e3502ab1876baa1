"""The diagnostic settings a registry row keeps (`entities.settings_json`/`parse_settings`):
every field comes back exactly, whatever Azure sent; what cannot be stored or read back is
None ("not known"), never an exception and never a partial setting."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from auditor import exemptions, tags
from auditor.changes import StoredState
from auditor.facts import (
    DiagnosticSetting,
    LogEntry,
    MetricEntry,
    Reason,
    Registry,
    Status,
    Verdict,
    normalize_id,
)
from auditor.judgement import judge
from auditor.policy import Policy
from auditor.storage import RunWriter, entities, keys
from auditor.storage.tables import Tables

SUB = "00000000-0000-0000-0000-00000000000a"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
REGISTRY = Registry(
    id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
    "Microsoft.ContainerRegistry/registries/acrprod",
    name="acrprod",
    subscription_id=SUB,
    resource_group="rg",
)
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)

EVERY_FIELD = DiagnosticSetting(
    id=f"{REGISTRY.id}/providers/microsoft.insights/diagnosticSettings/diag",
    name="diag",
    workspace_id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
    "Microsoft.OperationalInsights/workspaces/law",
    storage_account_id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
    "Microsoft.Storage/storageAccounts/sa1",
    event_hub_authorization_rule_id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
    "Microsoft.EventHub/namespaces/ns/authorizationRules/RootManageSharedAccessKey",
    event_hub_name="acr-logs",
    marketplace_partner_id=f"/subscriptions/{SUB}/resourceGroups/rg/providers/"
    "Microsoft.Datadog/monitors/dd",
    log_analytics_destination_type="Dedicated",
    logs=(
        LogEntry(True, category="ContainerRegistryLoginEvents"),
        LogEntry(False, category_group="allLogs"),
        LogEntry(True),  # neither: Azure has sent stranger
        LogEntry(True, category="both", category_group="audit"),
    ),
    metrics=(MetricEntry("AllMetrics", True), MetricEntry("Other", False)),
)
BARE = DiagnosticSetting(id="x", name="")  # every optional field None, no entries

HOSTILE = [
    'quote " and \\ backslash',
    "名前 emoji🙂 and é",
    "ctrl \x00\x01\x1f\x7f\n\r\t",
    "bidi \u202eevil\u202c zero\u200bwidth",
    "lone \ud800 surrogate",
    "x" * 2_000,  # twelve times in `hostile_setting`: 24,000 characters
    "",
    "null",
    '{"v":1}',
]


def hostile_setting(text: str) -> DiagnosticSetting:
    return DiagnosticSetting(
        id=text,
        name=text,
        workspace_id=text,
        storage_account_id=text,
        event_hub_authorization_rule_id=text,
        event_hub_name=text,
        marketplace_partner_id=text,
        log_analytics_destination_type=text,
        logs=(LogEntry(True, text, text), LogEntry(False, category=text)),
        metrics=(MetricEntry(text, True),),
    )


def round_trip(settings: tuple[DiagnosticSetting, ...]) -> tuple[DiagnosticSetting, ...] | None:
    text = entities.settings_json(settings)
    assert text is not None
    assert entities.utf16_len(text) <= entities.MAX_STRING
    text.encode("utf-8")  # valid on the wire: no lone surrogate left
    return entities.parse_settings(text)


@pytest.mark.parametrize(
    "settings",
    [(), (BARE,), (EVERY_FIELD,), (EVERY_FIELD, BARE, EVERY_FIELD)],
    ids=["none", "bare", "every-field", "several-in-order"],
)
def test_every_field_round_trips(settings: tuple[DiagnosticSetting, ...]) -> None:
    assert round_trip(settings) == settings


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_strings_round_trip(text: str) -> None:
    settings = (hostile_setting(text), EVERY_FIELD)
    assert round_trip(settings) == settings


def test_the_text_is_compact_versioned_json() -> None:
    text = entities.settings_json((BARE,))
    assert text == '{"v":1,"s":[{"id":"x","name":"","logs":[],"metrics":[]}]}'


def test_settings_too_big_for_one_property_are_not_stored() -> None:
    # Five settings (Azure's limit) of long names: 5 x 12 x 1,000 characters.
    big = tuple(hostile_setting(f"{i}" + "y" * 1_000) for i in range(5))
    assert entities.settings_json(big) is None
    # Counted in UTF-16 units: characters outside the BMP count twice.
    wide = "🙂" * 2_000
    assert len(wide) * 12 < entities.MAX_STRING < entities.utf16_len(wide) * 12
    assert entities.settings_json((hostile_setting(wide),)) is None
    fits = "y" * 2_600
    assert entities.parse_settings(entities.settings_json((hostile_setting(fits),))) is not None


def stored(**changes: Any) -> str:
    document: dict[str, Any] = json.loads(entities.settings_json((EVERY_FIELD,)) or "")
    document.update(changes)
    return json.dumps(document)


def with_item(**changes: Any) -> str:
    document: dict[str, Any] = json.loads(stored())
    document["s"][0].update(changes)
    return json.dumps(document)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "[1,",
        "[]",
        "null",
        '"text"',
        "[" * 100_000,  # deeper than the parser goes
        stored(v=2),
        stored(v="1"),
        stored(v=True),
        stored(v=1.0),
        stored(v=None),
        stored(s=None),
        stored(s={}),
        stored(s=[1]),
        with_item(id=None),
        with_item(name=7),
        with_item(ws=["x"]),
        with_item(logs=None),
        with_item(logs="ab"),
        with_item(logs=[[True, "a"]]),
        with_item(logs=[["yes", "a", None]]),
        with_item(logs=[[1, "a", None]]),
        with_item(logs=[[True, 5, None]]),
        with_item(metrics=[["AllMetrics"]]),
        with_item(metrics=[[None, True]]),
        with_item(metrics=[["AllMetrics", 0]]),
        with_item(metrics={"AllMetrics": True}),
    ],
)
def test_malformed_or_unknown_versions_are_not_known(text: str | None) -> None:
    assert entities.parse_settings(text) is None


def test_unknown_keys_are_ignored() -> None:
    # A later version 1 writer may add an optional field; what this one knows still reads.
    assert entities.parse_settings(with_item(extra="x")) == (EVERY_FIELD,)


def entity(verdict: Verdict) -> dict[str, Any]:
    reasons, _ = entities.reasons_json(verdict.reasons)
    return entities.registry_entity(
        keys.registry_key(verdict.registry.name),
        verdict,
        reasons,
        run_id="run1",
        observed_at=NOW,
        status_since=NOW,
    )


def exempt(verdict: Verdict) -> Verdict:
    waiver = exemptions.Exemption(
        "migration", exemptions.Category.WAIVER, NOW + timedelta(days=30), "setting"
    )
    (done,) = exemptions.apply([verdict], {normalize_id(REGISTRY.id): waiver}, now=NOW)
    assert done.status is Status.EXEMPT
    return done


MISSING = (Reason("category_missing:ContainerRegistryLoginEvents", "why"),)
UNREAD = (Reason("unknown:throttled", "why"),)
COMPLIANT = Verdict(REGISTRY, Status.COMPLIANT, settings=(EVERY_FIELD,))
NONCOMPLIANT = Verdict(REGISTRY, Status.NONCOMPLIANT, MISSING, settings=(EVERY_FIELD,))
NO_SETTING = Verdict(REGISTRY, Status.NONCOMPLIANT, MISSING, settings=())
# An unknown verdict may carry what was read before the read failed: never stored.
UNKNOWN = Verdict(REGISTRY, Status.UNKNOWN, UNREAD, settings=(EVERY_FIELD,))
REMOVED = Verdict(REGISTRY, Status.REMOVED, (Reason("removed", "gone"),))
# Remediated by the auditor, its first events awaited: its settings were read.
PENDING = Verdict(REGISTRY, Status.PENDING, (Reason("pending", "why"),), settings=(EVERY_FIELD,))
# Unknown for its logs (its workspace unreadable), not its settings: those were read.
LOGS_UNKNOWN = Verdict(
    REGISTRY, Status.UNKNOWN, (Reason("logs_unreadable:http_404", "why"),), settings=(EVERY_FIELD,)
)


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        (COMPLIANT, (EVERY_FIELD,)),
        (NONCOMPLIANT, (EVERY_FIELD,)),
        (NO_SETTING, ()),
        (exempt(COMPLIANT), (EVERY_FIELD,)),
        (exempt(NO_SETTING), ()),
        (UNKNOWN, None),
        (exempt(UNKNOWN), None),
        (REMOVED, None),
        (LOGS_UNKNOWN, (EVERY_FIELD,)),
        (exempt(LOGS_UNKNOWN), (EVERY_FIELD,)),
        (PENDING, (EVERY_FIELD,)),
        (exempt(PENDING), (EVERY_FIELD,)),
    ],
    ids=[
        "compliant",
        "noncompliant",
        "no-setting",
        "exempt-compliant",
        "exempt-no-setting",
        "unknown",
        "exempt-unknown",
        "removed",
        "logs-unknown",
        "exempt-logs-unknown",
        "pending",
        "exempt-pending",
    ],
)
def test_a_row_keeps_the_settings_its_run_read(
    verdict: Verdict, expected: tuple[DiagnosticSetting, ...] | None
) -> None:
    row = entity(verdict)
    assert ("Settings" in row) == (expected is not None)  # absent, not empty: not known
    assert entities.parse_settings(row.get("Settings")) == expected
    state = entities.stored_state(row)
    assert state.settings == row.get("Settings")
    assert "Settings" in entities.STATE_COLUMNS


def test_a_row_whose_settings_do_not_fit_keeps_none() -> None:
    big = tuple(hostile_setting(f"{i}" + "y" * 1_000) for i in range(5))
    row = entity(Verdict(REGISTRY, Status.COMPLIANT, settings=big))
    assert "Settings" not in row


def test_a_stored_state_without_settings_is_not_known() -> None:
    assert entities.stored_state({"RowKey": "acrprod", "Status": "compliant"}).settings is None
    assert entities.stored_state({"Settings": None}).settings is None


def test_the_run_writer_parses_what_it_opened_with() -> None:
    service = TableServiceClient.from_connection_string(AZURITE)  # sends nothing
    key = keys.registry_key(REGISTRY.name)

    def state(settings: str | None) -> StoredState:
        return StoredState(REGISTRY, "compliant", (), NOW, "run0", settings)

    opened = {
        key: state(entities.settings_json((EVERY_FIELD,))),
        "empty": state(entities.settings_json(())),
        "unknown": state(None),
        "garbled": state("{"),
    }
    with RunWriter(Tables(service, prefix="t"), "run1", opened) as writer:
        assert writer.stored_settings(key) == (EVERY_FIELD,)
        assert writer.stored_settings("empty") == ()
        assert writer.stored_settings("unknown") is None
        assert writer.stored_settings("garbled") is None
        assert writer.stored_settings("never-stored") is None


def test_the_run_writer_lets_the_settings_text_go_once_the_run_has_planned() -> None:
    service = TableServiceClient.from_connection_string(AZURITE)  # sends nothing
    key = keys.registry_key(REGISTRY.name)
    text = entities.settings_json((EVERY_FIELD,))
    opened = {key: StoredState(REGISTRY, "compliant", ("a",), NOW, "run0", text, digest="d")}
    with RunWriter(Tables(service, prefix="t"), "run1", opened) as writer:
        assert writer.stored_settings(key) == (EVERY_FIELD,)
        writer.judged_from_store([key])
        assert writer.stored_settings(key) is None
        assert writer.known_registries() == [REGISTRY]  # the rest of the state stays
        assert writer.stored_facts(key) is False


FULL_FACTS = replace(
    REGISTRY,
    location="westeurope",
    sku="Premium",
    admin_user_enabled=True,
    anonymous_pull_enabled=False,
    created_at=NOW - timedelta(days=3),
    tags=((exemptions.TAG, "waiver; until=2999-01-01"),),
)


def test_a_row_keeps_every_fact_of_its_registry() -> None:
    row = entity(judge(FULL_FACTS, (EVERY_FIELD,), (), Policy()))
    state = entities.stored_state(row)
    assert state.facts and state.registry == FULL_FACTS
    # A row an older version wrote names the registry only: its facts are not known.
    assert not entities.stored_state({k: v for k, v in row.items() if k != "Facts"}).facts


@pytest.mark.usefixtures("kept_tags")
def test_facts_written_before_a_tag_was_kept_are_not_known() -> None:
    row = entity(judge(FULL_FACTS, (EVERY_FIELD,), (), Policy()))
    tags.keep("auto-remediate")
    assert not entities.stored_state(row).facts  # its value may be missing from the row
    assert entities.stored_state(entity(judge(FULL_FACTS, (), (), Policy()))).facts


def test_the_digest_is_the_rows_content_less_the_run_that_wrote_it() -> None:
    verdict = judge(REGISTRY, (EVERY_FIELD,), (), Policy())
    row = entity(verdict)
    again = {**row, "LastRunId": "another", "CheckedAt": NOW.isoformat()}
    assert entities.content_digest(again) == row["Digest"]
    assert entities.content_digest({**row, "Status": "noncompliant"}) != row["Digest"]
    assert entities.content_digest({**row, "Settings": None}) != row["Digest"]


def test_a_fleets_stored_states_share_their_statuses_run_ids_and_reason_codes() -> None:
    def row(name: str) -> dict[str, Any]:
        # Decoded from JSON, as a page of rows is: each row its own copy of every string.
        reasons = [{"code": "metrics_missing", "detail": name}, {"code": "logs_silent"}]
        return json.loads(
            json.dumps(
                {
                    "RowKey": name,
                    "Name": name,
                    "Status": "noncompliant",
                    "LastRunId": "20261207T120000Z-0123abcd",
                    "Reasons": json.dumps(reasons),
                }
            )
        )

    first, second = (entities.stored_state(row(n)) for n in ("acrone", "acrtwo"))
    assert first.reason_codes == ("logs_silent", "metrics_missing")
    assert first.status is second.status
    assert first.last_run_id is second.last_run_id
    assert first.reason_codes is second.reason_codes
