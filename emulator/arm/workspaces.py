"""Log Analytics workspace GET (azure-mgmt-loganalytics ``workspaces.get(rg, name)``): the
auditor needs ``properties.customerId``, the GUID the query API is addressed by."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from emulator.arm.common import Ctx, iso, not_found, require_api_version, subscription_not_found
from emulator.scenario import WorkspaceSpec
from emulator.state import World
from emulator.web import json_response

RESOURCE_TYPE = "Microsoft.OperationalInsights/workspaces"
# azure-mgmt-loganalytics 14 sends 2025-07-01; 12.x/13.x send 2022-10-01/2025-02-01.
API_VERSIONS = (
    "2015-11-01-preview", "2020-03-01-preview", "2020-08-01", "2020-10-01", "2021-06-01",
    "2021-12-01-preview", "2022-10-01", "2023-09-01", "2025-02-01", "2025-07-01", "2026-03-01",
)  # fmt: skip


def workspace_json(ws: WorkspaceSpec, world: World) -> dict[str, Any]:
    created = iso(world.scenario.now - timedelta(days=900))
    return {
        "properties": {
            "customerId": ws.customer_id,
            "provisioningState": "Succeeded",
            "sku": {"name": "PerGB2018", "lastSkuUpdate": created},
            "retentionInDays": 30,
            "features": {
                "legacy": 0,
                "searchVersion": 1,
                "enableLogAccessUsingOnlyResourcePermissions": True,
            },
            "workspaceCapping": {"dailyQuotaGb": -1.0, "dataIngestionStatus": "RespectQuota"},
            "publicNetworkAccessForIngestion": "Enabled",
            "publicNetworkAccessForQuery": "Enabled",
            "createdDate": created,
            "modifiedDate": created,
        },
        # The service really reports its ids in lower case (see examples/WorkspacesGet.json).
        "id": ws.id.lower(),
        "name": ws.name,
        "type": RESOURCE_TYPE,
        "location": ws.location,
        "tags": {},
    }


async def get_workspace(
    request: Request, ctx: Ctx, subscription: str, group: str, name: str
) -> Response:
    require_api_version(request, API_VERSIONS, resource_type=RESOURCE_TYPE)
    if ctx.world.subscription(subscription) is None:
        raise subscription_not_found(subscription)
    rid = f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{RESOURCE_TYPE}/{name}"
    ws = ctx.world.workspace_by_id(rid)
    if ws is None:
        raise not_found(RESOURCE_TYPE, name, group)
    return json_response(workspace_json(ws, ctx.world))
