"""GET /subscriptions (paged by nextLink) and GET /subscriptions/{id}
(azure-mgmt-subscription ``SubscriptionClient.subscriptions.list()/get()``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from emulator.arm.common import (
    Ctx,
    base_url,
    encode_token,
    require_api_version,
    subscription_not_found,
    token_offset,
)
from emulator.scenario import SubscriptionSpec
from emulator.web import json_response

# ARM's own api-versions for subscriptions (azure-mgmt-subscription 3.1.1 sends 2016-06-01).
API_VERSIONS = (
    "2014-04-01", "2015-01-01", "2016-06-01", "2018-06-01", "2019-06-01", "2019-11-01",
    "2020-01-01", "2021-01-01", "2022-01-01", "2022-09-01", "2022-12-01",
)  # fmt: skip


def subscription_json(sub: SubscriptionSpec) -> dict[str, Any]:
    return {
        "id": f"/subscriptions/{sub.id}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub.id,
        "tenantId": sub.tenant_id,
        "displayName": sub.display_name,
        "state": sub.state,
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
        "tags": {},
    }


async def list_subscriptions(request: Request, ctx: Ctx) -> Response:
    version = require_api_version(request, API_VERSIONS, resource_type=None)
    subs = sorted(ctx.world.subscriptions(), key=lambda s: s.id)
    size = ctx.world.knobs.paging.subscriptions_page_size
    token = request.query_params.get("$skiptoken") or request.query_params.get("$skipToken")
    offset = token_offset(token)
    page = subs[offset : offset + size]
    body: dict[str, Any] = {"value": [subscription_json(s) for s in page]}
    if offset + size < len(subs):
        # subscription 3.1.1 follows nextLink verbatim, so it must carry the api-version.
        nxt = quote(encode_token({"o": offset + size}))
        body["nextLink"] = (
            f"{base_url(request)}/subscriptions?api-version={version}&$skiptoken={nxt}"
        )
    return json_response(body)


async def get_subscription(request: Request, ctx: Ctx, subscription: str) -> Response:
    require_api_version(request, API_VERSIONS, resource_type=None)
    sub = ctx.world.subscription(subscription)
    if sub is None:
        raise subscription_not_found(subscription)
    return json_response(subscription_json(sub))
