"""What a run changed against what earlier runs stored: which registries are gone, and which
results differ enough to earn a history entry. Pure: storage reads the stored state in and
writes out what these rules decide."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from auditor.facts import Reason, Registry, Status, Verdict
from auditor.reasons import reason
from auditor.reasons.catalog import REMOVED


@dataclass(frozen=True, slots=True)
class StoredState:
    """A registry as the last run that judged it left it: what the rules compare with."""

    registry: Registry  # its subscription id lower-case, as stored
    status: str | None  # as stored: a status this version may not know is still a change
    reason_codes: tuple[str, ...]
    status_since: datetime | None
    last_run_id: str | None
    # The diagnostic settings last read, as stored (`entities.settings_json`), None when not
    # known: raw text, parsed only for the registry that needs it, so a fleet's states stay small.
    settings: str | None = None
    # `Digest` of the row (`entities.content_digest`): unchanged content need not be rewritten.
    digest: str | None = None
    # The digest of its newest stored evidence, and when that was written.
    evidence: tuple[str, datetime] | None = None
    # The row holds every fact of the registry (`entities.facts_json`), not only its place.
    facts: bool = False


def reason_codes(reasons: Iterable[Reason]) -> tuple[str, ...]:
    """What makes a change worth a history entry, with the status: order does not matter,
    nor the details (they carry counts and times that move every run)."""
    return tuple(sorted({sys.intern(r.code) for r in reasons}))


def changed(before: StoredState | None, status: Status, codes: Sequence[str]) -> bool:
    """Whether a registry now judged `status` with reason `codes` gets a history entry: on
    first sight, and whenever its status or reason codes differ from the stored ones."""
    if before is None:
        return True
    return before.status != status.value or before.reason_codes != tuple(codes)


@dataclass(frozen=True, slots=True)
class Change:
    """One history entry's worth: a registry's stored state (None on first sight) and the
    status and reason codes that replace it.

    A change is named by what it changed from and to, never by the run that found it, so
    every run that finds it names it the same: two overlapping runs that read the same stored
    state, or a run repeating an entry whose registry row was not written, write one entry.
    """

    before: StoredState | None
    status: Status
    codes: tuple[str, ...]

    @property
    def ended(self) -> datetime | None:
        """When the state this change ended began (every run read the same); None on first
        sight or when the stored state does not say."""
        return self.before.status_since if self.before is not None else None

    @property
    def id(self) -> str:
        before = self.before
        ended = None
        if before is not None:
            since = _utc_text(before.status_since) if before.status_since else None
            ended = [before.status, list(before.reason_codes), since]
        text = json.dumps([ended, self.status.value, list(self.codes)], separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _utc_text(moment: datetime) -> str:
    # One instant, one text: however the stored time came back, with whatever offset.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def status_since(before: StoredState | None, *, changed: bool, observed_at: datetime) -> datetime:
    """Since when a registry's status and reason codes are what this run found."""
    if changed or before is None or before.status_since is None:
        return observed_at
    return before.status_since


def removed(
    stored: Mapping[str, StoredState],
    judged: Collection[str],
    *,
    listed_subscriptions: Iterable[str],
    run_id: str,
) -> dict[str, Verdict]:
    """The stored registries (by key) this run found removed, in key order.

    A registry is removed when the run listed its subscription completely and did not judge
    it; registries of other subscriptions keep their last state. One the same run already
    marked removed is reported again, so finishing a run twice reports the same removals.
    """
    listed = {s.strip().lower() for s in listed_subscriptions}
    gone: dict[str, Verdict] = {}
    for key in sorted(stored.keys() - set(judged)):
        state = stored[key]
        if state.status == Status.REMOVED.value:
            found_gone = state.last_run_id == run_id  # by this run: report it again
        else:
            found_gone = state.registry.subscription_id in listed
        if found_gone:
            gone[key] = Verdict(state.registry, Status.REMOVED, (reason(REMOVED),))
    return gone
