"""Exemptions from a registry tag or the setting: tolerant parsing, every problem a finding
(never a crash, never an exemption), expiry its own finding. Dates derive from today."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from auditor.azure.inventory import REGISTRY_QUERY, registry_from_graph_row, registry_from_model
from auditor.errors import ConfigError
from auditor.exemptions import (
    EXPIRED,
    MALFORMED,
    TAG,
    Category,
    ExemptionSettingError,
    apply,
    from_tags,
    otherwise,
    parse_setting,
    resolve,
)
from auditor.facts import Reason, Registry, Status, Verdict
from auditor.settings import Settings
from auditor.tags import tag_pairs

NOW = datetime.now(UTC)
TODAY = NOW.date()
REG = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acrone1"


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


@pytest.mark.parametrize(
    ("value", "category"),
    [
        (f"Decommissioned in Q3; until={day(30)}", Category.WAIVER),
        (
            f"  logs shipped by agent ;  UNTIL : {day(30)} ; category=mitigated ;",
            Category.MITIGATED,
        ),
        (f"Ticket CHG-1 (approved: sec-team); until={day(30)}", Category.WAIVER),
    ],
)
def test_tag_values_parse_tolerantly(value: str, category: Category) -> None:
    result = from_tags({"ACR-Auditor-Exempt": value}, now=NOW)
    assert result.findings == () and result.exemption is not None
    assert result.exemption.category is category and result.exemption.source == "tag"
    # `until` is the last exempt day: the exemption ends at the next midnight UTC.
    assert result.exemption.expires_on.date() == TODAY + timedelta(days=31)
    assert (
        ";" not in result.exemption.reason
        and result.exemption.reason == result.exemption.reason.strip()
    )


def test_the_last_day_is_still_exempt_and_the_next_is_a_finding() -> None:
    last_day = from_tags({TAG: f"waiver; until={day(0)}"}, now=NOW)
    assert last_day.exemption is not None
    lapsed = from_tags({TAG: f"old waiver; until={day(-1)}"}, now=NOW)
    assert lapsed.exemption is None
    [finding] = lapsed.findings
    assert (
        finding.code == EXPIRED and day(-1) in finding.detail and "'old waiver'" in finding.detail
    )


def test_no_tag_no_exemption_and_no_finding() -> None:
    assert from_tags(None, now=NOW) == from_tags({"env": "prod"}, now=NOW)
    assert from_tags({}, now=NOW).exemption is None and from_tags({}, now=NOW).findings == ()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("just a reason", "every exemption must expire"),
        (f"; until={day(5)}", "no reason"),
        (f"   ;until={day(5)}", "no reason"),
        (f"r; untill={day(5)}", "is not until="),
        (f"r; until={day(5)}; until={day(6)}", "given twice"),
        ("r; until=tomorrow", "not a date"),
        (f"r; until={TODAY.year + 1}-02-30", "not a calendar date"),
        ("r; until=", "not a date"),
        (f"r; until={day(400)}", "more than 366 days ahead"),
        ("r; until=9999-12-31", "no expiry"),
        ("r; until=9999-12-30", "more than 366 days ahead"),
        (f"r; until={day(5)}; category=forever", "not Waiver or Mitigated"),
        (f"r\x00eason; until={day(5)}", "control or invisible"),
        (f"safe\u202egnp.exe; until={day(5)}", "control or invisible"),
        (f"zero\u200bwidth; until={day(5)}", "control or invisible"),
        ("x" * 300, "longer than 256"),
        (f"{'r' * 220}; until={day(5)}", "longer than 200"),
        (f"r; until={day(5)}\n; category=Waiver\x1b[31m", "not Waiver or Mitigated"),
        (f"r; until={day(5)}; category=Mitigated; {'=' * 3}", "is not until="),
    ],
)
def test_malformed_tags_are_findings_not_crashes(value: str, problem: str) -> None:
    result = from_tags({TAG: value}, now=NOW)
    assert result.exemption is None
    [finding] = result.findings
    assert finding.code == MALFORMED and problem in finding.detail
    # Nothing hostile reaches the finding's words unescaped.
    assert not any(ch in finding.detail for ch in "\x00\x1b\u202e\u200b\n")
    assert len(finding.detail) < 200


def test_a_tag_given_twice_or_not_as_text_is_malformed() -> None:
    twice = from_tags({TAG: f"a; until={day(1)}", TAG.upper(): f"b; until={day(1)}"}, now=NOW)
    assert [f.code for f in twice.findings] == [MALFORMED] and twice.exemption is None
    assert from_tags({TAG: 42}, now=NOW).findings[0].code == MALFORMED


def setting(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries))


def entry(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "registryId": REG,
        "reason": "Migration to the new landing zone",
        "exemptionCategory": "Mitigated",
        "expiresOn": day(10),
        "ticket": "CHG-42",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def test_the_setting_wins_over_the_tag_and_expires_as_findings() -> None:
    listed = parse_setting(setting(entry(registryId=REG.upper())))
    tags = {TAG: f"owner says so; until={day(100)}"}
    result = resolve(REG, tags, listed, now=NOW)
    assert result.exemption is not None and result.exemption.source == "setting"
    assert result.exemption.category is Category.MITIGATED
    later = NOW + timedelta(days=11)
    lapsed = resolve(REG, tags, listed, now=later)
    assert lapsed.exemption is None and [f.code for f in lapsed.findings] == [EXPIRED]
    other = REG.replace("acrone1", "acrtwo22")
    assert resolve(other, tags, listed, now=NOW).exemption is not None  # its own tag


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("{not json", "not valid JSON"),
        ('{"registryId": "x"}', "a JSON list"),
        (setting(entry(), entry()), "[1].registryId: the registry is listed twice"),
        (setting(entry(registryId="/subscriptions/s/x")), "[0].registryId"),
        (setting(entry(reason=None)), "[0].reason"),
        (setting(entry(expiresOn=None)), "[0].expiresOn"),
        (setting(entry(expiresOn="next week")), "[0]: 'next week' is not a date"),
        (setting(entry(exemptionCategory="Exempt")), "not Waiver or Mitigated"),
        (setting(entry(reason="\u202eevil")), "control or invisible"),
        (setting(entry(until=day(3))), "[0].'until': unknown field"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        (setting("a string"), "[0]: expected an object"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_setting_names_the_entry(text: str, where: str) -> None:
    with pytest.raises(ExemptionSettingError) as err:
        parse_setting(text)
    assert where in str(err.value)


def test_a_setting_entry_may_run_past_the_tag_horizon() -> None:
    far = (date(TODAY.year + 3, 1, 1)).isoformat()
    [only] = parse_setting(setting(entry(expiresOn=far))).values()
    assert only.expires_on.date().isoformat() == (date(TODAY.year + 3, 1, 2)).isoformat()


# --------------------------------------------------------------------------- in a run


def verdict(status: Status, *codes: str, tags: dict[str, str] | None = None) -> Verdict:
    registry = Registry(
        id=REG, name="acrone1", subscription_id="s", resource_group="rg", tags=tag_pairs(tags)
    )
    return Verdict(registry, status, tuple(Reason(c, f"why {c}") for c in codes))


MISSING = "category_missing:ContainerRegistryLoginEvents"


@pytest.mark.parametrize("status", [Status.NONCOMPLIANT, Status.COMPLIANT, Status.UNKNOWN])
def test_an_exemption_in_force_makes_the_registry_exempt_and_keeps_its_reasons(
    status: Status,
) -> None:
    codes = (MISSING,) if status is Status.NONCOMPLIANT else ()
    given = verdict(status, *codes, tags={"Acr-Auditor-Exempt": f"Decommissioned; until={day(9)}"})
    [result] = apply([given], {}, now=NOW)
    assert result.status is Status.EXEMPT
    marker, *kept = result.reasons
    assert marker.code == f"exempted:{status.value}" and otherwise(marker.code) is status
    assert marker.detail == (
        f"Waiver until {day(9)} (acr-auditor-exempt tag): 'Decommissioned'; "
        f"otherwise {status.value}."
    )
    assert [r.code for r in kept] == list(codes)
    assert apply([result], {}, now=NOW) == (result,)  # applied twice: the same


def test_an_ended_or_malformed_exemption_is_a_finding_and_the_registry_judged_as_usual() -> None:
    lapsed = verdict(Status.NONCOMPLIANT, MISSING, tags={TAG: f"old; until={day(-2)}"})
    broken = verdict(Status.COMPLIANT, tags={TAG: "no end date"})
    first, second = apply([lapsed, broken], {}, now=NOW)
    assert first.status is Status.NONCOMPLIANT
    assert [r.code for r in first.reasons] == [MISSING, EXPIRED]
    assert second.status is Status.COMPLIANT and [r.code for r in second.reasons] == [MALFORMED]
    assert apply([first, second], {}, now=NOW) == (first, second)  # no finding twice


def test_the_setting_exempts_untagged_registries_and_removed_ones_are_left_alone() -> None:
    listed = parse_setting(setting(entry()))
    [result] = apply([verdict(Status.NONCOMPLIANT, MISSING)], listed, now=NOW)
    assert result.status is Status.EXEMPT
    assert "(exemptions setting): 'Migration to the new landing zone'" in result.reasons[0].detail
    gone = verdict(Status.REMOVED, "removed")
    assert apply([gone], listed, now=NOW) == (gone,)
    untouched = verdict(Status.COMPLIANT)
    assert apply([untouched], {}, now=NOW)[0] is untouched


def test_the_setting_is_read_once_and_a_bad_one_names_the_entry() -> None:
    policy = Settings.from_env(
        {"AUDITOR_EXEMPTIONS": setting(entry())}, require_storage=False
    ).policy
    assert list(policy.exemptions) == [REG.lower()]
    with pytest.raises(ConfigError) as err:
        Settings.from_env(
            {"AUDITOR_EXEMPTIONS": setting(entry(), entry(expiresOn="soon"))},
            require_storage=False,
        )
    assert str(err.value).startswith("AUDITOR_EXEMPTIONS: [1]: 'soon' is not a date")


def test_only_the_exemption_tag_is_kept_on_the_fact() -> None:
    assert tag_pairs({"env": "prod", "ACR-AUDITOR-EXEMPT": "x", "owner": "me"}) == (
        ("ACR-AUDITOR-EXEMPT", "x"),
    )
    assert tag_pairs(None) == () and tag_pairs({TAG: 42}) == ((TAG, "42"),)
    row = {
        "id": "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
        "/Microsoft.ContainerRegistry/registries/acrone1",
        "tags": {"env": "prod", TAG: f"r; until={day(3)}"},
    }
    assert registry_from_graph_row(row).tags == ((TAG, f"r; until={day(3)}"),)
    assert "tags" in REGISTRY_QUERY
    # The ARM list (the fallback) reads them from the SDK's model.
    model = SimpleNamespace(id=row["id"], tags=row["tags"])
    assert registry_from_model(model).tags == registry_from_graph_row(row).tags
