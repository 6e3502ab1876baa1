"""Settings from the environment: defaults, each variable, errors that name it, no leaked keys."""

from __future__ import annotations

import ast
import json
from datetime import timedelta
from pathlib import Path

import pytest

from auditor import settings as settings_module
from auditor import settings_docs
from auditor.errors import ConfigError
from auditor.policy import Destination, Policy
from auditor.settings import GROUPS, GUID_RE, SETTING_NAMES, Settings

ROOT = Path(__file__).resolve().parents[2]
SUB = "0000aaaa-0000-0000-0000-000000000001"
OTHER_SUB = "11111111-2222-3333-4444-555555555555"
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-logs/providers/"
    "Microsoft.OperationalInsights/workspaces/law-central"
)
ACCOUNT_KEY = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="
CONNECTION_STRING = (
    "DefaultEndpointsProtocol=https;AccountName=auditsa;"
    f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
)
MINIMAL = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def load(**env: str) -> Settings:
    return Settings.from_env({**MINIMAL, **env})


def test_defaults() -> None:
    s = load()
    assert s.policy == Policy()
    assert s.audit.subscriptions == ()
    assert s.audit.schedule == "0 0 * * * *"
    assert s.arm.endpoint == "https://management.azure.com"
    assert s.arm.audience == "https://management.azure.com"
    assert s.logs.endpoint == "https://api.loganalytics.io"
    assert s.logs.audience == "https://api.loganalytics.io"
    assert s.storage.connection_string == "UseDevelopmentStorage=true"
    assert s.storage.table_endpoint is None
    assert s.storage.table_prefix == "acraudit"
    assert (s.arm.max_concurrency, s.arm.reads_per_second, s.arm.burst, s.arm.http_retries) == (
        32,
        25.0,
        250,
        4,
    )


def test_every_variable_is_read() -> None:
    s = Settings.from_env(
        {
            "AUDITOR_SUBSCRIPTIONS": f" {SUB.upper()} , {SUB}, {OTHER_SUB}",
            "AUDITOR_REQUIRED_CATEGORIES": "ContainerRegistryLoginEvents",
            "AUDITOR_REQUIRE_METRICS": "no",
            "AUDITOR_ACCEPTED_DESTINATIONS": "workspace, Storage",
            "AUDITOR_ACCEPTED_WORKSPACES": WS.upper(),
            "AUDITOR_REQUIRE_DEDICATED": "0",
            "AUDITOR_SCHEDULE": "0  */15 * * * 1-5",
            "AUDITOR_ARM_ENDPOINT": "https://127.0.0.1:8443/",
            "AUDITOR_ARM_AUDIENCE": "https://management.chinacloudapi.cn/",
            "AUDITOR_LOGS_ENDPOINT": "https://127.0.0.1:8444",
            "AUDITOR_LOGS_AUDIENCE": "https://api.loganalytics.azure.cn",
            "AUDITOR_STORAGE": CONNECTION_STRING,
            "AUDITOR_TABLE_PREFIX": "audit2",
            "AUDITOR_MAX_CONCURRENCY": "256",
            "AUDITOR_ARM_READS_PER_SECOND": "2.5",
            "AUDITOR_ARM_BURST": "1",
            "AUDITOR_HTTP_RETRIES": "0",
        }
    )
    assert s.audit.subscriptions == (SUB, OTHER_SUB)
    assert s.policy == Policy(
        required_categories=("ContainerRegistryLoginEvents",),
        require_metrics=False,
        accepted_destinations=frozenset({Destination.WORKSPACE, Destination.STORAGE}),
        accepted_workspaces=frozenset({WS}),
        require_dedicated=False,
    )
    assert s.audit.schedule == "0 */15 * * * 1-5"
    assert s.arm.endpoint == "https://127.0.0.1:8443"
    assert s.arm.audience == "https://management.chinacloudapi.cn"
    assert s.logs.endpoint == "https://127.0.0.1:8444"
    assert s.logs.audience == "https://api.loganalytics.azure.cn"
    assert s.storage.connection_string == CONNECTION_STRING
    assert s.storage.table_prefix == "audit2"
    assert (s.arm.max_concurrency, s.arm.reads_per_second, s.arm.burst, s.arm.http_retries) == (
        256,
        2.5,
        1,
        0,
    )


def test_blank_values_mean_default() -> None:
    assert load(AUDITOR_MAX_CONCURRENCY="  ", AUDITOR_REQUIRED_CATEGORIES="") == load()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("NO", False),
    ],
)
def test_booleans(text: str, expected: bool) -> None:
    assert load(AUDITOR_REQUIRE_METRICS=text).policy.require_metrics is expected
    assert load(AUDITOR_REQUIRE_DEDICATED=text).policy.require_dedicated is expected


