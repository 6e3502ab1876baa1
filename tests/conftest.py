"""Session-wide local Azure for the tests: Azurite (Table/Queue Storage).

The Azure emulator fixtures live in tests/integration/conftest.py; Azurite is here because both
unit-level storage tests and integration tests use it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from auditor import tags
from emulator import azurite


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[azurite.Azurite]:
    server = azurite.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def storage_connection_string(azurite_server: azurite.Azurite) -> str:
    return azurite_server.connection_string


@pytest.fixture
def table_prefix() -> str:
    """A fresh table-name prefix per test, so tests sharing one Azurite never see each other."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def kept_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tag names a test's settings add to the kept set (`auditor.tags.keep`) are the test's
    only: the set is the process's."""
    monkeypatch.setattr(tags, "_KEPT", set(tags._KEPT))
