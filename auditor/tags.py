"""The registry tags the auditor reads, the only ones `Registry.tags` keeps (a fleet of 10,000
registries need not hold every tag).

Tag names compare without case, as in Azure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from auditor.exemptions import TAG

# Lower-case names.
_KEPT: set[str] = {TAG}


def tag_pairs(tags: object) -> tuple[tuple[str, str], ...]:
    """The tags `Registry.tags` keeps, from Azure's tag object: the kept names only (any case;
    a value that is not text is kept as text, and found malformed where it is read)."""
    if not isinstance(tags, Mapping):
        return ()
    return tuple(
        (name, value if isinstance(value, str) else json.dumps(value))
        for name, value in tags.items()
        if isinstance(name, str) and name.lower() in _KEPT
    )
