"""The alert settings: defaults, validation without echoing secrets, sinks built from them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from auditor.alerts.config import build_sinks, options_from_settings, queue_account_url
from auditor.errors import ConfigError
from auditor.settings import Settings

MINIMAL = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
TOKEN = "XyZsecretPathToken42"
SLACK = f"https://hooks.slack.com/services/T0/B0/{TOKEN}"
TEAMS = f"https://prod-12.westeurope.logic.azure.com/workflows/abc/triggers/manual?sig={TOKEN}"
SECRET = "0123456789abcdef-hmac"


def load(**env: str) -> Settings:
    return Settings.from_env({**MINIMAL, **env})


def test_defaults() -> None:
    s = load()
    assert (s.alerts.webhook_url, s.alerts.webhook_secret, s.alerts.teams_url) == (None,) * 3
    assert (s.alerts.slack_url, s.alerts.queue) == (None, None)
    assert s.alerts.log_records is True
    assert s.alerts.remind_after == timedelta(hours=24)
    assert (s.alerts.login, s.alerts.on_unknown) == (False, False)
    assert [sink.name for sink in build_sinks(s)] == ["log"]
    options = options_from_settings(s)
    assert options.remind_after == timedelta(hours=24)
    assert not options.login_alerts and not options.alert_on_unknown
    assert options.sink_budget == 60.0


def test_every_alert_variable_is_read() -> None:
    s = load(
        AUDITOR_ALERT_WEBHOOK_URL="https://hooks.example.com/acr",
        AUDITOR_ALERT_WEBHOOK_SECRET=SECRET,
        AUDITOR_ALERT_TEAMS_URL=TEAMS,
        AUDITOR_ALERT_SLACK_URL=SLACK,
        AUDITOR_ALERT_QUEUE="acr-alerts",
        AUDITOR_ALERT_LOG_RECORDS="no",
        AUDITOR_ALERT_REMIND_HOURS="0",
        AUDITOR_ALERT_LOGIN="yes",
        AUDITOR_ALERT_ON_UNKNOWN="1",
        AUDITOR_ALERT_SINK_BUDGET_SECONDS="7.5",
    )
    assert s.alerts.webhook_url == "https://hooks.example.com/acr"
    assert s.alerts.webhook_secret == SECRET
    assert (s.alerts.teams_url, s.alerts.slack_url, s.alerts.queue) == (TEAMS, SLACK, "acr-alerts")
    sinks = build_sinks(s)
    assert [sink.name for sink in sinks] == ["webhook", "teams", "slack", "queue"]
    for sink in sinks:
        sink.close()
    options = options_from_settings(s)
    assert options.remind_after is None
    assert options.login_alerts and options.alert_on_unknown
    assert options.sink_budget == 7.5


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]:9000/x",
        "https://h/x?a=b",
    ],
)
def test_accepted_urls(url: str) -> None:
    assert load(AUDITOR_ALERT_WEBHOOK_URL=url).alerts.webhook_url == url


BAD = [
    ("AUDITOR_ALERT_WEBHOOK_URL", f"http://hooks.example.com/{TOKEN}", "https://"),
    ("AUDITOR_ALERT_SLACK_URL", f"hooks.slack.com/services/{TOKEN}", "https://"),
    ("AUDITOR_ALERT_TEAMS_URL", f"ftp://example.com/{TOKEN}", "https://"),
    ("AUDITOR_ALERT_TEAMS_URL", f"https://user:{TOKEN}@example.com/", "user:password"),
    ("AUDITOR_ALERT_SLACK_URL", f"https://example.com/#{TOKEN}", "fragment"),
    ("AUDITOR_ALERT_WEBHOOK_URL", f"https://example.com:99999/{TOKEN}", "not a URL"),
    ("AUDITOR_ALERT_QUEUE", "Acr_Alerts", "queue name"),
    ("AUDITOR_ALERT_QUEUE", "a--b", "queue name"),
    ("AUDITOR_ALERT_QUEUE", "ab", "queue name"),
    ("AUDITOR_ALERT_QUEUE", "x" * 64, "queue name"),
    ("AUDITOR_ALERT_LOG_RECORDS", "maybe", "not a boolean"),
    ("AUDITOR_ALERT_LOGIN", "on", "not a boolean"),
    ("AUDITOR_ALERT_ON_UNKNOWN", "2", "not a boolean"),
    ("AUDITOR_ALERT_REMIND_HOURS", "-1", "between"),
    ("AUDITOR_ALERT_REMIND_HOURS", "9000", "between"),
    ("AUDITOR_ALERT_REMIND_HOURS", "soon", "not a number"),
    ("AUDITOR_ALERT_SINK_BUDGET_SECONDS", "0", "between"),
    ("AUDITOR_ALERT_SINK_BUDGET_SECONDS", "1e9", "between"),
]


@pytest.mark.parametrize(("name", "value", "words"), BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_bad_values_name_the_variable_and_hide_urls(name: str, value: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(**{name: value})
    assert caught.value.setting == name
    assert words in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_secret_needs_the_webhook_and_a_real_length() -> None:
    for secret in (SECRET, "short"):
        with pytest.raises(ConfigError) as caught:
            load(AUDITOR_ALERT_WEBHOOK_SECRET=secret)
        assert caught.value.setting == "AUDITOR_ALERT_WEBHOOK_SECRET"
        assert "AUDITOR_ALERT_WEBHOOK_URL is not" in str(caught.value)
        assert secret not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load(AUDITOR_ALERT_WEBHOOK_URL="https://h/x", AUDITOR_ALERT_WEBHOOK_SECRET="short")
    assert "at least 16" in str(caught.value) and "short" not in str(caught.value)


def test_repr_hides_urls_and_secret() -> None:
    s = load(
        AUDITOR_ALERT_WEBHOOK_URL=f"https://hooks.example.com/{TOKEN}",
        AUDITOR_ALERT_WEBHOOK_SECRET=SECRET,
        AUDITOR_ALERT_TEAMS_URL=TEAMS,
        AUDITOR_ALERT_SLACK_URL=SLACK,
    )
    assert TOKEN not in repr(s) and SECRET not in repr(s)
    sinks = build_sinks(s)
    assert TOKEN not in repr(sinks) and SECRET not in repr(sinks)
    for sink in sinks:
        sink.close()


def test_queue_with_identity_based_storage() -> None:
    assert queue_account_url("https://auditsa.table.core.windows.net") == (
        "https://auditsa.queue.core.windows.net"
    )
    assert queue_account_url("https://auditsa.table.core.chinacloudapi.cn") == (
        "https://auditsa.queue.core.chinacloudapi.cn"
    )
    with pytest.raises(ConfigError):
        queue_account_url("https://tables.example.com")
    s = Settings.from_env(
        {"AzureWebJobsStorage__accountName": "auditsa", "AUDITOR_ALERT_QUEUE": "acr-alerts"}
    )
    with pytest.raises(ConfigError, match="credential"):
        build_sinks(s)