@pytest.mark.parametrize(
    ("env", "expected_connection", "expected_endpoint"),
    [
        (
            {
                "AUDITOR_STORAGE": CONNECTION_STRING,
                "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            },
            CONNECTION_STRING,
            None,
        ),
        (
            {"AzureWebJobsStorage": CONNECTION_STRING, "AzureWebJobsStorage__accountName": "other"},
            CONNECTION_STRING,
            None,
        ),
        (
            {"AzureWebJobsStorage__accountName": "auditsa"},
            None,
            "https://auditsa.table.core.windows.net",
        ),
        (
            {
                "AzureWebJobsStorage__tableServiceUri": "https://auditsa.table.core.chinacloudapi.cn/",
                "AzureWebJobsStorage__accountName": "auditsa",
            },
            None,
            "https://auditsa.table.core.chinacloudapi.cn",
        ),
        (
            {
                "AUDITOR_STORAGE": "",
                "AzureWebJobsStorage": "",
                "AzureWebJobsStorage__accountName": "auditsa",
            },
            None,
            "https://auditsa.table.core.windows.net",
        ),
    ],
    ids=[
        "auditor-storage-first",
        "webjobs-connection-string",
        "identity-account-name",
        "identity-table-uri-first",
        "blank-values-skipped",
    ],
)
def test_storage_precedence(
    env: dict[str, str], expected_connection: str | None, expected_endpoint: str | None
) -> None:
    s = Settings.from_env(env)
    assert s.storage.connection_string == expected_connection
    assert s.storage.table_endpoint == expected_endpoint


def test_storage_can_be_optional() -> None:
    s = Settings.from_env({}, require_storage=False)
    assert (s.storage.connection_string, s.storage.table_endpoint) == (None, None)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AzureWebJobsStorage__accountName": "Bad_Name"}, require_storage=False)
    assert caught.value.setting == "AzureWebJobsStorage__accountName"


@pytest.mark.parametrize(
    ("value", "ok"),
    [(SUB, True), (SUB.upper(), True), (SUB + "\n", False), (SUB + "0", False), ("x" + SUB, False)],
)
def test_guid_re_matches_whole_ids(value: str, ok: bool) -> None:
    assert (GUID_RE.match(value) is not None) is ok


def test_no_storage_names_every_option() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({})
    message = str(caught.value)
    for name in (
        "AUDITOR_STORAGE",
        "AzureWebJobsStorage",
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__tableServiceUri",
    ):
        assert name in message


BAD = [
    ("AUDITOR_SUBSCRIPTIONS", f"{SUB},not-a-guid", "not a subscription id"),
    ("AUDITOR_REQUIRED_CATEGORIES", "allLogs", "category group"),
    ("AUDITOR_REQUIRED_CATEGORIES", "A,a", "listed twice"),
    ("AUDITOR_REQUIRE_METRICS", "maybe", "not a boolean"),
    ("AUDITOR_REQUIRE_DEDICATED", "on", "not a boolean"),
    ("AUDITOR_ACCEPTED_DESTINATIONS", "workspace,ftp", "not one of"),
    ("AUDITOR_ACCEPTED_WORKSPACES", "law-central", "not a Log Analytics workspace id"),
    ("AUDITOR_SCHEDULE", "0 * * * *", "5 fields"),
    ("AUDITOR_SCHEDULE", "0 60 * * * *", "minute"),
    ("AUDITOR_SCHEDULE", "0 0 24 * * *", "hour"),
    ("AUDITOR_SCHEDULE", "0 0 * 0 * *", "day"),
    ("AUDITOR_SCHEDULE", "0 0 * * foo *", "month"),
    ("AUDITOR_SCHEDULE", "0 0 * * * 7", "day-of-week"),
    ("AUDITOR_SCHEDULE", "*/0 0 * * * *", "second"),
    ("AUDITOR_ARM_ENDPOINT", "http://management.azure.com", "https://"),
    ("AUDITOR_ARM_ENDPOINT", "management.azure.com", "https://"),
    ("AUDITOR_ARM_ENDPOINT", "https://host:99999", "not a URL"),
    ("AUDITOR_LOGS_ENDPOINT", "https://api.loganalytics.io?x=1", "query"),
    ("AUDITOR_ARM_ENDPOINT", "https://user:pa55w0rd@management.azure.com", "credentials"),
    ("AUDITOR_LOGS_ENDPOINT", "http://u:pa55w0rd@api.loganalytics.io", "credentials"),
    ("AUDITOR_LOGS_AUDIENCE", "api.loganalytics.io", "https://"),
    ("AUDITOR_ARM_AUDIENCE", "http://management.azure.com", "https://"),
    ("AUDITOR_TABLE_PREFIX", "1audit", "start with a letter"),
    ("AUDITOR_TABLE_PREFIX", "acr-audit", "letters and digits"),
    ("AUDITOR_TABLE_PREFIX", "a" * 41, "at most 40"),
    ("AUDITOR_MAX_CONCURRENCY", "0", "between 1 and 256"),
    ("AUDITOR_MAX_CONCURRENCY", "257", "between 1 and 256"),
    ("AUDITOR_MAX_CONCURRENCY", "1.5", "not an integer"),
    ("AUDITOR_ARM_READS_PER_SECOND", "0", "between 0.1 and 10000"),
    ("AUDITOR_ARM_READS_PER_SECOND", "-1", "between 0.1 and 10000"),
    # 1e-300 overflowed the pacer, 0.0001 waited hours per read.
    ("AUDITOR_ARM_READS_PER_SECOND", "1e-300", "between 0.1 and 10000"),
    ("AUDITOR_ARM_READS_PER_SECOND", "0.0001", "between 0.1 and 10000"),
    ("AUDITOR_ARM_READS_PER_SECOND", "nan", "not a finite number"),
    ("AUDITOR_ARM_READS_PER_SECOND", "fast", "not a number"),
    ("AUDITOR_ARM_BURST", "0", "between 1 and 100000"),
    ("AUDITOR_RETENTION_EVIDENCE_DAYS", "0", "between 1 and 3650"),
    ("AUDITOR_RETENTION_RUNS_DAYS", "forever", "not an integer"),
    ("AUDITOR_RETENTION_HISTORY_DAYS", "99999", "between 1 and 3650"),
    ("AUDITOR_SCHEDULE", "0 0 0 31 2 *", "never fires"),
    ("AUDITOR_SCHEDULE", "0 */² * * * *", "not a valid minute"),
    ("AUDITOR_SCHEDULE", "0 */" + "9" * 5000 + " * * * *", "not a valid minute"),
    ("AUDITOR_MAX_CONCURRENCY", "9" * 5000, "not an integer"),
    ("AUDITOR_HTTP_RETRIES", "11", "between 0 and 10"),
    ("AUDITOR_HTTP_RETRIES", "-1", "between 0 and 10"),
    ("AzureWebJobsStorage__accountName", "Audit_SA", "storage account name"),
    ("AzureWebJobsStorage__tableServiceUri", "http://127.0.0.1:10002/devstoreaccount1", "https://"),
    ("AUDITOR_STORAGE", "just-a-string", "not a storage connection string"),
    ("AUDITOR_STORAGE", "AccountKey=abc==", "AccountName"),
]


@pytest.mark.parametrize(("name", "value", "words"), BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_bad_values_name_the_variable(name: str, value: str, words: str) -> None:
    env = {name: value}
    if not name.startswith("AzureWebJobsStorage"):
        env = {**MINIMAL, **env}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.setting == name
    assert str(caught.value).startswith(f"{name}: ")
    assert words in str(caught.value)
    assert len(str(caught.value)) < 300  # a huge value is not echoed whole
    assert "pa55w0rd" not in str(caught.value)


@pytest.mark.parametrize(
    "schedule",
    [
        "0 0 * * * *",
        "*/30 * * * * *",
        "0 30 9 * * Mon-Fri",
        "0 0 0 1 jan,jul *",
        "0 5,35 8-18/2 * * 0",
    ],
)
def test_valid_schedules(schedule: str) -> None:
    assert load(AUDITOR_SCHEDULE=schedule).audit.schedule == schedule


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUDITOR_STORAGE", f"AccountName=x;AccountKey={ACCOUNT_KEY};broken"),
        ("AzureWebJobsStorage", f"AccountKey={ACCOUNT_KEY}"),
        (
            "AzureWebJobsStorage__tableServiceUri",
            f"https://x.table.core.windows.net/?sig={ACCOUNT_KEY}",
        ),
    ],
)
def test_storage_errors_never_echo_the_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert ACCOUNT_KEY not in str(caught.value)
    assert name in str(caught.value)


