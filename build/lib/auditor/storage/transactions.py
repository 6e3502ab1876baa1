"""How rows are grouped into Table Storage entity-group transactions: one partition each, at
most 100 operations, a payload well under the 4 MiB limit, no row twice. Shared by the audit
store and the alert engine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

MAX_OPERATIONS = 100  # Table Storage's limit per entity-group transaction
# A transaction may carry 4 MiB; the estimate below is JSON without the multipart envelope
# (about 1 KiB of headers per operation is added to it), so keep clear of the limit.
_MAX_PAYLOAD = 3 * 2**20
_ENVELOPE = 1024


def transactions(entities: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Indexes of `entities` grouped the way Table Storage accepts a transaction: one partition,
    at most 100 operations and (estimated) 3 MiB, no row twice; in order within a partition."""
    groups: list[list[int]] = []
    open_groups: dict[str, tuple[list[int], set[str], int]] = {}
    for index, entity in enumerate(entities):
        partition, row = str(entity["PartitionKey"]), str(entity["RowKey"])
        size = len(json.dumps(entity, default=str)) + _ENVELOPE
        current = open_groups.get(partition)
        if current is not None:
            members, rows, total = current
            if len(members) < MAX_OPERATIONS and row not in rows and total + size <= _MAX_PAYLOAD:
                members.append(index)
                rows.add(row)
                open_groups[partition] = (members, rows, total + size)
                continue
        members = [index]
        groups.append(members)
        open_groups[partition] = (members, {row}, size)
    return groups
