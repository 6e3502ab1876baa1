"""A digest of what a registry's log evidence shows, its window aside: the store compares it
with the one it kept, and writes the evidence documents again only when it differs.

Every registry's evidence is digested each run, most of it unchanged, so the digest is taken
from the evidence values themselves (flat tuples, times as POSIX seconds, `marshal` format 2)
rather than from the documents built from them: a fifth of the CPU. The documents are a
function of these values, so documents that differ always come with digests that differ.
"""

from __future__ import annotations

import hashlib
import json
import marshal
from datetime import UTC, datetime
from typing import Any

from auditor.evidence.model import LogEvidence

# Part of every digest: raise it when the stored evidence documents change shape, so that
# every registry's evidence is written again once in the new shape.
DOCUMENTS_VERSION = 1
# Format 2 writes every value in full (later ones refer back to objects seen twice, so the
# bytes would follow which strings happen to be shared). Another Python may write other
# bytes: the evidence rows are then written again once.
_MARSHAL_VERSION = 2


def evidence_digest(evidence: LogEvidence) -> str:
    content = _content(evidence)
    try:
        data = marshal.dumps(content, _MARSHAL_VERSION)
    except ValueError:  # a str or int subclass (an enum member), which JSON writes as such
        data = json.dumps(content, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _t(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # taken to be UTC, as the documents write it
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _content(e: LogEvidence) -> tuple[Any, ...]:
    # Every field of every value but the window (`tests/unit/test_evidence_digest.py` changes
    # each field of each type in turn); enum members by value, sets sorted.
    return (
        DOCUMENTS_VERSION,
        e.registry_key,
        [
            (
                w.workspace_id,
                sorted(w.tables),
                [(t.table, _t(t.last_event), t.events, t.previous_events) for t in w.per_table],
                w.unknown,
                w.partial,
            )
            for w in e.workspaces
        ],
        [
            (s.identity, s.caller_ip, s.attempts, s.failures, _t(s.first_seen), _t(s.last_seen))
            for s in e.logins
        ],
        [(b.kind, b.key, b.failures, _t(b.start), _t(b.end), b.total_failures) for b in e.bursts],
        [(f.kind, f.value, _t(f.first_seen), f.attempts, f.failures) for f in e.first_seen],
        [
            (s.identity, s.caller_ip, s.attempts, s.failures, _t(s.first_seen), _t(s.last_seen))
            for s in e.admin_logins
        ],
        [
            (p.repository, p.count, p.failures, p.caller_ips, _t(p.first_seen), _t(p.last_seen))
            for p in e.anonymous_pulls
        ],
        [
            (
                t.operation.value,
                t.operation_name,
                t.identity,
                t.repository,
                t.count,
                t.failures,
                t.caller_ips,
                _t(t.first_seen),
                _t(t.last_seen),
            )
            for t in e.trail
        ],
        [
            (
                _t(d.at),
                d.operation.value,
                d.operation_name,
                d.identity,
                d.caller_ip,
                d.repository,
                d.tag,
                d.digest,
                d.result,
            )
            for d in e.deletions
        ],
        [
            (
                _t(a.at),
                a.kind.value,
                a.operation,
                a.registry_key,
                a.resource_id,
                a.caller,
                a.caller_ip,
                a.status,
            )
            for a in e.activity
        ],
        [(r.code, r.detail) for r in e.observations],
        e.problems,
    )