@pytest.mark.parametrize("name", ["AUDITOR_STORAGE", "AzureWebJobsStorage"])
def test_repr_hides_the_connection_string(name: str) -> None:
    s = Settings.from_env({name: CONNECTION_STRING})
    assert ACCOUNT_KEY not in repr(s)
    assert s.storage.connection_string == CONNECTION_STRING


def test_missing_storage_is_reported_before_other_mistakes() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AUDITOR_TABLE_PREFIX": "1audit", "AUDITOR_HTTP_RETRIES": "99"})
    assert caught.value.setting == "AUDITOR_STORAGE"


def test_only_the_chosen_storage_is_read() -> None:
    # The Functions host reads the first one set; the others may hold anything.
    s = load(AUDITOR_STORAGE=CONNECTION_STRING, AzureWebJobsStorage__accountName="Not_A_Name")
    assert (s.storage.connection_string, s.storage.table_endpoint) == (CONNECTION_STRING, None)
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"AzureWebJobsStorage__accountName": "Not_A_Name"})
    assert caught.value.setting == "AzureWebJobsStorage__accountName"


@pytest.mark.parametrize(
    "name",
    [
        "AUDITOR_SUBSCRIPTIONS",
        "AUDITOR_REQUIRED_CATEGORIES",
        "AUDITOR_ACCEPTED_DESTINATIONS",
        "AUDITOR_ACCEPTED_WORKSPACES",
    ],
)
def test_a_list_of_nothing_is_unset(name: str) -> None:
    assert load(**{name: " , ,"}) == load()


