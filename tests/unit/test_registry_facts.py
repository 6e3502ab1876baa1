"""`facts.Registry`: its key, and the text a fleet's registries share held once."""

from __future__ import annotations

from auditor.facts import Registry, normalize_id

ID = "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/Acr1"


def built(text: str) -> Registry:
    # Copies made at run time, as the inventory, the store and the alert states each do.
    def copy(value: str) -> str:
        return "".join(list(value))

    return Registry(
        id=copy(text),
        name=copy("Acr1"),
        subscription_id=copy("s1"),
        resource_group=copy("RG"),
        location=copy("westeurope"),
        sku=copy("Premium"),
    )


def test_the_key_is_the_normalized_id() -> None:
    registry = built(ID + "/")
    assert registry.key == normalize_id(ID) == ID.lower()


def test_registries_built_apart_share_their_text() -> None:
    one, other = built(ID), built(ID)
    for field in ("id", "name", "subscription_id", "resource_group", "location", "sku", "key"):
        assert getattr(one, field) is getattr(other, field), field
    assert one == other
