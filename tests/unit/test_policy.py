"""Policy: defaults, normalisation, and a clear ConfigError for every bad value."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from auditor.errors import ConfigError
from auditor.policy import (
    Destination,
    Policy,
    is_workspace_id,
    parse_destinations,
    unknown_categories,
)

SUB = "00000000-0000-0000-0000-000000000001"
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-logs/providers/"
    "Microsoft.OperationalInsights/workspaces/law-central"
)


def test_defaults() -> None:
    policy = Policy()
    assert policy.required_categories == (
        "ContainerRegistryLoginEvents",
        "ContainerRegistryRepositoryEvents",
    )
    assert policy.require_metrics is True
    assert policy.metrics_category == "AllMetrics"
    assert policy.accepted_destinations == frozenset({Destination.WORKSPACE})
    assert policy.accepted_workspaces == frozenset()
    assert policy.require_dedicated is True


def test_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        # Assigning is the error under test.
        Policy().require_metrics = False  # type: ignore[misc]


def test_normalises_iterables_names_and_ids() -> None:
    # Lists and raw strings where the fields say tuple and frozenset, on purpose: the policy
    # normalises whatever iterable it is given.
    policy = Policy(
        required_categories=["ContainerRegistryLoginEvents"],  # type: ignore[arg-type]
        accepted_destinations=["Workspace", " storage "],  # type: ignore[arg-type]
        accepted_workspaces=[WS.upper() + "/"],  # type: ignore[arg-type]
    )
    assert policy.required_categories == ("ContainerRegistryLoginEvents",)
    assert policy.accepted_destinations == frozenset({Destination.WORKSPACE, Destination.STORAGE})
    assert policy.accepted_workspaces == frozenset({WS.lower()})


@pytest.mark.parametrize(
    ("workspace", "allow_list", "expected"),
    [
        (WS, (), True),
        (WS, (WS,), True),
        (WS.lower(), (WS.upper(),), True),
        (WS.replace("law-central", "law-other"), (WS,), False),
    ],
    ids=["any-workspace", "listed", "listed-other-case", "not-listed"],
)
def test_accepts_workspace(workspace: str, allow_list: tuple[str, ...], expected: bool) -> None:
    assert (
        Policy(accepted_workspaces=frozenset(allow_list)).accepts_workspace(workspace) is expected
    )


def test_accepts_no_workspace_when_workspace_not_a_destination() -> None:
    policy = Policy(accepted_destinations=frozenset({Destination.STORAGE}))
    assert policy.accepts_workspace(WS) is False


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (WS, True),
        (WS.lower(), True),
        (WS + "/", True),
        (WS.replace("rg-logs", "rg_(logs).1"), True),
        (WS.replace(SUB, "not-a-guid"), False),
        (WS.replace("workspaces", "clusters"), False),
        ("law-central", False),
        (WS + "/tables/x", False),
        ("", False),
    ],
)
def test_is_workspace_id(value: str, expected: bool) -> None:
    assert is_workspace_id(value) is expected


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "category-group-as-category",
        {"required_categories": ("allLogs",)},
        "required_categories",
        "category group",
    ),
    (
        "group-other-case",
        {"required_categories": ("AUDIT",)},
        "required_categories",
        "category group",
    ),
    (
        "duplicate-category",
        {"required_categories": ("A", "a")},
        "required_categories",
        "listed twice",
    ),
    ("blank-category", {"required_categories": ("",)}, "required_categories", "not a category"),
    (
        "category-with-space",
        {"required_categories": ("Login Events",)},
        "required_categories",
        "not a category",
    ),
    (
        "categories-as-string",
        {"required_categories": "ContainerRegistryLoginEvents"},
        "required_categories",
        "not a string",
    ),
    (
        "requires-nothing",
        {"required_categories": (), "require_metrics": False},
        "required_categories",
        "require nothing",
    ),
    (
        "unknown-destination",
        {"accepted_destinations": ("workspace", "ftp")},
        "accepted_destinations",
        "'ftp' is not one of",
    ),
    ("no-destination", {"accepted_destinations": ()}, "accepted_destinations", "at least one"),
    (
        "destination-as-string",
        {"accepted_destinations": "workspace"},
        "accepted_destinations",
        "not a string",
    ),
    (
        "bad-workspace-id",
        {"accepted_workspaces": ("law-central",)},
        "accepted_workspaces",
        "not a Log Analytics workspace id",
    ),
    (
        "workspace-list-without-workspace-destination",
        {"accepted_workspaces": (WS,), "accepted_destinations": ("storage",)},
        "accepted_workspaces",
        "'workspace' is not an accepted destination",
    ),
    ("require-metrics-not-bool", {"require_metrics": "yes"}, "require_metrics", "true or false"),
    ("require-dedicated-not-bool", {"require_dedicated": 1}, "require_dedicated", "true or false"),
    ("bad-metrics-category", {"metrics_category": ""}, "metrics_category", "metrics category"),
]


@pytest.mark.parametrize(
    ("kwargs", "setting", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_rejects(kwargs: dict[str, Any], setting: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Policy(**kwargs)
    assert caught.value.setting == setting
    assert str(caught.value).startswith(f"{setting}: ")
    assert words in str(caught.value)


def test_metrics_only_policy_is_allowed() -> None:
    assert Policy(required_categories=()).required_categories == ()


def test_parse_destinations() -> None:
    assert parse_destinations(["EVENTHUB", Destination.STORAGE]) == frozenset(
        {Destination.EVENTHUB, Destination.STORAGE}
    )


def test_unknown_categories_are_the_required_names_the_type_does_not_have() -> None:
    known = ["ContainerRegistryLoginEvents", "ContainerRegistryRepositoryEvents"]
    assert unknown_categories(Policy(), known) == ()
    lower = Policy(required_categories=("containerregistryloginevents",))
    assert unknown_categories(lower, known) == ()
    typo = Policy(required_categories=("ContainerRegistryLoginEvent", known[1]))
    assert unknown_categories(typo, known) == ("ContainerRegistryLoginEvent",)
