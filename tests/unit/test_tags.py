"""The tags a registry fact keeps and the remediation tag's rule: AUDITOR_REMEDIATION_TAG parsed
and checked, matched without case on the name and exactly on the value."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from auditor.azure.inventory import REGISTRY_QUERY, registry_from_graph_row, registry_from_model
from auditor.errors import ConfigError
from auditor.exemptions import TAG
from auditor.settings import Settings
from auditor.tags import TagRule, parse_rule, tag_pairs

pytestmark = pytest.mark.usefixtures("kept_tags")
MINIMAL = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
ROW = {
    "id": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
    "/Microsoft.ContainerRegistry/registries/acrone1",
    "tags": {"env": "prod", "Auto-Remediate": "yes", "owner": "me"},
}


def remediation_tag(value: str) -> TagRule | None:
    return Settings.from_env({**MINIMAL, "AUDITOR_REMEDIATION_TAG": value}).remediation.tag


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("auto-remediate", TagRule("auto-remediate")),
        ("Auto-Remediate=yes", TagRule("Auto-Remediate", "yes")),
        (" team = platform ops ", TagRule("team", "platform ops")),
        ("expr=a=b", TagRule("expr", "a=b")),  # split at the first '='
    ],
)
def test_the_setting_is_a_name_or_a_name_and_value(text: str, rule: TagRule) -> None:
    assert remediation_tag(text) == rule


def test_unset_means_no_tag() -> None:
    assert Settings.from_env(MINIMAL).remediation.tag is None
    assert remediation_tag("   ") is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("=yes", "has no tag name"),
        ("auto-remediate=", "has no value after 'auto-remediate'="),
        ("team/ops", "not an Azure tag name"),
        ("a" * 513, "not an Azure tag name"),
        ("env=" + "v" * 257, "longer than Azure's 256"),
        ("ACR-Auditor-Exempt", "is the exemption tag"),
        ("acr-auditor-exempt=yes", "is the exemption tag"),
    ],
)
def test_a_bad_value_names_the_variable(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        remediation_tag(text)
    assert caught.value.setting == "AUDITOR_REMEDIATION_TAG"
    assert words in str(caught.value)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("rule", "registry_tags", "matches"),
    [
        (TagRule("auto-remediate"), [("Auto-Remediate", "")], True),
        (TagRule("auto-remediate"), [("AUTO-REMEDIATE", "anything")], True),
        (TagRule("auto-remediate", "yes"), [("auto-remediate", " yes ")], True),
        (TagRule("auto-remediate", "yes"), [("auto-remediate", "Yes")], False),
        (TagRule("auto-remediate", "yes"), [("auto-remediate", "no")], False),
        (TagRule("auto-remediate", "yes"), [("remediate", "yes")], False),
        (TagRule("auto-remediate"), [], False),
    ],
)
def test_the_name_matches_in_any_case_and_the_value_exactly(
    rule: TagRule, registry_tags: list[tuple[str, str]], matches: bool
) -> None:
    assert rule.matches(registry_tags) is matches


def test_the_rule_reads_back_as_written() -> None:
    for text in ("auto-remediate", "auto-remediate=yes"):
        assert str(parse_rule(text)) == text


def test_only_the_tags_a_setting_reads_are_kept_on_the_fact() -> None:
    assert registry_from_graph_row(ROW).tags == ()
    remediation_tag("auto-remediate=yes")
    assert registry_from_graph_row(ROW).tags == (("Auto-Remediate", "yes"),)
    assert tag_pairs({TAG: "r", "AUTO-REMEDIATE": 1, "env": "x"}) == (
        (TAG, "r"),
        ("AUTO-REMEDIATE", "1"),
    )
    assert "tags" in REGISTRY_QUERY
    # The ARM list (the fallback) and the single registry read keep the same.
    model = SimpleNamespace(id=ROW["id"], tags=ROW["tags"])
    assert registry_from_model(model).tags == (("Auto-Remediate", "yes"),)
