"""`evidence_digest`: what the store compares to tell whether a registry's evidence documents
must be written again. It must change whenever anything the documents show changes (so it
covers every field of every evidence value), and not when only the window moves."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditor.evidence import model
from auditor.evidence.digest import evidence_digest
from auditor.evidence.model import ActivityKind, Operation
from auditor.facts import Reason

END = datetime.now(UTC).replace(microsecond=0)
START = END - timedelta(hours=24)
AT = END - timedelta(hours=2)
KEY = "/subscriptions/s/resourcegroups/rg/providers/microsoft.containerregistry/registries/acr1"


def every_field_set() -> model.LogEvidence:
    """One value of each kind, no field left empty or None: each can be changed in turn."""
    login = model.LoginSummary("ops@contoso.com", "203.0.113.9", 5, 1, AT, AT)
    return model.LogEvidence(
        registry_key=KEY,
        window_start=START,
        window_end=END,
        workspaces=(
            model.WorkspaceFreshness(
                "/w/law",
                frozenset({"ContainerRegistryLoginEvents"}),
                (model.TableFreshness("ContainerRegistryLoginEvents", AT, 5, 4),),
                unknown="not found",
                partial=True,
            ),
        ),
        logins=(login,),
        bursts=(model.FailureBurst("ip", "203.0.113.9", 10, AT, AT, 12),),
        first_seen=(model.FirstSeen("identity", "ops@contoso.com", AT, 5, 1),),
        admin_logins=(login,),
        anonymous_pulls=(model.AnonymousPull("app", 3, 0, ("203.0.113.9",), AT, AT),),
        trail=(
            model.TrailCount(Operation.PULL, "Pull", "ops", "app", 3, 0, ("203.0.113.9",), AT, AT),
        ),
        deletions=(
            model.TrailEntry(AT, Operation.DELETE, "Delete", "ops", "ip", "app", "v1", "sha", "ok"),
        ),
        activity=(
            model.ActivityEvent(
                AT, ActivityKind.SETTING_DELETE, "delete", KEY, KEY + "/d/s", "me", "ip", "ok"
            ),
        ),
        observations=(Reason("first_seen_identity", "ops"),),
        problems=("capped",),
    )


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, enum.Enum):
        return next(member for member in type(value) if member is not value)
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, int):
        return value + 1
    if isinstance(value, datetime):
        return value + timedelta(microseconds=1)
    if isinstance(value, frozenset | tuple) and all(isinstance(v, str) for v in value):
        return type(value)((*value, "x"))
    raise AssertionError(f"no change made for {value!r}: name one here")


def variants(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """`value` with one field changed, for every field it holds at any depth."""
    for field in dataclasses.fields(value):
        inner = getattr(value, field.name)
        where = f"{path}{field.name}"
        if isinstance(inner, tuple) and inner and dataclasses.is_dataclass(inner[0]):
            for item_path, item in variants(inner[0], f"{where}[0]."):
                yield item_path, replace(value, **{field.name: (item, *inner[1:])})
        else:
            yield where, replace(value, **{field.name: changed(inner)})


WINDOW = {"window_start", "window_end"}


def test_every_field_of_the_evidence_is_in_its_digest() -> None:
    evidence = every_field_set()
    digest = evidence_digest(evidence)
    seen = []
    for path, other in variants(evidence):
        seen.append(path)
        if path in WINDOW:
            assert evidence_digest(other) == digest, path
        else:
            assert evidence_digest(other) != digest, path
    assert "trail[0].operation" in seen and "workspaces[0].per_table[0].last_event" in seen


def test_the_digest_is_what_the_logs_showed_not_when() -> None:
    evidence = every_field_set()
    later = replace(
        evidence,
        window_start=START + timedelta(hours=1),
        window_end=END + timedelta(hours=1),
    )
    assert evidence_digest(later) == evidence_digest(evidence)
    assert evidence_digest(replace(evidence, logins=())) != evidence_digest(evidence)


def test_the_digest_does_not_follow_which_strings_are_shared() -> None:
    # Rows decoded in another run share other string objects: same content, same digest.
    evidence = every_field_set()
    name = "ops@contoso.com"
    two = (evidence.logins[0], replace(evidence.logins[0], caller_ip="198.51.100.7"))
    shared = replace(evidence, logins=tuple(replace(s, identity=name) for s in two))
    fresh = replace(
        evidence, logins=tuple(replace(s, identity=name.encode().decode()) for s in two)
    )
    assert fresh.logins[0].identity is not fresh.logins[1].identity
    assert evidence_digest(fresh) == evidence_digest(shared)


def test_the_digest_takes_enum_members_where_strings_are_expected() -> None:
    class Kind(enum.StrEnum):
        IP = "ip"

    evidence = every_field_set()
    seen = model.FirstSeen(Kind.IP, "203.0.113.9", None, 1, 0)
    digest = evidence_digest(replace(evidence, first_seen=(seen,)))
    assert digest != evidence_digest(evidence)
    assert len(digest) == 32


@pytest.mark.parametrize("hours", [0, 5])
def test_a_naive_time_is_taken_to_be_utc(hours: int) -> None:
    evidence = every_field_set()
    naive = AT.replace(tzinfo=None) + timedelta(hours=hours)
    login = replace(evidence.logins[0], first_seen=naive)
    aware = replace(evidence.logins[0], first_seen=AT + timedelta(hours=hours))
    assert evidence_digest(replace(evidence, logins=(login,))) == evidence_digest(
        replace(evidence, logins=(aware,))
    )