def test_log_settings_are_durations() -> None:
    s = load(AUDITOR_LOGS_LOOKBACK_HOURS="1.5", AUDITOR_PENDING_MINUTES="0")
    assert s.logs.lookback == timedelta(hours=1.5)
    assert s.logs.pending_window == timedelta(0)
    assert s.logs.silent_after == timedelta(hours=24)
    assert s.logs.burst_window == timedelta(minutes=5)


def test_policy_errors_are_relabelled_with_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load(AUDITOR_ACCEPTED_WORKSPACES=WS, AUDITOR_ACCEPTED_DESTINATIONS="storage")
    assert caught.value.setting == "AUDITOR_ACCEPTED_WORKSPACES"


def _names_in_settings_module() -> list[str]:
    """String constants that look like variable names, found in settings.py's source."""
    tree = ast.parse(Path(settings_module.__file__).read_text(encoding="utf-8"))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (node.value.startswith("AUDITOR_") or node.value.startswith("AzureWebJobsStorage"))
        and " " not in node.value
    ]


def test_each_variable_is_spelled_once() -> None:
    names = _names_in_settings_module()
    assert sorted(names) == sorted(SETTING_NAMES)
    assert len(set(names)) == len(names)


def test_every_variable_has_a_description_and_a_format() -> None:
    for group in GROUPS:
        for variable in group.declared():
            assert variable.description.endswith("."), variable.name
            assert variable.accepts, variable.name


def test_sample_is_rendered_from_the_declarations() -> None:
    # If this fails, run `python -m auditor.settings_docs`.
    assert settings_docs.SAMPLE.read_text(encoding="utf-8") == settings_docs.render_sample()


def test_docs_tables_are_rendered_from_the_declarations() -> None:
    # If this fails, run `python -m auditor.settings_docs`.
    docs = settings_docs.DOCS.read_text(encoding="utf-8")
    assert settings_docs.render_docs(docs) == docs


def test_docs_need_a_table_for_each_group() -> None:
    docs = settings_docs.DOCS.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="AlertSettings"):
        settings_docs.render_docs(docs.replace("<!-- table AlertSettings -->", ""))


def test_sample_lists_every_setting_and_nothing_else() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    assert sample["IsEncrypted"] is False
    values = sample["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    assert set(SETTING_NAMES) <= set(values)
    ours = {k for k in values if k.startswith(("AUDITOR_", "AzureWebJobsStorage"))}
    assert ours == set(SETTING_NAMES)


def test_sample_values_are_valid_and_match_the_defaults() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text(encoding="utf-8"))
    assert Settings.from_env(sample["Values"]) == load()


def test_docs_describe_every_setting_with_its_default() -> None:
    docs = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    rows = {
        cells[1].strip().strip("`"): cells[2].strip()
        for cells in (line.split("|") for line in docs.splitlines() if line.startswith("| `"))
    }
    assert set(rows) == set(SETTING_NAMES)
    assert rows["AUDITOR_MAX_CONCURRENCY"] == "`32`"
    assert rows["AUDITOR_LOGS_LOOKBACK_HOURS"] == "`24`"
    assert rows["AUDITOR_SUBSCRIPTIONS"] == "unset"
    for group in GROUPS:
        for variable in group.declared():
            assert rows[variable.name] == (f"`{variable.default}`" if variable.default else "unset")
