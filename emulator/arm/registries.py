"""Container registries (azure-mgmt-containerregistry ``registries.list()``,
``list_by_resource_group()``, ``get()``), with nextLink paging; the page size is the
``paging.registries_page_size`` knob (ARM's own page size is 20 for this list)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from emulator.arm.common import (
    Ctx,
    base_url,
    encode_token,
    iso,
    not_found,
    require_api_version,
    subscription_not_found,
    token_offset,
)
from emulator.scenario import RegistrySpec
from emulator.state import World
from emulator.web import ApiError, json_response

RESOURCE_TYPE = "Microsoft.ContainerRegistry/registries"
# azure-mgmt-containerregistry 15 sends 2025-11-01; 10.x-14.x send older ones.
API_VERSIONS = (
    "2017-10-01", "2019-05-01", "2019-12-01-preview", "2020-11-01-preview", "2021-06-01-preview",
    "2021-08-01-preview", "2021-09-01", "2021-12-01-preview", "2022-02-01-preview",
    "2022-12-01", "2023-01-01-preview", "2023-06-01-preview", "2023-07-01",
    "2023-08-01-preview", "2023-11-01-preview", "2024-11-01-preview", "2025-03-01-preview",
    "2025-04-01", "2025-05-01-preview", "2025-06-01-preview", "2025-11-01",
)  # fmt: skip
# A registry with no created_at in the scenario predates everything the scenario describes.
DEFAULT_REGISTRY_AGE = timedelta(days=730)


def registry_properties(reg: RegistrySpec, world: World) -> dict[str, Any]:
    created = reg.created_at or (world.scenario.now - DEFAULT_REGISTRY_AGE)
    return {
        "loginServer": f"{reg.name.lower()}.azurecr.io",
        "creationDate": iso(created),
        "provisioningState": "Succeeded",
        "adminUserEnabled": reg.admin_user_enabled,
        "networkRuleSet": {"defaultAction": "Allow", "ipRules": []},
        "policies": {
            "quarantinePolicy": {"status": "disabled"},
            "trustPolicy": {"type": "Notary", "status": "disabled"},
            "retentionPolicy": {"days": 7, "status": "disabled"},
            "exportPolicy": {"status": "enabled"},
            "azureADAuthenticationAsArmPolicy": {"status": "enabled"},
        },
        "encryption": {"status": "disabled"},
        "status": None,
        "dataEndpointEnabled": False,
        "dataEndpointHostNames": [],
        "privateEndpointConnections": [],
        "publicNetworkAccess": "Enabled",
        "networkRuleBypassOptions": "AzureServices",
        "zoneRedundancy": "Disabled",
        "anonymousPullEnabled": reg.anonymous_pull_enabled,
    }


def system_data(reg: RegistrySpec) -> dict[str, Any] | None:
    """ARM reports systemData only for resources created since it existed; the scenario's
    created_at stands for it."""
    if reg.created_at is None:
        return None
    at = iso(reg.created_at)
    return {
        "createdBy": "platform-team@contoso.com",
        "createdByType": "User",
        "createdAt": at,
        "lastModifiedBy": "platform-team@contoso.com",
        "lastModifiedByType": "User",
        "lastModifiedAt": at,
    }


def registry_json(reg: RegistrySpec, world: World) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": reg.id,
        "name": reg.name,
        "type": RESOURCE_TYPE,
        "location": reg.location,
        "tags": dict(reg.tags),
        "sku": {"name": reg.sku, "tier": reg.sku},
    }
    sd = system_data(reg)
    if sd is not None:
        body["systemData"] = sd
    body["properties"] = registry_properties(reg, world)
    return body


def _page(
    request: Request,
    ctx: Ctx,
    regs: list[RegistrySpec],
    list_path: str,
    version: str,
    scope_key: str,
) -> Response:
    size = ctx.world.knobs.paging.registries_page_size
    token = request.query_params.get("$skipToken") or request.query_params.get("$skiptoken")
    offset = token_offset(token, s=scope_key)
    page = regs[offset : offset + size]
    body: dict[str, Any] = {"value": [registry_json(r, ctx.world) for r in page]}
    if offset + size < len(regs):
        nxt = quote(encode_token({"o": offset + size, "s": scope_key}))
        body["nextLink"] = f"{base_url(request)}{list_path}?api-version={version}&$skipToken={nxt}"
    return json_response(body)


async def list_registries(request: Request, ctx: Ctx, subscription: str) -> Response:
    version = require_api_version(request, API_VERSIONS, resource_type=RESOURCE_TYPE)
    sub = ctx.world.subscription(subscription)
    if sub is None:
        raise subscription_not_found(subscription)
    regs = ctx.world.registries_sorted(sub.id)
    path = f"/subscriptions/{sub.id}/providers/{RESOURCE_TYPE}"
    return _page(request, ctx, regs, path, version, sub.id)


async def list_registries_in_group(
    request: Request, ctx: Ctx, subscription: str, group: str
) -> Response:
    version = require_api_version(request, API_VERSIONS, resource_type=RESOURCE_TYPE)
    sub = ctx.world.subscription(subscription)
    if sub is None:
        raise subscription_not_found(subscription)
    rg = group.lower()
    regs = [r for r in ctx.world.registries_sorted(sub.id) if r.resource_group.lower() == rg]
    known_group = regs or any(
        w.subscription == sub.id and w.resource_group.lower() == rg for w in ctx.world.workspaces()
    )
    if not known_group:
        raise ApiError(
            404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found."
        )
    path = f"/subscriptions/{sub.id}/resourceGroups/{group}/providers/{RESOURCE_TYPE}"
    return _page(request, ctx, regs, path, version, f"{sub.id}/{rg}")


async def get_registry(
    request: Request, ctx: Ctx, subscription: str, group: str, name: str
) -> Response:
    require_api_version(request, API_VERSIONS, resource_type=RESOURCE_TYPE)
    if ctx.world.subscription(subscription) is None:
        raise subscription_not_found(subscription)
    rid = f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{RESOURCE_TYPE}/{name}"
    reg = ctx.world.registry(rid)
    if reg is None:
        raise not_found(RESOURCE_TYPE, name, group)
    return json_response(registry_json(reg, ctx.world))
